//! The HTTP server: the route table, and an accept loop of our own over hyper, because a
//! commit-then-drop fault needs to close a connection without writing any response, which
//! `axum::serve` cannot do. A handler marks such a response with [`DropConnection`]; the
//! connection's service turns it into an error, and hyper closes the connection.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::problem::{DropConnection, problem};
use super::state::SimState;
use super::{batches, control, gate, queries, token};

/// How long shutdown waits for requests in flight (a hanging one may never finish).
const GRACE: Duration = Duration::from_secs(2);

pub(crate) fn router(sim: Arc<SimState>) -> Router {
    Router::new()
        .route("/oauth/token", post(token::token))
        .route("/v1/grade-batches", post(batches::post_batch))
        .route("/v1/grade-batches/{batch_id}", get(batches::get_receipt))
        .route("/v1/quarters/{quarter}/summary", get(queries::summary))
        .route("/v1/quarters/{quarter}/records", get(queries::records))
        .route("/_sim/ledger", get(control::ledger))
        .route(
            "/_sim/faults",
            get(control::get_faults).post(control::set_faults),
        )
        .route("/_sim/revoke-tokens", post(control::revoke_tokens))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(Arc::clone(&sim), gate::gate))
        .with_state(sim)
}

async fn not_found() -> Response {
    problem(404, "Not Found", "no such endpoint: see docs/gov-api.md")
}

async fn method_not_allowed() -> Response {
    problem(
        405,
        "Method Not Allowed",
        "this endpoint does not take that method: see docs/gov-api.md",
    )
}

/// The error a connection's service returns to make hyper close it without answering.
#[derive(Debug)]
struct ClosedOnPurpose;

impl std::fmt::Display for ClosedOnPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed on purpose after commit")
    }
}

impl std::error::Error for ClosedOnPurpose {}

async fn call(router: Router, req: hyper::Request<Incoming>) -> Result<Response, ClosedOnPurpose> {
    let resp = router
        .oneshot(req.map(Body::new))
        .await
        .unwrap_or_else(|never: Infallible| match never {});
    if resp.extensions().get::<DropConnection>().is_some() {
        return Err(ClosedOnPurpose);
    }
    Ok(resp)
}

/// Accepts connections until `shutdown` completes, then lets requests in flight finish
/// for a short grace period. With `tls`, each connection is a TLS one.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => serve_connection(&graceful, stream, router.clone(), tls.clone()),
                // Out of file descriptors and the like: pause rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "gov-sim accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("gov-sim shut down with requests still in flight");
    }
    Ok(())
}

fn serve_connection(
    graceful: &GracefulShutdown,
    stream: tokio::net::TcpStream,
    router: Router,
    tls: Option<TlsAcceptor>,
) {
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        match tls {
            None => serve_io(watcher, stream, router).await,
            // The handshake runs on the connection's own task, so a slow or failed one
            // never holds the accept loop.
            Some(acceptor) => match acceptor.accept(stream).await {
                Ok(stream) => serve_io(watcher, stream, router).await,
                Err(e) => tracing::debug!(error = %e, "gov-sim TLS handshake failed"),
            },
        }
    });
}

async fn serve_io<S>(watcher: Watcher, stream: S, router: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| call(router.clone(), req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "gov-sim connection ended");
    }
}
