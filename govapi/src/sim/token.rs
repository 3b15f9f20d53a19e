//! `POST /oauth/token`: the OAuth2 client-credentials grant (RFC 6749 §4.4), with the
//! client's credentials in the form or in HTTP Basic.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::header::{CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use serde::Deserialize;
use tokio::time::Instant;

use super::auth::basic_credentials;
use super::problem::{self, problem_ext};
use super::state::SimState;
use crate::contract::TokenResponse;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

pub(crate) async fn token(
    State(sim): State<Arc<SimState>>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        let detail =
            "send grant_type, client_id and client_secret as application/x-www-form-urlencoded";
        return problem_ext(400, "Bad Request", detail, "error", "invalid_request");
    };
    match form.grant_type.as_deref() {
        Some("client_credentials") => {}
        None => {
            let detail = "grant_type is missing: send grant_type=client_credentials";
            return problem_ext(400, "Bad Request", detail, "error", "invalid_request");
        }
        Some(_) => {
            let detail = "only grant_type=client_credentials is supported";
            return problem_ext(
                400,
                "Bad Request",
                detail,
                "error",
                "unsupported_grant_type",
            );
        }
    }
    let basic = basic_credentials(&headers);
    let used_basic = basic.is_some();
    let (id, secret) = basic.unwrap_or((
        form.client_id.unwrap_or_default(),
        form.client_secret.unwrap_or_default(),
    ));
    if id != sim.client_id || secret != sim.client_secret {
        return bad_client(used_basic);
    }
    issue(&sim)
}

fn issue(sim: &SimState) -> Response {
    let access_token = {
        let mut inner = sim.lock();
        inner.ledger.tokens_issued += 1;
        inner.tokens.issue(Instant::now(), sim.token_ttl)
    };
    let body = TokenResponse {
        access_token,
        token_type: "Bearer".to_string(),
        expires_in: sim.token_ttl.as_secs(),
    };
    let mut resp = problem::json(200, &body);
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn bad_client(used_basic: bool) -> Response {
    let detail = "unknown client_id or wrong client_secret: check the client credentials";
    let mut resp = problem_ext(401, "Unauthorized", detail, "error", "invalid_client");
    if used_basic {
        let challenge = HeaderValue::from_static(r#"Basic realm="gov-api""#);
        resp.headers_mut().insert(WWW_AUTHENTICATE, challenge);
    }
    resp
}
