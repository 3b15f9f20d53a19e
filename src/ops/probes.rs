//! Readiness: can this worker do its work right now? Temporal, the store and the API's
//! token endpoint each get one short check, and a draining worker is not ready (the
//! orchestrator stops sending it traffic while in-flight work finishes).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gradesync_activities::gov::GovClient;
use gradesync_activities::store::Store;
use temporalio_client::{Client, tonic};
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeNamespaceRequest;

/// How long one dependency may take to answer a probe.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the API's verdict is reused: a token check can cost a request of the API's
/// rate budget when no token is cached, so probes every few seconds must not repeat it.
const API_CHECK_TTL: Duration = Duration::from_secs(30);

/// The worker's dependencies, as the probes see them.
pub struct Probes {
    temporal: Client,
    store: Store,
    gov: Arc<GovClient>,
    draining: AtomicBool,
    api: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

/// One line per dependency; ready when every line is.
#[derive(Debug)]
pub struct Readiness {
    pub checks: Vec<(&'static str, Result<(), String>)>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|(_, r)| r.is_ok())
    }

    /// `temporal ok` / `store down: <why>` lines, as `/readyz` answers them.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (name, result) in &self.checks {
            match result {
                Ok(()) => out.push_str(&format!("{name} ok\n")),
                Err(e) => out.push_str(&format!("{name} down: {e}\n")),
            }
        }
        out
    }
}

async fn within<T, E: std::fmt::Display>(
    what: impl std::future::Future<Output = Result<T, E>>,
) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, what).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

impl Probes {
    pub fn new(temporal: Client, store: Store, gov: Arc<GovClient>) -> Self {
        Self {
            temporal,
            store,
            gov,
            draining: AtomicBool::new(false),
            api: tokio::sync::Mutex::new(None),
        }
    }

    /// From now on the worker reports itself not ready.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub async fn readiness(&self) -> Readiness {
        let (temporal, store, api) =
            tokio::join!(self.temporal(), within(self.store.ping()), self.api());
        let mut checks = vec![("temporal", temporal), ("store", store), ("gov-api", api)];
        if self.draining.load(Ordering::Relaxed) {
            checks.push(("worker", Err("draining: shutting down".to_string())));
        }
        Readiness { checks }
    }

    async fn temporal(&self) -> Result<(), String> {
        let request = DescribeNamespaceRequest {
            namespace: self.temporal.options().namespace.clone(),
            ..Default::default()
        };
        let mut service = self.temporal.connection().workflow_service();
        within(async move {
            service
                .describe_namespace(tonic::Request::new(request))
                .await
                .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
        })
        .await
    }

    async fn api(&self) -> Result<(), String> {
        let mut cached = self.api.lock().await;
        if let Some((at, result)) = cached.as_ref()
            && at.elapsed() < API_CHECK_TTL
        {
            return result.clone();
        }
        let result = within(self.gov.token_ready()).await;
        *cached = Some((Instant::now(), result.clone()));
        result
    }
}
