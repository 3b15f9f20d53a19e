//! `gradesync setup`: registers gradesync's search attributes in the Temporal namespace
//! (quarter, phase, verdict, records synced and owed), so the Web UI's workflow list can
//! show and filter on them. Idempotent: a second run says they are already there.
//!
//! Starters ask [`registered`] before each start and tell the run whether it may upsert
//! them: on a namespace where setup never ran, a run that upserted one would fail every
//! workflow task, so there it runs without them and the starter warns.

use std::collections::HashMap;
use std::time::Duration;

use clap::Args;
use gradesync_workflows::search_attributes::{self, ALL};
use temporalio_client::{Client, NamespacedClient, tonic};
use temporalio_common::protos::temporal::api::enums::v1::IndexedValueType;
use temporalio_common::protos::temporal::api::operatorservice::v1::{
    AddSearchAttributesRequest, ListSearchAttributesRequest,
};

use crate::errors::{CliError, CliResult};
use crate::settings::TemporalArgs;
use crate::temporal::{ConnectionConfig, classify_status};

#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub temporal: TemporalArgs,
}

/// How long setup waits for the server to list what it just registered.
const REGISTERED_WITHIN: Duration = Duration::from_secs(30);

pub async fn run(args: SetupArgs) -> CliResult {
    let config = crate::temporal::config::resolve(&args.temporal)?;
    let client = crate::temporal::connect_to(&config).await?;
    let missing = missing(&client)
        .await
        .map_err(|s| list_error(&config, &s))?;
    let names = ALL.map(|(name, _)| name).join(", ");
    if missing.is_empty() {
        println!(
            "search attributes already registered in namespace {}: {names}",
            config.namespace
        );
        return Ok(());
    }
    let request = AddSearchAttributesRequest {
        search_attributes: missing
            .iter()
            .map(|(n, t)| (n.to_string(), *t as i32))
            .collect(),
        namespace: config.namespace.clone(),
    };
    client
        .connection()
        .operator_service()
        .add_search_attributes(tonic::Request::new(request))
        .await
        .map_err(|s| refused(&config, &s))?;
    wait_until_listed(&client, &config).await?;
    let added: Vec<_> = missing
        .iter()
        .map(|(n, t)| format!("{n} ({})", search_attributes::type_name(*t)))
        .collect();
    println!(
        "registered in namespace {}: {}; runs started from now on show them in the Web UI \
         (re-run `gradesync schedule create` if the schedule was created before)",
        config.namespace,
        added.join(", ")
    );
    Ok(())
}

/// The attributes the namespace lacks. One registered under another type is an error:
/// the workflows' upserts would fail on it.
async fn missing(client: &Client) -> Result<Vec<(&'static str, IndexedValueType)>, tonic::Status> {
    let listed = listed(client).await?;
    let mut missing = Vec::new();
    for (name, kind) in ALL {
        match listed.get(name) {
            None => missing.push((name, kind)),
            Some(have) if *have == kind as i32 => {}
            Some(have) => {
                let have = IndexedValueType::try_from(*have)
                    .map_or_else(|_| format!("type {have}"), |t| t.as_str_name().to_string());
                return Err(tonic::Status::failed_precondition(format!(
                    "search attribute {name} is registered as {have}, gradesync needs {}: \
                     remove it (`temporal operator search-attribute remove --name {name}`) \
                     and run `gradesync setup` again",
                    search_attributes::type_name(kind)
                )));
            }
        }
    }
    Ok(missing)
}

async fn listed(client: &Client) -> Result<HashMap<String, i32>, tonic::Status> {
    let request = ListSearchAttributesRequest {
        namespace: client.namespace(),
    };
    let listed = client
        .connection()
        .operator_service()
        .list_search_attributes(tonic::Request::new(request))
        .await?
        .into_inner();
    Ok(listed.custom_attributes)
}

/// The server registers asynchronously on some visibility stores: wait until it lists them.
async fn wait_until_listed(client: &Client, config: &ConnectionConfig) -> Result<(), CliError> {
    let deadline = tokio::time::Instant::now() + REGISTERED_WITHIN;
    loop {
        let missing = missing(client).await.map_err(|s| list_error(config, &s))?;
        if missing.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(CliError::Unreachable(format!(
                "Temporal at {} accepted the search attributes but still does not list {} after \
                 {} s; run `gradesync setup` again",
                config.address,
                missing
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
                REGISTERED_WITHIN.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A type clash says what to do itself; anything else is a connection or auth problem.
fn list_error(config: &ConnectionConfig, status: &tonic::Status) -> CliError {
    match status.code() {
        tonic::Code::FailedPrecondition => CliError::Usage(status.message().to_string()),
        _ => refused(config, status),
    }
}

/// Temporal Cloud (and a cluster that withholds the operator API from this client) refuses
/// registration: say how to register them there instead.
fn refused(config: &ConnectionConfig, status: &tonic::Status) -> CliError {
    match status.code() {
        tonic::Code::PermissionDenied
        | tonic::Code::Unimplemented
        | tonic::Code::Unauthenticated => {
            let flags = search_attributes::dev_server_flags()
                .iter()
                .map(|f| format!("--sa {f}"))
                .collect::<Vec<_>>()
                .join(" ");
            CliError::Usage(format!(
                "Temporal at {} does not let this client register search attributes ({}). On \
                 Temporal Cloud add them with `tcld namespace search-attributes add --namespace {} \
                 {flags}` or in the Cloud UI (namespace > Search Attributes); on a self-hosted \
                 cluster run `gradesync setup` with an admin's credentials",
                config.address,
                status.message().lines().next().unwrap_or_default(),
                config.namespace
            ))
        }
        _ => classify_status(config, status).into(),
    }
}

/// Whether a run started now may upsert the search attributes. When they are not
/// registered (or the check fails) the run goes on without them, and this says how to get
/// them on stderr.
pub async fn registered(client: &Client) -> bool {
    match missing(client).await {
        Ok(missing) if missing.is_empty() => true,
        Ok(missing) => {
            eprintln!(
                "gradesync: warning: namespace {} lacks the search attributes {}: the run goes \
                 on, but the Web UI will not show its quarter, phase and verdict; run \
                 `gradesync setup` once",
                client.namespace(),
                missing
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            false
        }
        Err(status) => {
            eprintln!(
                "gradesync: warning: cannot list the search attributes of namespace {} ({}): \
                 the run goes on without them; `gradesync setup` registers them",
                client.namespace(),
                status.message().lines().next().unwrap_or_default()
            );
            false
        }
    }
}
