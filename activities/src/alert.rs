//! Slack-compatible webhooks: the dead-letter and deadline alerts (`{"text": …}`) and the
//! compliance report delivery. Texts carry quarter, school, batch UUID and counts only.
//!
//! A POST is tried a bounded number of times and then given up, so a dead webhook cannot
//! hold a run; the caller records the failure in the store. A Slack webhook URL carries
//! its secret in the path, so nothing here ever prints more of it than scheme and host.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// Tries per POST.
const ATTEMPTS: u32 = 3;
/// The wait before the second try; it doubles before each later one (1 s, then 2 s).
const RETRY_WAIT: Duration = Duration::from_secs(1);
/// A webhook answers in well under a second; waiting longer only delays the run.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a webhook POST failed, after every attempt it was worth. `url` is only
/// `scheme://host/…`.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(
        "cannot reach the webhook at {url} ({attempts} attempts): {source}; check the webhook URL setting"
    )]
    Unreachable {
        url: String,
        attempts: u32,
        /// Stripped of its URL.
        #[source]
        source: reqwest::Error,
    },
    #[error("the webhook at {url} answered {status} ({attempts} attempts)")]
    Refused {
        url: String,
        status: u16,
        attempts: u32,
    },
}

impl WebhookError {
    /// Connection errors, timeouts, 5xx and 429 may pass on a later try; a bad URL or
    /// another 4xx will not.
    fn worth_retrying(&self) -> bool {
        match self {
            WebhookError::Unreachable { source, .. } => {
                source.is_connect() || source.is_timeout() || source.is_request()
            }
            WebhookError::Refused { status, .. } => *status >= 500 || *status == 429,
        }
    }
}

/// One webhook endpoint; `None` URL means "not configured", and posting is then a no-op
/// that the caller can see (`Ok(false)`).
#[derive(Clone)]
pub struct Webhook {
    url: Option<String>,
    http: reqwest::Client,
    retry_wait: Duration,
    attempt_timeout: Duration,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url.as_deref().map(redacted))
            .finish_non_exhaustive()
    }
}

impl Webhook {
    pub fn new(url: Option<String>) -> Self {
        let http = crate::http::client_builder().build().unwrap_or_default();
        Self {
            url: url.filter(|u| !u.is_empty()),
            http,
            retry_wait: RETRY_WAIT,
            attempt_timeout: ATTEMPT_TIMEOUT,
        }
    }

    /// Waits `first` before the second try and twice that before the third (tests).
    pub fn with_retry_wait(mut self, first: Duration) -> Self {
        self.retry_wait = first;
        self
    }

    #[cfg(test)]
    fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Posts `{"text": text, ...extra}`. Returns whether anything was sent.
    pub async fn post(&self, text: &str, extra: Option<Value>) -> Result<bool, WebhookError> {
        let Some(url) = &self.url else {
            return Ok(false);
        };
        let mut body = serde_json::json!({ "text": text });
        if let (Some(Value::Object(extra)), Some(obj)) = (extra, body.as_object_mut()) {
            obj.extend(extra);
        }
        let (mut attempt, mut wait) = (1, self.retry_wait);
        loop {
            match self.try_once(url, &body, attempt).await {
                Ok(()) => return Ok(true),
                Err(err) if attempt < ATTEMPTS && err.worth_retrying() => {
                    tracing::warn!(attempt, error = %err, "webhook POST failed; trying again");
                    tokio::time::sleep(wait).await;
                    (attempt, wait) = (attempt + 1, wait * 2);
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn try_once(&self, url: &str, body: &Value, attempt: u32) -> Result<(), WebhookError> {
        let answer = self
            .http
            .post(url)
            .timeout(self.attempt_timeout)
            .json(body)
            .send()
            .await
            .map_err(|source| WebhookError::Unreachable {
                url: redacted(url),
                attempts: attempt,
                source: source.without_url(),
            })?;
        if !answer.status().is_success() {
            return Err(WebhookError::Refused {
                url: redacted(url),
                status: answer.status().as_u16(),
                attempts: attempt,
            });
        }
        Ok(())
    }
}

/// Whether `url` is an absolute http(s) URL with a host, the only kind a webhook can be.
pub fn is_http_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

/// `scheme://host[:port]/…`: enough to tell webhooks apart, none of the path or query
/// where the secret lives, nor any user or password.
pub fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}/…", u.scheme()),
            (Some(host), None) => format!("{}://{host}/…", u.scheme()),
            (None, _) => format!("{}://…", u.scheme()),
        },
        Err(_) => "(a URL that does not parse)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const SECRET: &str = "T000/B000/XXXXSECRETXXXX";

    /// A local webhook answering each POST with the next status of `script` (the last one
    /// repeats); `None` holds the request without answering. Returns its base URL and the
    /// count of requests received.
    async fn server(script: Vec<Option<u16>>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&hits);
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let answer = script[n.min(script.len() - 1)];
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let Some(status) = answer else {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    };
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        (base, hits)
    }

    fn hook(base: &str) -> Webhook {
        Webhook::new(Some(format!("{base}/services/{SECRET}?token=alsoSECRET")))
            .with_retry_wait(Duration::from_millis(10))
    }

    /// Display, Debug and every source of `err` are free of the URL's path and query.
    fn assert_no_secret(err: &WebhookError) {
        let mut texts = vec![err.to_string(), format!("{err:?}")];
        let mut source = err.source();
        while let Some(s) = source {
            texts.push(s.to_string());
            source = s.source();
        }
        for text in texts {
            assert!(
                !text.contains("SECRET") && !text.contains("/services"),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn a_5xx_or_429_is_tried_again() {
        let (base, hits) = server(vec![Some(503), Some(429), Some(200)]).await;
        assert!(hook(&base).post("hello", None).await.unwrap());
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn three_failures_give_up_and_say_where_without_the_secret() {
        let (base, hits) = server(vec![Some(500)]).await;
        let err = hook(&base).post("hello", None).await.unwrap_err();
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert!(
            matches!(
                err,
                WebhookError::Refused {
                    status: 500,
                    attempts: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&format!("{base}/…")), "{err}");
        assert_no_secret(&err);
    }

    #[tokio::test]
    async fn another_4xx_is_not_tried_again() {
        let (base, hits) = server(vec![Some(404), Some(200)]).await;
        let err = hook(&base).post("hello", None).await.unwrap_err();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert!(matches!(
            err,
            WebhookError::Refused {
                status: 404,
                attempts: 1,
                ..
            }
        ));
        assert_no_secret(&err);
    }

    #[tokio::test]
    async fn an_unreachable_webhook_is_tried_three_times_without_printing_the_secret() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = hook(&base).post("hello", None).await.unwrap_err();
        assert!(
            matches!(err, WebhookError::Unreachable { attempts: 3, .. }),
            "{err}"
        );
        assert_no_secret(&err);
    }

    #[tokio::test]
    async fn a_webhook_that_does_not_answer_times_out_each_attempt() {
        let (base, hits) = server(vec![None]).await;
        let started = std::time::Instant::now();
        let err = hook(&base)
            .with_attempt_timeout(Duration::from_millis(200))
            .post("hello", None)
            .await
            .unwrap_err();
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(&err, WebhookError::Unreachable { attempts: 3, source, .. } if source.is_timeout()),
            "{err}"
        );
        assert_no_secret(&err);
    }

    #[test]
    fn the_secret_is_not_in_the_webhooks_debug_or_a_redacted_url() {
        let url = format!("https://user:pw@hooks.slack.com/services/{SECRET}");
        let hook = Webhook::new(Some(url.clone()));
        let debug = format!("{hook:?}");
        assert!(debug.contains("https://hooks.slack.com/…"), "{debug}");
        assert!(
            !debug.contains("SECRET") && !debug.contains("pw"),
            "{debug}"
        );
        assert_eq!(
            redacted("http://127.0.0.1:9/x?token=SECRET"),
            "http://127.0.0.1:9/…"
        );
        assert!(!redacted(&format!("not a url {SECRET}")).contains("SECRET"));
    }

    #[tokio::test]
    async fn an_unset_webhook_sends_nothing() {
        assert!(!Webhook::new(None).post("x", None).await.unwrap());
        assert!(
            !Webhook::new(Some(String::new()))
                .post("x", None)
                .await
                .unwrap()
        );
    }
}
