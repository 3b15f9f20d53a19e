//! Configuration from flags and environment variables. Each group is a `clap::Args` so
//! subcommands take only what they use; secrets are read into `Secret` and never printed.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use gradesync_activities::gov::{Credentials, GovClientConfig, Secret};

use crate::errors::CliError;

/// Where Temporal is and which task queue the workers poll. The connection flags are raw:
/// unset ones leave the choice to Temporal's environment configuration (`TEMPORAL_*`
/// variables, then the profile file); `crate::temporal::config` resolves them.
#[derive(Debug, Clone, Args)]
pub struct TemporalArgs {
    /// Temporal frontend address, host:port or URL [env: TEMPORAL_ADDRESS] [default:
    /// 127.0.0.1:7233].
    #[arg(long)]
    pub temporal_address: Option<String>,
    /// Temporal namespace [env: TEMPORAL_NAMESPACE] [default: default].
    #[arg(long)]
    pub namespace: Option<String>,
    /// PEM file of the CA that signed the server's certificate; turns TLS on
    /// [env: TEMPORAL_TLS_SERVER_CA_CERT_PATH].
    #[arg(long, value_name = "PATH")]
    pub temporal_tls_ca_cert: Option<PathBuf>,
    /// PEM client certificate for mTLS, with --temporal-tls-key
    /// [env: TEMPORAL_TLS_CLIENT_CERT_PATH].
    #[arg(long, value_name = "PATH")]
    pub temporal_tls_cert: Option<PathBuf>,
    /// PEM private key of --temporal-tls-cert [env: TEMPORAL_TLS_CLIENT_KEY_PATH].
    #[arg(long, value_name = "PATH")]
    pub temporal_tls_key: Option<PathBuf>,
    /// Name to verify the server's certificate against (and send as SNI) when it differs
    /// from the address's host [env: TEMPORAL_TLS_SERVER_NAME].
    #[arg(long, value_name = "NAME")]
    pub temporal_tls_server_name: Option<String>,
    /// Profile of the Temporal config file (TEMPORAL_CONFIG_FILE, else
    /// ~/.config/temporalio/temporal.toml) [env: TEMPORAL_PROFILE] [default: default].
    /// The API key comes only from TEMPORAL_API_KEY or the profile, never a flag.
    #[arg(long, value_name = "NAME")]
    pub temporal_profile: Option<String>,
    /// Only the flags count (no `TEMPORAL_*` variables, no profile): for the dev servers of
    /// the demo, the bench and the tests, which a shell set up for Temporal Cloud must not
    /// redirect.
    #[arg(skip)]
    pub ignore_environment: bool,
    /// Task queue of the workflows and store activities; SendBatch uses `<queue>-send`.
    #[arg(long, env = "GRADESYNC_TASK_QUEUE", default_value = "gradesync")]
    pub task_queue: String,
}

impl TemporalArgs {
    /// A plaintext server at `address` in namespace `default`, whatever the environment
    /// says about TLS: the dev server of the demo, the bench and the tests.
    pub fn local(address: impl Into<String>, task_queue: impl Into<String>) -> Self {
        Self {
            temporal_address: Some(address.into()),
            namespace: Some("default".into()),
            temporal_tls_ca_cert: None,
            temporal_tls_cert: None,
            temporal_tls_key: None,
            temporal_tls_server_name: None,
            temporal_profile: None,
            ignore_environment: true,
            task_queue: task_queue.into(),
        }
    }

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
    /// Also write each report as JSON and CSV files in this directory; the database
    /// always keeps them.
    #[arg(long, env = "GRADESYNC_REPORT_DIR")]
    pub report_dir: Option<PathBuf>,
}
