//! Errors of the government API client's read calls and setup, worded for the operator:
//! each says what went wrong and what to check. None carries a secret, a token or student
//! data (problem details are kept as data, not formatted into the message).

use std::time::Duration;

use gradesync_govapi::contract::Problem;

use super::tls::TlsProblem;

#[derive(Debug, thiserror::Error)]
pub enum GovError {
    #[error(
        "GRADESYNC_GOV_API_URL `{url}` is not usable: {reason}; use e.g. http://127.0.0.1:8080"
    )]
    BadBaseUrl { url: String, reason: String },

    #[error(
        "GRADESYNC_GOV_API_URL `{url}` is plain http to another host: the client secret and \
         every grade would cross the network unencrypted; use https://, or pass \
         --allow-insecure-http (GRADESYNC_ALLOW_INSECURE_HTTP=true) for a private network"
    )]
    InsecureHttp { url: String },

    #[error("cannot build the HTTP client for the government API: {0}")]
    Client(#[source] reqwest::Error),

    #[error("{}", tls_message(url, *problem))]
    Tls { url: String, problem: TlsProblem },

    #[error(
        "the government API at {url} answered {what} ({status}) with more than {limit} bytes, \
         which this client does not read: check that GRADESYNC_GOV_API_URL points at the \
         grades API and not at a gateway or another service"
    )]
    AnswerTooLarge {
        url: String,
        what: &'static str,
        status: u16,
        limit: usize,
    },

    #[error(
        "cannot reach the government API at {url}: check GRADESYNC_GOV_API_URL and that the API is up"
    )]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    #[error(
        "the connection to the government API at {url} broke before it answered {what}: try again"
    )]
    ConnectionLost {
        url: String,
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },

    #[error(
        "the government API at {url} did not answer {what} within {timeout:?}: it may be overloaded, try again later"
    )]
    Timeout {
        url: String,
        what: &'static str,
        timeout: Duration,
    },

    #[error(
        "could not send {what} to the government API at {url} within {within:?} of its rate \
         slot (the connection took too long): it was abandoned unsent; try again"
    )]
    NotOnTime {
        url: String,
        what: &'static str,
        within: Duration,
    },

    #[error(
        "the government API refused our credentials ({status}): check GRADESYNC_GOV_CLIENT_ID and GRADESYNC_GOV_CLIENT_SECRET"
    )]
    BadCredentials { status: u16, problem: Box<Problem> },

    #[error("the government API is busy ({status}) and kept refusing {what}: {}", wait_hint(.retry_after))]
    Busy {
        status: u16,
        what: &'static str,
        retry_after: Option<Duration>,
    },

    #[error("the government API answered {status} to {what}: {}", problem_title(.problem))]
    Status {
        status: u16,
        what: &'static str,
        problem: Box<Problem>,
    },

    #[error(
        "the government API sent a {what} answer this client cannot read ({source}): check that GRADESYNC_GOV_API_URL points at the grades API"
    )]
    BadResponse {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl GovError {
    /// Whether trying again later can help; `false` means a person must fix something
    /// (URL, credentials, a request the API rejects).
    pub fn is_retryable(&self) -> bool {
        match self {
            GovError::Unreachable { .. }
            | GovError::ConnectionLost { .. }
            | GovError::Timeout { .. }
            | GovError::NotOnTime { .. }
            | GovError::Busy { .. } => true,
            GovError::Status { status, .. } => *status >= 500 || *status == 408,
            GovError::BadBaseUrl { .. }
            | GovError::InsecureHttp { .. }
            | GovError::Tls { .. }
            | GovError::AnswerTooLarge { .. }
            | GovError::Client(_)
            | GovError::BadCredentials { .. }
            | GovError::BadResponse { .. } => false,
        }
    }

    /// How long the API asked us to wait, when it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GovError::Busy { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

fn tls_message(url: &str, problem: TlsProblem) -> String {
    match problem {
        TlsProblem::UntrustedServer => format!(
            "the government API at {url} presented a certificate not signed by a CA we trust; \
             pass --gov-ca-cert (GRADESYNC_GOV_CA_CERT) with the CA that signed it"
        ),
        TlsProblem::WrongName => format!(
            "the government API at {url} presented a certificate for another host name; check \
             the host of GRADESYNC_GOV_API_URL"
        ),
        TlsProblem::ClientCertRequired => format!(
            "the government API at {url} requires a client certificate; pass --gov-client-cert \
             and --gov-client-key (GRADESYNC_GOV_CLIENT_CERT, GRADESYNC_GOV_CLIENT_KEY)"
        ),
        TlsProblem::ClientCertRejected => format!(
            "the government API at {url} rejected our client certificate; use the certificate \
             (and key) the ministry issued, signed by a CA the API trusts"
        ),
        TlsProblem::NotTls => format!(
            "the government API at {url} did not answer TLS; use http:// if it is a plaintext \
             endpoint, or the API's TLS port"
        ),
    }
}

fn wait_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!("try again in {}s", d.as_secs().max(1)),
        None => "try again later".to_string(),
    }
}

fn problem_title(problem: &Problem) -> &str {
    if problem.title.is_empty() {
        "no details given"
    } else {
        &problem.title
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_say_what_to_do() {
        let e = GovError::BadCredentials {
            status: 401,
            problem: Box::default(),
        };
        let msg = e.to_string();
        assert!(msg.starts_with("the government API refused"));
        assert!(msg.contains("GRADESYNC_GOV_CLIENT_SECRET"));
        assert!(!e.is_retryable());
        let busy = GovError::Busy {
            status: 429,
            what: "a records page",
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(busy.to_string().ends_with("try again in 3s"));
        assert!(busy.is_retryable());
    }
}
