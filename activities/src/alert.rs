//! Slack-compatible webhooks: the dead-letter and deadline alerts (`{"text": …}`) and the
//! compliance report delivery. Texts carry quarter, school, batch UUID and counts only.

use std::time::Duration;

use serde_json::Value;

/// Why a webhook POST failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot reach the webhook at {url}: {source}; check the webhook URL setting")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the webhook at {url} answered {status}")]
    Refused { url: String, status: u16 },
}

/// One webhook endpoint; `None` URL means "not configured", and posting is then a no-op
/// that the caller can see (`Ok(false)`).
#[derive(Debug, Clone)]
pub struct Webhook {
    url: Option<String>,
    http: reqwest::Client,
}

impl Webhook {
    pub fn new(url: Option<String>) -> Self {
        let http = crate::http::client_builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self {
            url: url.filter(|u| !u.is_empty()),
            http,
        }
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
        let answer = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|source| WebhookError::Unreachable {
                url: url.clone(),
                source,
            })?;
        if !answer.status().is_success() {
            return Err(WebhookError::Refused {
                url: url.clone(),
                status: answer.status().as_u16(),
            });
        }
        Ok(true)
    }
}
