//! A real HTTP server that implements the government grades API (`docs/gov-api.md`) and
//! injects the faults of the real one on demand: rate limiting, latency, outages, 5xx,
//! a gateway's HTML 403s, answers lost after a commit, silent data loss and rejected
//! records. Tests run it in-process with [`spawn`]; `gradesync gov-sim` runs it standalone
//! ([`args`]). Its [`Ledger`] tells what really reached the registry, so a test can prove
//! exactly-once delivery and rate discipline.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod args;
mod auth;
mod batches;
mod control;
mod error;
mod faults;
mod gate;
mod ledger;
mod problem;
mod queries;
mod rate;
mod server;
mod state;
mod tls;
mod token;

pub use error::SimError;
pub use faults::{Faults, RejectRule};
pub use ledger::{Ledger, RecordLedger};
pub use problem::UNNAMED_RECORD_ID;
pub use queries::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use rate::{ArrivalKind, TightSpan};
pub use tls::SimTls;

use state::SimState;

/// Who may get tokens, how long they live, and the faults to start with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    pub client_id: String,
    pub client_secret: String,
    pub token_ttl: Duration,
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            client_id: "gradesync".to_string(),
            client_secret: "sim-secret".to_string(),
            token_ttl: Duration::from_secs(1800),
            faults: Faults::default(),
        }
    }
}

fn invalid(e: SimError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
}

/// Starts a simulator on `127.0.0.1:<free port>` in the background. Dropping the handle
/// stops it, as does [`SimHandle::shutdown`].
pub async fn spawn(config: SimConfig) -> std::io::Result<SimHandle> {
    spawn_tls(config, None).await
}

/// Like [`spawn`], serving HTTPS with `tls` when given (`base_url` says `https://`).
pub async fn spawn_tls(config: SimConfig, tls: Option<SimTls>) -> std::io::Result<SimHandle> {
    config.faults.validate().map_err(invalid)?;
    let acceptor = tls
        .as_ref()
        .map(SimTls::acceptor)
        .transpose()
        .map_err(invalid)?;
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(SimState::new(config));
    let (stop, stopped) = oneshot::channel::<()>();
    let router = server::router(Arc::clone(&state));
    let shutdown = async {
        let _ = stopped.await;
    };
    let task = tokio::spawn(server::accept_loop(listener, router, acceptor, shutdown));
    Ok(SimHandle {
        scheme: if tls.is_some() { "https" } else { "http" },
        addr,
        state,
        stop: Some(stop),
        task,
    })
}

/// Serves the simulator on `listener` until `shutdown` completes, over TLS with `tls`.
pub async fn serve(
    listener: TcpListener,
    config: SimConfig,
    tls: Option<&SimTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    config.faults.validate().map_err(invalid)?;
    let acceptor = tls.map(SimTls::acceptor).transpose().map_err(invalid)?;
    let state = Arc::new(SimState::new(config));
    server::accept_loop(listener, server::router(state), acceptor, shutdown).await
}

/// A running in-process simulator.
pub struct SimHandle {
    scheme: &'static str,
    addr: SocketAddr,
    state: Arc<SimState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT` (`https://` with TLS), without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the ledger, as `GET /_sim/ledger` serves it.
    pub async fn ledger(&self) -> Ledger {
        self.state.ledger()
    }

    /// What the registry holds for `quarter` now: the record hash of each record's current
    /// content, by record id. Read in process, so it costs no request of the rate budget
    /// (tests compare it with the content they expect to have won).
    pub async fn holds(&self, quarter: &str) -> std::collections::BTreeMap<String, String> {
        let inner = self.state.lock();
        let (page, _) = inner.store.page(quarter, None, None, usize::MAX);
        page.into_iter().map(|r| (r.record_id, r.sha256)).collect()
    }

    /// Replaces the faults (restarting their random stream and the outage clock), as
    /// `POST /_sim/faults` does. Probabilities outside [0, 1] act as clamped.
    pub async fn set_faults(&self, faults: Faults) {
        self.state.set_faults(faults);
    }

    /// Makes every token issued so far invalid.
    pub async fn revoke_tokens(&self) {
        self.state.lock().tokens.revoke_all();
    }

    /// Stops accepting connections and waits briefly for requests in flight.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(e) = (&mut self.task).await {
            tracing::warn!(error = %e, "gov-sim server task failed");
        }
    }
}
