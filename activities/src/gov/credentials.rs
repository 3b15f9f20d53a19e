//! Client credentials for the government API, and the `Secret` wrapper that keeps the
//! client secret and bearer tokens out of every `Debug` output, log line and error message.

use std::fmt;

/// A string that must never be printed. It has no `Display`, and its `Debug` is redacted,
/// so it cannot end up in a log line or an error by accident; `expose` is the one way in.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that has to put it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

/// OAuth client-credentials pair issued to the school district by the ministry.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: Secret,
}

impl Credentials {
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<Secret>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let creds = Credentials::new("gradesync", "hunter2-very-secret");
        let shown = format!("{creds:?} {:?}", creds.client_secret);
        assert!(shown.contains("gradesync"));
        assert!(!shown.contains("hunter2"));
        assert_eq!(creds.client_secret.expose(), "hunter2-very-secret");
    }
}
