//! The read side a client reconciles against: per-school counts of a quarter and the
//! paged list of record hashes.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::faults::Roll;
use super::problem::{self, Refusal, problem};
use super::state::SimState;
use crate::contract::{QuarterSummary, RecordsPage};
use crate::quarter::Quarter;

pub const DEFAULT_PAGE_SIZE: usize = 1000;
pub const MAX_PAGE_SIZE: usize = 10_000;

/// Authorization, then latency, then the quarter from the path: common to both queries.
async fn prelude(
    sim: &SimState,
    roll: &Roll,
    headers: &HeaderMap,
    quarter: &str,
) -> Result<Quarter, Refusal> {
    sim.authorize(headers)?;
    tokio::time::sleep(sim.faults().latency(roll)).await;
    quarter
        .parse::<Quarter>()
        .map_err(|e| problem(400, "Bad Request", e.to_string()).into())
}

pub(crate) async fn summary(
    State(sim): State<Arc<SimState>>,
    Extension(roll): Extension<Roll>,
    headers: HeaderMap,
    Path(quarter): Path<String>,
) -> Response {
    let quarter = match prelude(&sim, &roll, &headers, &quarter).await {
        Ok(q) => q.to_string(),
        Err(refusal) => return refusal.into_response(),
    };
    let schools = sim.lock().store.summary(&quarter);
    problem::json(200, &QuarterSummary { quarter, schools })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RecordsQuery {
    school_id: Option<String>,
    page_token: Option<String>,
    page_size: Option<String>,
}

pub(crate) async fn records(
    State(sim): State<Arc<SimState>>,
    Extension(roll): Extension<Roll>,
    headers: HeaderMap,
    Path(quarter): Path<String>,
    query: Result<Query<RecordsQuery>, QueryRejection>,
) -> Response {
    let quarter = match prelude(&sim, &roll, &headers, &quarter).await {
        Ok(q) => q.to_string(),
        Err(refusal) => return refusal.into_response(),
    };
    let Ok(Query(query)) = query else {
        return problem(400, "Bad Request", "the query string is malformed");
    };
    match page(&sim, &quarter, query) {
        Ok(page) => problem::json(200, &page),
        Err(refusal) => refusal.into_response(),
    }
}

fn page(sim: &SimState, quarter: &str, query: RecordsQuery) -> Result<RecordsPage, Refusal> {
    let school = query.school_id.filter(|s| !s.is_empty());
    let size = page_size(query.page_size.as_deref())?;
    let after = match query.page_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => Some(decode_token(token, quarter, school.as_deref())?),
        None => None,
    };
    let (records, more) = sim
        .lock()
        .store
        .page(quarter, school.as_deref(), after.as_deref(), size);
    let next_page_token = match records.last() {
        Some(last) if more => Some(encode_token(quarter, school.as_deref(), &last.record_id)),
        _ => None,
    };
    Ok(RecordsPage {
        records,
        next_page_token,
    })
}

/// Absent or empty means the default; above the maximum is lowered to it (AIP-158 style).
fn page_size(raw: Option<&str>) -> Result<usize, Refusal> {
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n.min(MAX_PAGE_SIZE)),
            _ => Err(problem(400, "Bad Request", "page_size must be a positive integer").into()),
        },
    }
}

/// Tokens are opaque to clients; inside they bind the listing and the last id served.
fn encode_token(quarter: &str, school: Option<&str>, last: &str) -> String {
    hex::encode(format!("{quarter}\n{}\n{last}", school.unwrap_or("")))
}

fn decode_token(token: &str, quarter: &str, school: Option<&str>) -> Result<String, Refusal> {
    let bad = || {
        problem(
            400,
            "Bad Request",
            "page_token is not one this listing handed out: start again without it",
        )
    };
    let text = hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let mut parts = text.splitn(3, '\n');
    let (q, s, last) = (parts.next(), parts.next(), parts.next());
    match (q, s, last) {
        (Some(q), Some(s), Some(last)) if q == quarter && s == school.unwrap_or("") => {
            Ok(last.to_string())
        }
        _ => Err(bad().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bind_the_listing() {
        let token = encode_token("2026-Q4", Some("s1"), "r-42");
        assert_eq!(
            decode_token(&token, "2026-Q4", Some("s1")).ok(),
            Some("r-42".to_string())
        );
        assert!(decode_token(&token, "2026-Q3", Some("s1")).is_err());
        assert!(decode_token(&token, "2026-Q4", None).is_err());
        assert!(decode_token("zz", "2026-Q4", None).is_err());
    }

    #[test]
    fn page_size_defaults_and_caps() {
        assert_eq!(page_size(None).ok(), Some(DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(Some("20000")).ok(), Some(MAX_PAGE_SIZE));
        assert!(page_size(Some("0")).is_err());
        assert!(page_size(Some("-1")).is_err());
    }
}
