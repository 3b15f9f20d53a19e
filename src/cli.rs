//! The command line: raw flags as clap parses them. Each subcommand's arguments live with
//! its implementation in `commands/`.

use clap::{Parser, Subcommand};

use crate::commands::{check, demo, dlq, import, report, schedule, setup, sync};
use crate::worker::WorkerArgs;

/// gradesync pushes every grade of every school to the government API each quarter, on
/// Temporal, and proves nothing was lost or sent twice.
#[derive(Debug, Parser)]
#[command(name = "gradesync", version, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "GRADESYNC_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Faults a test can inject into a worker process; hidden from `--help`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerFaults {
    /// Run as if this host's clock were this many ms off (negative: behind). The rate
    /// budget must hold anyway: it is cut on the database server's clock.
    #[arg(
        long,
        hide = true,
        env = "GRADESYNC_FAULT_CLOCK_SKEW_MS",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub fault_clock_skew_ms: i64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Temporal worker (workflows, store activities and SendBatch).
    Worker {
        #[command(flatten)]
        args: WorkerArgs,
        #[command(flatten)]
        faults: WorkerFaults,
    },
    /// Start or follow a quarter's sync.
    #[command(subcommand)]
    Sync(sync::SyncCommand),
    /// Manage the quarterly Temporal Schedule (cron 0 2 1 */3 *).
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Import grade records into the store: JSON Lines, CSV, or a OneRoster 1.2 export.
    Import(import::ImportArgs),
    /// List or replay dead-lettered batches.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Show, export or list the reconciliation reports kept in the grades database.
    #[command(subcommand)]
    Report(report::ReportCommand),
    /// Run the government API simulator (fault injection for tests and the demo).
    GovSim(gradesync_govapi::sim::args::SimArgs),
    /// Register gradesync's search attributes in the Temporal namespace, for the Web UI
    /// (quarter, phase, verdict, records synced and owed). Idempotent.
    Setup(setup::SetupArgs),
    /// Check that Temporal, the grades store and the government API answer (sends no grades).
    Check(check::CheckArgs),
    /// Run a whole quarterly sync on this machine: dev server, SQLite, simulator, worker.
    Demo(demo::DemoArgs),
}
