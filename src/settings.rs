//! Configuration from flags and environment variables. Each group is a `clap::Args` so
//! subcommands take only what they use; secrets are read into `Secret` and never printed.
//! Each secret can come from a file (`…_FILE`), and `--help` never shows a secret's value.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gradesync_activities::gov::{Credentials, GovClientConfig, GovTls, Secret};
use gradesync_activities::source::{DynamoTarget, Source, SourceError};

use crate::errors::CliError;
use crate::secret_file;

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

/// Where QueryPending reads pending grades from, besides what `gradesync import` stored.
#[derive(Debug, Clone, Default, Args)]
pub struct SourceArgs {
    /// The Step Functions design's DynamoDB table, read as it is:
    /// `dynamodb://TABLE?index=GSI_NAME` (the index keyed on sync_status). Attributes named
    /// otherwise than the record's fields are mapped with `&grade=ATTR`, `&student_id=ATTR`
    /// ..., the status attribute with `&status=ATTR`. QueryPending reads the pending items
    /// into the store; MarkSynced marks each confirmed item `synced` there (with
    /// synced_batch_id and synced_at), only if it is still pending and unchanged. AWS
    /// credentials and region come from the standard chain (AWS_REGION, AWS_PROFILE, ...);
    /// AWS_ENDPOINT_URL points at a local endpoint.
    #[arg(long = "source", env = "GRADESYNC_SOURCE", value_name = "URL")]
    pub source: Option<String>,
}

impl SourceArgs {
    /// No source: the store's imports only.
    pub fn none() -> Self {
        Self::default()
    }

    /// The configured table, parsed (`GRADESYNC_SOURCE=` set but empty means none).
    pub fn target(&self) -> Result<Option<DynamoTarget>, CliError> {
        match self.source.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(url) => url
                .parse::<DynamoTarget>()
                .map(Some)
                .map_err(|e| CliError::Usage(format!("--source / GRADESYNC_SOURCE: {e}"))),
        }
    }

    /// Connects the configured table (describing it, so a wrong name fails now).
    pub async fn connect(&self) -> Result<Option<Arc<Source>>, CliError> {
        match self.target()? {
            None => Ok(None),
            Some(target) => connect_source(target).await.map(|s| Some(Arc::new(s))),
        }
    }
}

/// Connects a table: a configuration problem is a usage error (exit 2), an unreachable
/// endpoint exit 3.
pub async fn connect_source(target: DynamoTarget) -> Result<Source, CliError> {
    Source::connect(target).await.map_err(source_error)
}

/// A source error as the CLI's: exit 2 for configuration, 3 for the rest.
pub fn source_error(e: SourceError) -> CliError {
    if e.is_retryable() {
        CliError::Unreachable(e.to_string())
    } else {
        CliError::Usage(e.to_string())
    }
}

/// Default of `--rate-guard-ms`.
pub const DEFAULT_RATE_GUARD_MS: u64 = 15;

/// The government API and how fast we may call it.
#[derive(Debug, Clone, Args)]
pub struct GovArgs {
    /// Base URL of the government grades API. Plain http:// is refused unless the host
    /// is this machine or --allow-insecure-http is given.
    #[arg(
        long,
        env = "GRADESYNC_GOV_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub gov_api_url: String,
    /// OAuth2 client id.
    #[arg(long, env = "GRADESYNC_GOV_CLIENT_ID", default_value = "gradesync")]
    pub gov_client_id: String,
    /// OAuth2 client secret (never printed). Prefer GRADESYNC_GOV_CLIENT_SECRET_FILE: a
    /// value given as this flag is visible to every user of the host (`ps`), and gradesync
    /// warns about it.
    #[arg(
        long,
        env = "GRADESYNC_GOV_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub gov_client_secret: Option<String>,
    /// File holding the OAuth2 client secret (a trailing newline is ignored), e.g. a
    /// mounted Docker or Kubernetes secret.
    #[arg(long, env = "GRADESYNC_GOV_CLIENT_SECRET_FILE", value_name = "PATH")]
    pub gov_client_secret_file: Option<PathBuf>,
    /// Accept a plain http:// API URL whose host is not this machine (the secret and the
    /// grades then cross the network unencrypted): only for a private network that is
    /// encrypted otherwise.
    #[arg(
        long,
        env = "GRADESYNC_ALLOW_INSECURE_HTTP",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue
    )]
    pub allow_insecure_http: bool,
    /// PEM file of the CA that signed the API's certificate; when given, only this CA is
    /// trusted for the API (not the system's roots).
    #[arg(long, env = "GRADESYNC_GOV_CA_CERT", value_name = "PATH")]
    pub gov_ca_cert: Option<PathBuf>,
    /// PEM client certificate for mTLS with the API, with --gov-client-key.
    #[arg(long, env = "GRADESYNC_GOV_CLIENT_CERT", value_name = "PATH")]
    pub gov_client_cert: Option<PathBuf>,
    /// PEM private key of --gov-client-cert.
    #[arg(long, env = "GRADESYNC_GOV_CLIENT_KEY", value_name = "PATH")]
    pub gov_client_key: Option<PathBuf>,
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
    /// The API at `url` with the simulator's credentials given as values, everything else
    /// at its default: the demo, the bench and the tests.
    pub fn simulator(url: impl Into<String>, client_id: &str, client_secret: &str) -> Self {
        Self {
            gov_api_url: url.into(),
            gov_client_id: client_id.to_string(),
            gov_client_secret: Some(client_secret.to_string()),
            gov_client_secret_file: None,
            allow_insecure_http: false,
            gov_ca_cert: None,
            gov_client_cert: None,
            gov_client_key: None,
            http_timeout_secs: GovClientConfig::DEFAULT_REQUEST_TIMEOUT.as_secs_f64(),
            rate_per_sec: 2.0,
            rate_guard_ms: DEFAULT_RATE_GUARD_MS,
        }
    }

    /// The client secret, from its variable (or flag) or its file. There is no default:
    /// the simulator's secret would only ever fail against the real API.
    pub fn client_secret(&self) -> Result<Secret, CliError> {
        secret_file::resolve(
            "GRADESYNC_GOV_CLIENT_SECRET",
            self.gov_client_secret.as_deref(),
            self.gov_client_secret_file.as_deref(),
        )?
        .ok_or_else(|| {
            CliError::Usage(
                "no client secret for the government API: put it in a file and set \
                 GRADESYNC_GOV_CLIENT_SECRET_FILE to its path (or set \
                 GRADESYNC_GOV_CLIENT_SECRET); only `gradesync demo` and `gradesync gov-sim` \
                 come with the simulator's"
                    .into(),
            )
        })
    }

    pub fn tls(&self) -> Result<GovTls, CliError> {
        GovTls::from_files(
            self.gov_ca_cert.as_deref(),
            self.gov_client_cert.as_deref(),
            self.gov_client_key.as_deref(),
        )
        .map_err(|e| CliError::Usage(e.to_string()))
    }

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
        let credentials = Credentials::new(self.gov_client_id.clone(), self.client_secret()?);
        let mut config = GovClientConfig::new(self.gov_api_url.clone(), credentials);
        config.request_timeout = Duration::from_secs_f64(self.http_timeout_secs);
        config.allow_insecure_http = self.allow_insecure_http;
        config.tls = self.tls()?;
        Ok(config)
    }

    pub fn rate_guard(&self) -> Duration {
        Duration::from_millis(self.rate_guard_ms)
    }
}

/// Alerts and reports. A webhook URL is a secret (Slack's carries its token in the path):
/// it is never printed beyond scheme and host, and can come from a file.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Slack-compatible webhook for dead-letter and deadline alerts. Prefer
    /// GRADESYNC_ALERT_WEBHOOK_URL_FILE: a flag's value is visible in `ps`.
    #[arg(
        long,
        env = "GRADESYNC_ALERT_WEBHOOK_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub alert_webhook_url: Option<String>,
    /// File holding the alert webhook's URL.
    #[arg(long, env = "GRADESYNC_ALERT_WEBHOOK_URL_FILE", value_name = "PATH")]
    pub alert_webhook_url_file: Option<PathBuf>,
    /// Webhook that receives each reconciliation report. Prefer
    /// GRADESYNC_COMPLIANCE_WEBHOOK_URL_FILE: a flag's value is visible in `ps`.
    #[arg(
        long,
        env = "GRADESYNC_COMPLIANCE_WEBHOOK_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub compliance_webhook_url: Option<String>,
    /// File holding the compliance webhook's URL.
    #[arg(
        long,
        env = "GRADESYNC_COMPLIANCE_WEBHOOK_URL_FILE",
        value_name = "PATH"
    )]
    pub compliance_webhook_url_file: Option<PathBuf>,
    /// Also write each report as JSON and CSV files in this directory; the database
    /// always keeps them.
    #[arg(long, env = "GRADESYNC_REPORT_DIR")]
    pub report_dir: Option<PathBuf>,
}

impl OutputArgs {
    /// No webhooks, no report files.
    pub fn none() -> Self {
        Self {
            alert_webhook_url: None,
            alert_webhook_url_file: None,
            compliance_webhook_url: None,
            compliance_webhook_url_file: None,
            report_dir: None,
        }
    }

    /// The alert webhook, checked; `None` when unset.
    pub fn alert_webhook(&self) -> Result<Option<Secret>, CliError> {
        webhook(
            "GRADESYNC_ALERT_WEBHOOK_URL",
            self.alert_webhook_url.as_deref(),
            self.alert_webhook_url_file.as_deref(),
        )
    }

    /// The compliance webhook, checked; `None` when unset.
    pub fn compliance_webhook(&self) -> Result<Option<Secret>, CliError> {
        webhook(
            "GRADESYNC_COMPLIANCE_WEBHOOK_URL",
            self.compliance_webhook_url.as_deref(),
            self.compliance_webhook_url_file.as_deref(),
        )
    }
}

/// A webhook URL from its value or file, refused at start when it is not an http(s) URL
/// (rather than at the first alert, mid-run). The message shows none of it.
fn webhook(
    var: &'static str,
    value: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<Secret>, CliError> {
    let Some(url) = secret_file::resolve(var, value, file)? else {
        return Ok(None);
    };
    if !gradesync_activities::alert::is_http_url(url.expose()) {
        return Err(CliError::Usage(format!(
            "{var} is not an http:// or https:// URL (its value is not shown: it holds the \
             webhook's secret); give the full URL the service issued"
        )));
    }
    Ok(Some(url))
}
