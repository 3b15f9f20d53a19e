//! OAuth2 client-credentials tokens: issuing them, checking `Authorization: Bearer`, and
//! expiring or revoking them.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::time::Instant;

#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    expiry: HashMap<String, Instant>,
}

/// Why a request carries no usable token; decides the `WWW-Authenticate` challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    Missing,
    Invalid,
}

impl TokenStore {
    pub fn issue(&mut self, now: Instant, ttl: Duration) -> String {
        let token = hex::encode(rand::random::<[u8; 24]>());
        self.expiry.retain(|_, exp| *exp > now);
        self.expiry.insert(token.clone(), now + ttl);
        token
    }

    pub fn check(&self, headers: &HeaderMap, now: Instant) -> Result<(), AuthFailure> {
        let token = bearer(headers).ok_or(AuthFailure::Missing)?;
        match self.expiry.get(token) {
            Some(exp) if *exp > now => Ok(()),
            _ => Err(AuthFailure::Invalid),
        }
    }

    pub fn revoke_all(&mut self) {
        self.expiry.clear();
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1), when the client sent them so.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn tokens_expire_and_revoke() {
        let now = Instant::now();
        let mut store = TokenStore::default();
        let token = store.issue(now, Duration::from_secs(10));
        let h = with_auth(&format!("Bearer {token}"));
        assert_eq!(store.check(&h, now), Ok(()));
        assert_eq!(
            store.check(&h, now + Duration::from_secs(10)),
            Err(AuthFailure::Invalid)
        );
        store.revoke_all();
        assert_eq!(store.check(&h, now), Err(AuthFailure::Invalid));
        assert_eq!(
            store.check(&HeaderMap::new(), now),
            Err(AuthFailure::Missing)
        );
    }

    #[test]
    fn reads_basic_credentials() {
        let h = with_auth(&format!("Basic {}", STANDARD.encode("gradesync:s3:cret")));
        assert_eq!(
            basic_credentials(&h),
            Some(("gradesync".into(), "s3:cret".into()))
        );
    }
}
