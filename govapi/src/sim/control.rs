//! The `/_sim` control endpoints a test or an operator uses to read the ledger and change
//! faults over HTTP. They need no token, are not rate-limited and are not counted.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::faults::Faults;
use super::problem::{self, problem};
use super::state::SimState;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LedgerQuery {
    summary: bool,
}

pub(crate) async fn ledger(
    State(sim): State<Arc<SimState>>,
    query: Result<Query<LedgerQuery>, QueryRejection>,
) -> Response {
    let mut ledger = serde_json::to_value(sim.ledger()).unwrap_or_default();
    let summary = query.is_ok_and(|Query(q)| q.summary);
    if summary && let Some(obj) = ledger.as_object_mut() {
        obj.remove("records");
    }
    problem::json(200, &ledger)
}

pub(crate) async fn get_faults(State(sim): State<Arc<SimState>>) -> Response {
    problem::json(200, &sim.faults())
}

pub(crate) async fn set_faults(State(sim): State<Arc<SimState>>, body: Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return problem(
                400,
                "Bad Request",
                format!("the body is not a Faults object: {e}"),
            );
        }
    };
    if let Err(e) = faults.validate() {
        return problem(400, "Bad Request", e.to_string());
    }
    tracing::info!("gov-sim faults replaced");
    sim.set_faults(faults.clone());
    problem::json(200, &faults)
}

pub(crate) async fn revoke_tokens(State(sim): State<Arc<SimState>>) -> Response {
    sim.lock().tokens.revoke_all();
    tracing::info!("gov-sim tokens revoked");
    StatusCode::NO_CONTENT.into_response()
}
