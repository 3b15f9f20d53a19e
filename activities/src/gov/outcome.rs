//! What one `send_batch` call decided, and the pure rules that turn an HTTP answer of
//! `POST /v1/grade-batches` into that decision. Keeping the rules free of I/O lets them be
//! tested answer by answer, and keeps every "is this retryable?" judgement in one file.

use std::fmt;
use std::time::{Duration, SystemTime};

use gradesync_govapi::contract::{BatchReceipt, Problem};

use super::excerpt::excerpt;

/// The decision about one batch after one send (with at most one token refresh and at
/// most one receipt lookup folded in).
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// The API holds the batch. `replayed`: it already had this key (an earlier attempt
    /// got through). `resolved`: the answer to our POST was lost and the receipt was
    /// fetched with `GET /v1/grade-batches/{id}` instead.
    Sent {
        receipt: BatchReceipt,
        replayed: bool,
        resolved: bool,
    },
    /// Not applied (or not known to be); send the same bytes with the same key again,
    /// no sooner than `after` when the API said so. `excerpt`: what the answer's body
    /// said, short and free of personal data (see `excerpt`), when there was a body.
    Retry {
        reason: RetryReason,
        after: Option<Duration>,
        excerpt: Option<String>,
    },
    /// The API refused the batch as it is (nothing applied); resending will not help.
    /// `record_ids`: the records the problem names, deduplicated, in order.
    Rejected {
        status: u16,
        problem: Problem,
        record_ids: Vec<String>,
    },
    /// Over the API's size limit: the batch must be split.
    TooLarge { problem: Problem },
    /// Credentials refused, even with a freshly issued token: waiting will not help.
    AuthFailed { problem: Problem },
}

/// Why a send should be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// 503: the API is down for maintenance or overloaded.
    Unavailable,
    /// 500, 502, 504 (or another 5xx).
    ServerError(u16),
    /// 429: over the request budget.
    RateLimited,
    /// 409: an earlier attempt with this key is still being processed.
    InFlight,
    /// No answer within the request timeout (or 408).
    Timeout,
    /// The connection failed or broke before a full answer arrived.
    ConnectionLost,
    /// An answer with this status whose body is not what the contract says.
    BadAnswer(u16),
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryReason::Unavailable => f.write_str("the API is unavailable (503)"),
            RetryReason::ServerError(s) => write!(f, "the API failed ({s})"),
            RetryReason::RateLimited => f.write_str("rate limited (429)"),
            RetryReason::InFlight => f.write_str("an earlier attempt is still in progress (409)"),
            RetryReason::Timeout => f.write_str("no answer in time"),
            RetryReason::ConnectionLost => f.write_str("connection lost before an answer"),
            RetryReason::BadAnswer(s) => write!(f, "unreadable answer ({s})"),
        }
    }
}

/// The parts of an HTTP answer the decision rules look at.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub replayed: bool,
    pub body: bytes::Bytes,
}

/// What the client should do with an answer to the POST.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    Done(SendOutcome),
    /// 401: the token may just have expired or been revoked; get a new one, send again.
    RefreshToken(Problem),
    /// A success whose body we cannot read: the API committed, ask it for the receipt.
    Lookup(RetryReason),
}

pub(crate) fn judge_post(answer: &Answer) -> Verdict {
    let status = answer.status;
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<BatchReceipt>(&answer.body) {
            Ok(receipt) => Verdict::Done(SendOutcome::Sent {
                receipt,
                replayed: answer.replayed,
                resolved: false,
            }),
            Err(_) => Verdict::Lookup(RetryReason::BadAnswer(status)),
        };
    }
    let problem = problem_of(status, &answer.body);
    if status == 401 {
        return Verdict::RefreshToken(problem);
    }
    if status == 413 {
        return Verdict::Done(SendOutcome::TooLarge { problem });
    }
    if let Some(reason) = retry_reason(status) {
        return Verdict::Done(SendOutcome::Retry {
            reason,
            after: answer.retry_after,
            excerpt: excerpt(&answer.body),
        });
    }
    let record_ids = record_ids(&problem);
    Verdict::Done(SendOutcome::Rejected {
        status,
        problem,
        record_ids,
    })
}

/// Statuses that mean "not now" rather than "not this".
pub(crate) fn retry_reason(status: u16) -> Option<RetryReason> {
    match status {
        408 => Some(RetryReason::Timeout),
        409 => Some(RetryReason::InFlight),
        429 => Some(RetryReason::RateLimited),
        503 => Some(RetryReason::Unavailable),
        500..=599 => Some(RetryReason::ServerError(status)),
        _ => None,
    }
}

/// The problem in an error body. Proxies and load balancers answer with HTML or nothing,
/// so anything that is not a problem object becomes a generic one for the status.
pub(crate) fn problem_of(status: u16, body: &[u8]) -> Problem {
    match serde_json::from_slice::<Problem>(body) {
        Ok(mut problem) => {
            if problem.status == 0 {
                problem.status = status;
            }
            problem
        }
        Err(_) => Problem {
            type_uri: "about:blank".to_string(),
            title: reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Unknown Status")
                .to_string(),
            status,
            detail: Some("the answer carried no RFC 9457 problem details".to_string()),
            ..Problem::default()
        },
    }
}

fn record_ids(problem: &Problem) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for e in &problem.errors {
        if !e.record_id.is_empty() && !ids.contains(&e.record_id) {
            ids.push(e.record_id.clone());
        }
    }
    ids
}

/// `Retry-After` as RFC 9110 allows it: delta-seconds or an HTTP-date, the latter taken
/// relative to `now` (a date in the past means "now", never a negative wait).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(status: u16, body: serde_json::Value) -> Answer {
        Answer {
            status,
            retry_after: None,
            replayed: false,
            body: serde_json::to_vec(&body).unwrap().into(),
        }
    }

    fn outcome(a: &Answer) -> SendOutcome {
        match judge_post(a) {
            Verdict::Done(o) => o,
            other => panic!("expected a final outcome, got {other:?}"),
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn invalid_records_are_named_once_each() {
        let a = answer(
            400,
            json!({"title":"Invalid records","status":400,"errors":[
                {"record_id":"r2","field":"grade","message":"x"},
                {"record_id":"r9","field":"quarter","message":"y"},
                {"record_id":"r2","field":"student_id","message":"z"}]}),
        );
        match outcome(&a) {
            SendOutcome::Rejected {
                status, record_ids, ..
            } => {
                assert_eq!(status, 400);
                assert_eq!(record_ids, ["r2", "r9"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn proxy_errors_without_problem_json_still_classify() {
        let a = Answer {
            status: 502,
            retry_after: None,
            replayed: false,
            body: bytes::Bytes::from_static(b"<html>bad gateway</html>"),
        };
        assert_eq!(
            outcome(&a),
            SendOutcome::Retry {
                reason: RetryReason::ServerError(502),
                after: None,
                excerpt: Some("bad gateway".to_string()),
            }
        );
        let p = problem_of(502, b"<html>");
        assert_eq!((p.status, p.title.as_str()), (502, "Bad Gateway"));
    }

    #[test]
    fn statuses_map_to_decisions() {
        let empty = |s| answer(s, json!({}));
        assert!(matches!(judge_post(&empty(401)), Verdict::RefreshToken(_)));
        assert!(matches!(outcome(&empty(413)), SendOutcome::TooLarge { .. }));
        assert!(matches!(
            outcome(&empty(422)),
            SendOutcome::Rejected { status: 422, .. }
        ));
        assert!(matches!(
            outcome(&empty(409)),
            SendOutcome::Retry {
                reason: RetryReason::InFlight,
                ..
            }
        ));
        assert_eq!(
            judge_post(&empty(201)),
            Verdict::Lookup(RetryReason::BadAnswer(201))
        );
    }
}
