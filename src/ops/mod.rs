//! What an operator needs from a running worker, on one listener (`--metrics-listen`):
//! Prometheus text at `/metrics` (the Temporal SDK's worker series and gradesync's own),
//! `/healthz` (the process answers) and `/readyz` (Temporal, the store and the API's token
//! endpoint answer, and the worker is not draining).

mod probes;
mod sdk;
mod server;
mod watch;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

pub use probes::Probes;
pub use sdk::SdkMetrics;
pub use server::serve;
pub use watch::watch_quarters;

/// Default of `--shutdown-grace-secs`.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: f64 = 25.0;

/// Observability and shutdown of a worker process.
#[derive(Debug, Clone, Args)]
pub struct OpsArgs {
    /// Serve /metrics (Prometheus), /healthz and /readyz on this address, e.g.
    /// 0.0.0.0:9464. Off when unset.
    #[arg(long, env = "GRADESYNC_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// On SIGTERM or Ctrl-C, how long in-flight work (a SendBatch waiting for the API's
    /// answer) may take to finish before it is handed back to Temporal, to be sent again by
    /// another worker with the same idempotency key and bytes. The process exits 0 within
    /// it.
    #[arg(long, env = "GRADESYNC_SHUTDOWN_GRACE_SECS", default_value_t = DEFAULT_SHUTDOWN_GRACE_SECS)]
    pub shutdown_grace_secs: f64,
}

impl OpsArgs {
    pub fn none() -> Self {
        Self {
            metrics_listen: None,
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
        }
    }

    pub fn shutdown_grace(&self) -> Result<Duration, crate::errors::CliError> {
        Duration::try_from_secs_f64(self.shutdown_grace_secs).map_err(|_| {
            crate::errors::CliError::Usage(
                "--shutdown-grace-secs must be a number of seconds, 0 or more".into(),
            )
        })
    }
}
