//! `gradesync check`: asks Temporal, the grades store, the DynamoDB source (when one is
//! configured) and the government API whether they answer, with the same settings the
//! worker uses, and sends no grades. One line per
//! service; the exit code is the worst failure's (3 unreachable, 2 bad settings).

use std::sync::Arc;

use clap::Args;
use gradesync_activities::gov::{GovClient, GovError, SpacingGate};
use gradesync_activities::rate::StoreRateGate;
use gradesync_activities::store::Store;
use temporalio_client::tonic;
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeNamespaceRequest;

use crate::errors::{CliError, CliResult};
use crate::settings::{GovArgs, SourceArgs, StoreArgs, TemporalArgs};
use crate::temporal::{ConnectionConfig, classify_status};

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub temporal: TemporalArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub gov: GovArgs,
}

pub async fn run(args: CheckArgs) -> CliResult {
    let mut failures = Vec::new();
    match check_temporal(&args.temporal).await {
        Ok(line) => println!("temporal  ok  {line}"),
        Err(e) => failures.push(e),
    }
    let store = match crate::worker::open_store(&args.store).await {
        Ok(store) => {
            println!("store     ok  {}", store.location());
            Some(store)
        }
        Err(e) => {
            failures.push(e);
            None
        }
    };
    match check_source(&args.source).await {
        Ok(Some(line)) => println!("source    ok  {line}"),
        Ok(None) => {}
        Err(e) => failures.push(e),
    }
    match check_gov(&args.gov, store).await {
        Ok(tls) => println!(
            "gov-api   ok  {} (token issued to {}{tls})",
            args.gov.gov_api_url, args.gov.gov_client_id
        ),
        Err(e) => failures.push(e),
    }
    // Every failure but the worst goes to stderr here; the worst is returned so that it
    // sets the exit code and is printed by main like any other error.
    failures.sort_by_key(|e| std::cmp::Reverse(e.exit_code()));
    let mut failures = failures.into_iter();
    let Some(worst) = failures.next() else {
        return Ok(());
    };
    for other in failures {
        eprintln!("gradesync: {other}");
    }
    Err(worst)
}

/// Connects with the resolved settings and describes the namespace; on success, says
/// which address, namespace, TLS mode and profile were used (never the API key itself).
async fn check_temporal(args: &TemporalArgs) -> Result<String, CliError> {
    let config = crate::temporal::config::resolve(args)?;
    let client = crate::temporal::connect_to(&config).await?;
    let request = DescribeNamespaceRequest {
        namespace: config.namespace.clone(),
        ..Default::default()
    };
    client
        .connection()
        .workflow_service()
        .describe_namespace(tonic::Request::new(request))
        .await
        .map_err(|status| match status.code() {
            tonic::Code::NotFound => CliError::Usage(format!(
                "Temporal at {} has no namespace `{}`: create it or set TEMPORAL_NAMESPACE",
                config.address, config.namespace
            )),
            _ => classify_status(&config, &status).into(),
        })?;
    Ok(describe(&config))
}

fn describe(config: &ConnectionConfig) -> String {
    let api_key = if config.api_key.is_some() {
        ", api key: set"
    } else {
        ""
    };
    let profile = match &config.profile {
        Some(p) => format!("profile `{}` of {}", p.name, p.file.display()),
        None => "no profile".to_string(),
    };
    format!(
        "{} (namespace {}, {}{api_key}, {profile})",
        config.address,
        config.namespace,
        config.tls_mode()
    )
}

/// Describes the table: it exists, the index is keyed on the status attribute and active,
/// the credentials may read it. `None` when no source is configured.
async fn check_source(args: &SourceArgs) -> Result<Option<String>, CliError> {
    let Some(source) = args.connect().await? else {
        return Ok(None);
    };
    let status = source
        .status()
        .await
        .map_err(crate::settings::source_error)?;
    let items = status
        .items
        .map_or(String::new(), |n| format!(", about {n} items"));
    Ok(Some(format!(
        "{} (table {}, index {}{items})",
        source.target().url(),
        status.table_status,
        status.index_status
    )))
}

/// A token request goes through the store's rate gate when the store is up, so a check
/// made during a run still keeps the API's window. Says how TLS was set up (paths only).
async fn check_gov(args: &GovArgs, store: Option<Store>) -> Result<String, CliError> {
    let config = args.client_config()?;
    let tls = if config.base_url.starts_with("https:") {
        format!(", {}", config.tls.describe())
    } else {
        String::new()
    };
    let client = match store {
        Some(store) => GovClient::new(
            config,
            Arc::new(StoreRateGate::new(
                store,
                args.rate_per_sec,
                args.rate_guard(),
            )),
        ),
        None => GovClient::new(
            config,
            Arc::new(SpacingGate::new(args.rate_per_sec, args.rate_guard())),
        ),
    }
    .map_err(gov_error)?;
    client.check().await.map_err(gov_error)?;
    Ok(tls)
}

fn gov_error(e: GovError) -> CliError {
    match e {
        GovError::BadBaseUrl { .. }
        | GovError::BadCredentials { .. }
        | GovError::InsecureHttp { .. }
        | GovError::Tls { .. } => CliError::Usage(e.to_string()),
        e if e.is_retryable() => CliError::Unreachable(e.to_string()),
        e => CliError::Other(e.into()),
    }
}
