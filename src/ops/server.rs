//! The listener behind `--metrics-listen`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::{Probes, SdkMetrics};

struct Shared {
    probes: Arc<Probes>,
    sdk: SdkMetrics,
}

/// Binds `addr` (failing at once if it cannot) and serves until the process ends.
pub async fn serve(
    addr: SocketAddr,
    probes: Arc<Probes>,
    sdk: SdkMetrics,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(Shared { probes, sdk }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(bound)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let mut text = gradesync_activities::metrics::get().render();
    match shared.sdk.render().await {
        Ok(sdk) => text.push_str(&sdk),
        // gradesync's own series are still worth a scrape.
        Err(e) => tracing::warn!(error = %e, "cannot read the Temporal SDK's metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let readiness = shared.probes.readiness().await;
    let status = if readiness.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, readiness.text())
}
