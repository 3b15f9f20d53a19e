//! `gradesync`: parses the command line, sets up logging and maps failures to exit codes
//! (2 usage, 3 unreachable service, 4 needs attention, 1 anything else).

use std::io::IsTerminal;

use clap::parser::{ArgMatches, ValueSource};
use clap::{CommandFactory, FromArgMatches};
use gradesync::cli::{Cli, Command};
use gradesync::commands::{check, demo, dlq, import, report, schedule, setup, sync};
use gradesync::errors::CliError;

/// Logs go to stderr; `GRADESYNC_LOG` overrides the level (e.g. `debug`). Interactive
/// commands whose output is a progress bar default to warnings only.
fn init_logging(format: &str, quiet: bool) {
    // rustls-platform-verifier logs each certificate it refuses at error level; gradesync
    // says the same in one line that says what to do. PostgreSQL's notices (e.g. "relation
    // _sqlx_migrations already exists, skipping" at every start) are noise at info. The AWS
    // SDK warns with a debug dump at each link of its region and credential chain it skips
    // (IMDS off a cloud host); a missing region or credential is said once, by gradesync.
    let default = if quiet {
        "warn,rustls_platform_verifier=off,aws_config=error"
    } else {
        "info,temporalio_sdk_core=warn,rustls_platform_verifier=off,sqlx::postgres::notice=warn,aws_config=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRADESYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only for a person at a terminal: a redirected worker's log file, a
    // container's log stream or a CI log gets plain text.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    if format == "json" {
        // The current span (an activity's ids, see log_span) on every line; not the list.
        builder.json().with_span_list(false).init();
    } else {
        builder.init();
    }
}

/// glibc's malloc let a long worker's RSS creep with the quarter's size (65 MB at 10k
/// records, 133 MB at 1M): a freed ~1 MB batch body raises its mmap threshold, so later
/// ones come from the per-thread arenas and stay there as fragments. A fixed threshold
/// hands every large buffer back to the OS when freed, and two arenas bound the rest
/// (59 MB at 1M records with both).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_malloc() {
    // SAFETY: mallopt only sets allocator parameters, and this runs before any other
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

/// A command whose output is read by a pipe (`sync status | head -1`) ends quietly when
/// the reader closes it, as `ls | head` does, instead of panicking in `println!`. Rust
/// ignores SIGPIPE so that writes fail with an error; the short commands take the default
/// back. TCP connections are unaffected (they write with MSG_NOSIGNAL); a database reached
/// over a Unix socket that dies mid-write ends such a command by the signal too. The
/// worker, the simulator and the demo, which must outlive any one connection, keep
/// ignoring it.
#[cfg(unix)]
#[allow(unsafe_code)]
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: restoring a signal's default disposition has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn end_quietly_on_a_closed_pipe() {}

fn main() {
    tune_malloc();
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| {
        eprintln!("gradesync: cannot start the async runtime: {e}");
        std::process::exit(1);
    });
    runtime.block_on(run());
    // Tasks still parked on the runtime (a store connection's thread, a listener) must not
    // hold the exit of a worker that has drained.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
}

/// Flags whose value is a secret, with where it should come from instead.
const SECRET_FLAGS: [(&str, &str, &str); 3] = [
    (
        "gov_client_secret",
        "--gov-client-secret",
        "GRADESYNC_GOV_CLIENT_SECRET_FILE",
    ),
    (
        "alert_webhook_url",
        "--alert-webhook-url",
        "GRADESYNC_ALERT_WEBHOOK_URL_FILE",
    ),
    (
        "compliance_webhook_url",
        "--compliance-webhook-url",
        "GRADESYNC_COMPLIANCE_WEBHOOK_URL_FILE",
    ),
];

/// Secrets given on the command line, which every user of the host can read in `ps` or
/// /proc: the flag names (never the values), from the innermost subcommand's matches.
fn secret_flags_used(matches: &ArgMatches) -> Vec<(&'static str, &'static str)> {
    let mut found = Vec::new();
    let mut current = Some(matches);
    while let Some(m) = current {
        for (id, flag, file_var) in SECRET_FLAGS {
            if m.ids().any(|i| i.as_str() == id)
                && m.value_source(id) == Some(ValueSource::CommandLine)
            {
                found.push((flag, file_var));
            }
        }
        current = m.subcommand().map(|(_, sub)| sub);
    }
    found
}

async fn run() {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let quiet = matches!(
        cli.command,
        Command::Demo(_)
            | Command::Import(_)
            | Command::Sync(_)
            | Command::Check(_)
            | Command::Setup(_)
            | Command::Report(_)
    );
    init_logging(&cli.log_format, quiet);
    if !matches!(
        cli.command,
        Command::Worker { .. } | Command::GovSim(_) | Command::Demo(_)
    ) {
        end_quietly_on_a_closed_pipe();
    }
    for (flag, file_var) in secret_flags_used(&matches) {
        tracing::warn!(
            "{flag} was given on the command line, where every user of this host can read \
             it (ps, /proc); put the value in a file and set {file_var} instead"
        );
    }
    let result = match cli.command {
        Command::Worker { args, faults } => {
            if faults.fault_clock_skew_ms != 0 {
                gradesync_activities::clock::set_skew_ms(faults.fault_clock_skew_ms);
                tracing::warn!(
                    skew_ms = faults.fault_clock_skew_ms,
                    "fault injection: this worker's clock is set off"
                );
            }
            gradesync::worker::run(args).await
        }
        Command::Sync(cmd) => sync::run(cmd).await,
        Command::Schedule(cmd) => schedule::run(cmd).await,
        Command::Import(args) => import::run(args).await,
        Command::Dlq(cmd) => dlq::run(cmd).await,
        Command::Report(cmd) => report::run(cmd).await,
        Command::GovSim(args) => gradesync_govapi::sim::args::run(args)
            .await
            .map_err(|e| CliError::Usage(e.to_string())),
        Command::Check(args) => check::run(args).await,
        Command::Setup(args) => setup::run(args).await,
        Command::Demo(args) => demo::run(args).await,
    };
    if let Err(e) = result {
        eprintln!("gradesync: {e:#}");
        std::process::exit(e.exit_code());
    }
}
