//! Building the API's answers: RFC 9457 problem bodies, the authentication challenges and
//! the rate-limit headers, so every handler answers errors the same way.

use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::auth::AuthFailure;
use super::rate::Quota;
use crate::contract::{PROBLEM_JSON, Problem, RecordFieldError};

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// An error answer on its way out of a handler; boxed, as a `Response` is large.
#[derive(Debug)]
pub(crate) struct Refusal(Box<Response>);

impl From<Response> for Refusal {
    fn from(resp: Response) -> Self {
        Self(Box::new(resp))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// Marks a response that must not be sent: the server closes the connection instead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropConnection;

pub(crate) fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(CONTENT_TYPE, value);
    }
    resp
}

pub(crate) fn json<T: Serialize>(status: u16, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => bytes(status, "application/json", body),
        Err(e) => problem(
            500,
            "Internal Server Error",
            format!("cannot encode answer: {e}"),
        ),
    }
}

pub(crate) fn problem_body(p: &Problem) -> Vec<u8> {
    serde_json::to_vec(p).unwrap_or_default()
}

pub(crate) fn from_problem(p: &Problem) -> Response {
    bytes(p.status, PROBLEM_JSON, problem_body(p))
}

pub(crate) fn problem(status: u16, title: &str, detail: impl Into<String>) -> Response {
    from_problem(&Problem::new(status, title, detail))
}

/// A problem with one extension member, e.g. the OAuth `error` code.
pub(crate) fn problem_ext(
    status: u16,
    title: &str,
    detail: &str,
    key: &str,
    val: &str,
) -> Response {
    let mut p = Problem::new(status, title, detail);
    p.extensions.insert(key.to_string(), val.into());
    from_problem(&p)
}

pub(crate) fn unauthorized(failure: AuthFailure) -> Response {
    let (detail, challenge) = match failure {
        AuthFailure::Missing => (
            "send `Authorization: Bearer <token>` from POST /oauth/token",
            "Bearer",
        ),
        AuthFailure::Invalid => (
            "the access token is unknown, expired or revoked: get a new one from POST /oauth/token",
            r#"Bearer error="invalid_token""#,
        ),
    };
    let mut resp = problem(401, "Unauthorized", detail);
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    resp
}

pub(crate) fn too_many_requests(quota: Quota) -> Response {
    let detail = format!(
        "at most {} requests per {} s: retry after the number of seconds in Retry-After",
        quota.limit, quota.window_secs
    );
    let mut resp = problem(429, "Too Many Requests", detail);
    set_retry_after(&mut resp, quota.reset_secs.max(1));
    set_quota(&mut resp, quota);
    resp
}

pub(crate) fn unavailable(status: u16, retry_after: Option<u64>) -> Response {
    let title = match status {
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Internal Server Error",
    };
    let mut resp = problem(
        status,
        title,
        "the registry is having trouble: try again later",
    );
    if let Some(secs) = retry_after {
        set_retry_after(&mut resp, secs);
    }
    resp
}

/// What a gateway in front of the API answers when it will not pass a request on: HTML,
/// not a problem.
pub(crate) fn forbidden_html() -> Response {
    let page = "<html><head><title>403 Forbidden</title></head>\
                <body><h1>Forbidden</h1>gateway</body></html>";
    bytes(403, "text/html", page.as_bytes().to_vec())
}

/// The record id a `p_400_unnamed` answer names; no batch holds it.
pub const UNNAMED_RECORD_ID: &str = "not-in-this-batch";

/// A contract 400 that names a record the batch does not hold.
pub(crate) fn unnamed_record() -> Response {
    let p = Problem {
        errors: vec![RecordFieldError {
            record_id: UNNAMED_RECORD_ID.to_string(),
            field: "record_id".to_string(),
            message: "rejected by the registry".to_string(),
        }],
        ..Problem::new(
            400,
            "Invalid Records",
            "some records are invalid; nothing of the batch was applied",
        )
    };
    from_problem(&p)
}

fn set_retry_after(resp: &mut Response, secs: u64) {
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs));
}

/// `RateLimit-Policy` / `RateLimit` in the structured-field form of
/// draft-ietf-httpapi-ratelimit-headers.
pub(crate) fn set_quota(resp: &mut Response, q: Quota) {
    let policy = format!("\"default\";q={};w={}", q.limit, q.window_secs);
    let state = format!("\"default\";r={};t={}", q.remaining, q.reset_secs);
    for (name, value) in [(RATELIMIT_POLICY, policy), (RATELIMIT, state)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, value);
        }
    }
}
