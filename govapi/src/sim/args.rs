//! The `gradesync gov-sim` command line: where to listen, the client credentials, and one
//! flag per fault, each explained in `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{Faults, RejectRule, SimConfig, SimError, SimTls};

/// Runs the government API simulator until Ctrl-C. Its control endpoints (no token
/// needed): GET /_sim/ledger, GET and POST /_sim/faults, POST /_sim/revoke-tokens.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to listen on (use port 0 for any free port).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// OAuth client id that POST /oauth/token accepts.
    #[arg(
        long,
        value_name = "ID",
        env = "GRADESYNC_GOV_CLIENT_ID",
        default_value = "gradesync"
    )]
    pub client_id: String,

    /// OAuth client secret that POST /oauth/token accepts.
    #[arg(
        long,
        value_name = "SECRET",
        env = "GRADESYNC_GOV_CLIENT_SECRET",
        default_value = "sim-secret",
        hide_env_values = true
    )]
    pub client_secret: String,

    /// File holding the client secret (a trailing newline is ignored); over
    /// --client-secret, so a stack that gives the workers a secret file can give it to
    /// the simulator too.
    #[arg(long, value_name = "PATH", env = "GRADESYNC_GOV_CLIENT_SECRET_FILE")]
    pub client_secret_file: Option<PathBuf>,

    /// Lifetime of an access token, in seconds; a request with an older token gets 401.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub token_ttl_secs: u64,

    /// Seed of every random fault decision: the same seed and the same sequence of
    /// requests meet the same faults.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Requests (to /v1/* and /oauth/token) admitted in any sliding window of
    /// --rate-window-ms; more get 429 with Retry-After. 0 = unlimited.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub rate_limit: u32,

    /// Length of the rate-limit sliding window, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub rate_window_ms: u64,

    /// Delay added to every /v1 request before it is processed, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,

    /// Random spread around --latency-ms: each request waits latency ± jitter (uniform).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_jitter_ms: u64,

    /// Probability (0..1) that a batch POST is answered 503 Service Unavailable without
    /// being looked at.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub p_503: f64,

    /// Probability (0..1) that a batch POST is answered 500, 502 or 504 without being
    /// looked at.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub p_5xx: f64,

    /// Probability (0..1) that a batch POST is answered 403 Forbidden with an HTML page
    /// (text/html), as an API gateway does; nothing is committed.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub p_403_html: f64,

    /// Probability (0..1) that a batch POST is answered 400 with a problem whose errors[]
    /// names a record id that is not in the batch; nothing is committed.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub p_400_unnamed: f64,

    /// Probability (0..1) that a receipt lookup (GET /v1/grade-batches/{id}) is answered
    /// 503: the client cannot tell whether the batch was committed.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub p_lookup_503: f64,

    /// Send `Retry-After: N` (seconds) with every 503; without it 503s carry none.
    #[arg(long, value_name = "SECS")]
    pub retry_after_secs: Option<u64>,

    /// Start with an outage: every /v1 request gets 503 for this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub outage_ms: u64,

    /// Probability (0..1) that a committed batch is answered only after --hang-ms, so a
    /// client with a shorter timeout never sees that its batch went through.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub p_hang: f64,

    /// How long a hanging answer is held back, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub hang_ms: u64,

    /// Probability (0..1) that a committed batch gets no answer at all: the connection is
    /// closed right after the commit.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub p_commit_drop: f64,

    /// Fraction (0..1) of the records of an accepted batch that are silently not stored,
    /// though counted as accepted: only reconciliation can find them.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub p_silent_loss: f64,

    /// Serve HTTPS with this PEM certificate (chain), with --tls-key.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require a client certificate signed by this PEM CA (mTLS, as many government
    /// gateways do); needs --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Reject records whose FIELD equals VALUE: their batch gets 400 with an error naming
    /// them, and nothing of it is stored. Repeatable, e.g. --reject grade=F.
    #[arg(long = "reject", value_name = "FIELD=VALUE", value_parser = reject_rule)]
    pub reject: Vec<RejectRule>,
}

fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number: give a probability between 0 and 1"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!(
            "{s} is not a probability: give a number between 0 and 1"
        ))
    }
}

fn reject_rule(s: &str) -> Result<RejectRule, String> {
    RejectRule::parse(s).map_err(|e| e.to_string())
}

impl SimArgs {
    pub fn faults(&self) -> Faults {
        Faults {
            seed: self.seed,
            rate_limit: self.rate_limit,
            rate_window_ms: self.rate_window_ms,
            latency_ms: self.latency_ms,
            latency_jitter_ms: self.latency_jitter_ms,
            p_503: self.p_503,
            p_5xx: self.p_5xx,
            p_403_html: self.p_403_html,
            p_400_unnamed: self.p_400_unnamed,
            p_lookup_503: self.p_lookup_503,
            retry_after_secs: self.retry_after_secs,
            outage_ms: self.outage_ms,
            p_hang: self.p_hang,
            hang_ms: self.hang_ms,
            p_commit_drop: self.p_commit_drop,
            p_silent_loss: self.p_silent_loss,
            reject_rules: self.reject.clone(),
        }
    }

    /// The TLS files, when HTTPS is asked for.
    pub fn tls(&self) -> Option<SimTls> {
        Some(SimTls {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    pub fn config(&self) -> SimConfig {
        SimConfig {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            faults: self.faults(),
        }
    }
}

/// Binds, prints `gov-sim listening on http://ADDR` (`https://` with TLS), and serves
/// until Ctrl-C or SIGTERM.
pub async fn run(args: SimArgs) -> Result<(), SimError> {
    let mut config = args.config();
    if let Some(path) = &args.client_secret_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SimError::SecretFile(format!("{} cannot be read ({})", path.display(), e.kind()))
        })?;
        config.client_secret = text.trim_end_matches(['\n', '\r']).to_string();
    }
    config.faults.validate()?;
    let tls = args.tls();
    // Bad TLS files fail here, before the port is taken and the line printed.
    if let Some(tls) = &tls {
        tls.acceptor()?;
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: args.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(SimError::Serve)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("gov-sim listening on {scheme}://{addr}");
    super::serve(listener, config, tls.as_ref(), stop_signal())
        .await
        .map_err(SimError::Serve)
}

/// Ctrl-C, or SIGTERM where there is one (how scripts and supervisors stop a server).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn flags_become_faults() {
        let cli = Cli::try_parse_from([
            "x",
            "--p-503",
            "0.25",
            "--p-403-html",
            "0.1",
            "--p-400-unnamed",
            "0.2",
            "--reject",
            "grade=F",
            "--reject",
            "course_code=X",
        ])
        .unwrap();
        let faults = cli.sim.faults();
        assert_eq!(faults.p_503, 0.25);
        assert_eq!((faults.p_403_html, faults.p_400_unnamed), (0.1, 0.2));
        assert_eq!(faults.rate_limit, 2);
        assert_eq!(faults.reject_rules.len(), 2);
        assert_eq!(faults.reject_rules[0].field, "grade");
    }

    #[test]
    fn probabilities_out_of_range_are_refused() {
        let err = Cli::try_parse_from(["x", "--p-hang", "1.5"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("between 0 and 1"), "{err}");
        assert!(Cli::try_parse_from(["x", "--p-403-html", "1.5"]).is_err());
        assert!(Cli::try_parse_from(["x", "--reject", "nonsense"]).is_err());
    }
}
