//! Configuration from flags and environment variables. Each group is a `clap::Args` so
//! subcommands take only what they use; secrets are read into `Secret` and never printed.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use gradesync_activities::gov::{Credentials, GovClientConfig, Secret};

use crate::errors::CliError;

/// Where Temporal is and which task queue the workers poll.
#[derive(Debug, Clone, Args)]
pub struct TemporalArgs {
    /// Temporal frontend address, host:port or URL.
    #[arg(long, env = "TEMPORAL_ADDRESS", default_value = "localhost:7233")]
    pub temporal_address: String,
    /// Temporal namespace.
    #[arg(long, env = "TEMPORAL_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Task queue of the workflows and store activities; SendBatch uses `<queue>-send`.
    #[arg(long, env = "GRADESYNC_TASK_QUEUE", default_value = "gradesync")]
    pub task_queue: String,
}

impl TemporalArgs {
    pub fn send_queue(&self) -> String {
        format!("{}-send", self.task_queue)
    }
}

/// The grades store.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Grades database: `sqlite://PATH` (embedded, the default) or a PostgreSQL URL.
    #[arg(
        long,
        env = "GRADESYNC_DATABASE_URL",
        default_value = "sqlite://gradesync.db"
    )]
    pub database_url: String,
}

/// Default of `--rate-guard-ms`.
pub const DEFAULT_RATE_GUARD_MS: u64 = 15;

/// The government API and how fast we may call it.
#[derive(Debug, Clone, Args)]
pub struct GovArgs {
    /// Base URL of the government grades API.
    #[arg(
        long,
        env = "GRADESYNC_GOV_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub gov_api_url: String,
    /// OAuth2 client id.
    #[arg(long, env = "GRADESYNC_GOV_CLIENT_ID", default_value = "gradesync")]
    pub gov_client_id: String,
    /// OAuth2 client secret (never printed).
    #[arg(
        long,
        env = "GRADESYNC_GOV_CLIENT_SECRET",
        hide_env_values = true,
        default_value = "sim-secret"
    )]
    pub gov_client_secret: String,
    /// HTTP timeout of one request to the API, in seconds.
    #[arg(long, env = "GRADESYNC_HTTP_TIMEOUT_SECS", default_value_t = 120.0)]
    pub http_timeout_secs: f64,
    /// Requests per second the API allows, shared by every worker using this database.
    #[arg(long, env = "GRADESYNC_RATE_PER_SEC", default_value_t = 2.0)]
    pub rate_per_sec: f64,
    /// Margin added to the API's 1 s window, in ms: at most `rate` requests start in any
    /// 1 s + guard, which absorbs that much network and scheduling jitter at the API;
    /// 15 ms keeps 98.5% of the budget in use.
    #[arg(long, env = "GRADESYNC_RATE_GUARD_MS", default_value_t = DEFAULT_RATE_GUARD_MS)]
    pub rate_guard_ms: u64,
}

impl GovArgs {
    pub fn client_config(&self) -> Result<GovClientConfig, CliError> {
        if !self.rate_per_sec.is_finite() || self.rate_per_sec <= 0.0 {
            return Err(CliError::Usage(
                "--rate-per-sec must be greater than 0".into(),
            ));
        }
        if !self.http_timeout_secs.is_finite() || self.http_timeout_secs <= 0.0 {
            return Err(CliError::Usage(
                "--http-timeout-secs must be greater than 0".into(),
            ));
        }
        let credentials = Credentials::new(
            self.gov_client_id.clone(),
            Secret::new(self.gov_client_secret.clone()),
        );
        let mut config = GovClientConfig::new(self.gov_api_url.clone(), credentials);
        config.request_timeout = Duration::from_secs_f64(self.http_timeout_secs);
        Ok(config)
    }

    pub fn rate_guard(&self) -> Duration {
        Duration::from_millis(self.rate_guard_ms)
    }
}

/// Alerts and reports.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Slack-compatible webhook for dead-letter and deadline alerts.
    #[arg(long, env = "GRADESYNC_ALERT_WEBHOOK_URL")]
    pub alert_webhook_url: Option<String>,
    /// Webhook that receives each reconciliation report.
    #[arg(long, env = "GRADESYNC_COMPLIANCE_WEBHOOK_URL")]
    pub compliance_webhook_url: Option<String>,
    /// Directory for reconciliation reports (JSON + CSV).
    #[arg(long, env = "GRADESYNC_REPORT_DIR", default_value = "reports")]
    pub report_dir: PathBuf,
}
