//! The middleware every API request passes: arrival accounting, rate limit and injected
//! failures on the way in; `RateLimit` headers, status counts and the access log on the way
//! out. The `/_sim` control endpoints bypass it entirely.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Instant;

use axum::http::HeaderValue;
use axum::http::header::CONNECTION;

use super::batches::DRAIN_LIMIT;
use super::problem::{self, DropConnection};
use super::state::{Admission, SimState, is_batch_post};

/// Whether the path belongs to the API proper (rate-limited and counted).
fn is_api(path: &str) -> bool {
    path == "/oauth/token" || path.starts_with("/v1/")
}

/// A request refused on arrival (429, an injected failure) has its body read before the
/// answer, as a well-behaved server does: hyper would otherwise close a connection whose
/// request body was left unread, without saying so, and the client's next request on it
/// would meet a closed socket ("connection lost before an answer"), which the real API's
/// keep-alive never causes. A body too large to drain closes the connection, said so.
async fn drained(req: Request, mut resp: Response) -> Response {
    if axum::body::to_bytes(req.into_body(), DRAIN_LIMIT)
        .await
        .is_err()
    {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

pub(crate) async fn gate(
    State(sim): State<Arc<SimState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    if !is_api(&path) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let started = Instant::now();
    let resp = match sim.arrive(&method, &path) {
        Admission::Refused(resp) => drained(req, resp).await,
        Admission::Admitted { roll, quota } => {
            req.extensions_mut().insert(roll);
            let mut resp = next.run(req).await;
            quota.inspect(|q| problem::set_quota(&mut resp, *q));
            resp
        }
    };
    let dropped = resp.extensions().get::<DropConnection>().is_some();
    let status = (!dropped).then(|| resp.status().as_u16());
    sim.answered(status, is_batch_post(&method, &path));
    tracing::debug!(
        %method,
        path,
        status = status.unwrap_or(0),
        dropped,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "gov-sim request"
    );
    resp
}
