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
    /// A contract 400 whose `errors[]` names records (nothing applied); resending the
    /// same batch will not help. `record_ids`: the non-empty ids the problem names,
    /// deduplicated, in order; whether they belong to the batch is for the caller to check.
    Rejected {
        status: u16,
        problem: Problem,
        record_ids: Vec<String>,
    },
    /// Over the API's size limit: the batch must be split.
    TooLarge { problem: Problem },
    /// A batch POST answered 401 even with a freshly issued token: the API does not
    /// accept our credentials' tokens, and waiting will not help. `problem.status` is 401;
    /// its title and detail are the API's or, for a body that is no problem, generic.
    AuthFailed { problem: Problem },
    /// The token endpoint refused our client credentials (400, 401 or 403, OAuth's
    /// `invalid_client`): nothing was sent, and no retry can help until a person fixes
    /// the credentials. `excerpt` as for `Retry`.
    TokenRefused {
        status: u16,
        excerpt: Option<String>,
    },
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
    /// 403: a gateway in front of the API, or the API, will not let us in.
    Forbidden,
    /// A 4xx (or 3xx) that names no record: 400 without `errors[]`, 404, 405, 410, 422...
    /// Nothing was applied; the batch as a whole failed this attempt.
    Refused(u16),
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
            RetryReason::Forbidden => f.write_str(
                "the API gateway refused the request (403): check the client credentials, \
                 client certificate and the gateway's allow-list",
            ),
            RetryReason::Refused(s @ 300..=399) => write!(
                f,
                "the API redirected the batch ({s}): check GRADESYNC_GOV_API_URL"
            ),
            RetryReason::Refused(s) => {
                write!(f, "the API refused the batch ({s}) without naming records")
            }
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
    match status {
        401 => return Verdict::RefreshToken(problem_of(status, &answer.body)),
        413 => {
            let problem = problem_of(status, &answer.body);
            return Verdict::Done(SendOutcome::TooLarge { problem });
        }
        400 => {
            if let Some((problem, record_ids)) = naming_records(&answer.body) {
                return Verdict::Done(SendOutcome::Rejected {
                    status,
                    problem,
                    record_ids,
                });
            }
        }
        _ => {}
    }
    Verdict::Done(SendOutcome::Retry {
        reason: retry_reason(status),
        after: answer.retry_after,
        excerpt: excerpt(&answer.body),
    })
}

/// Why a failed answer (neither 401, 413 nor a 400 naming records) is worth another
/// attempt: "not now" (408, 409, 429, 5xx), or a refusal that named no record. Only the
/// latter can be the batch's own fault, and it fails the attempt, never single records.
pub(crate) fn retry_reason(status: u16) -> RetryReason {
    match status {
        408 => RetryReason::Timeout,
        409 => RetryReason::InFlight,
        429 => RetryReason::RateLimited,
        503 => RetryReason::Unavailable,
        500..=599 => RetryReason::ServerError(status),
        403 => RetryReason::Forbidden,
        _ => RetryReason::Refused(status),
    }
}

/// The contract's problem and the records it names, when the body is one that names at
/// least one. A gateway's HTML 400 or a problem without `errors[]` names none.
fn naming_records(body: &[u8]) -> Option<(Problem, Vec<String>)> {
    let mut problem = serde_json::from_slice::<Problem>(body).ok()?;
    let ids = record_ids(&problem);
    if ids.is_empty() {
        return None;
    }
    if problem.status == 0 {
        problem.status = 400;
    }
    Some((problem, ids))
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

    fn raw(status: u16, body: &'static [u8]) -> Answer {
        Answer {
            status,
            retry_after: None,
            replayed: false,
            body: bytes::Bytes::from_static(body),
        }
    }

    /// The reason and excerpt of a `Retry`, or a panic naming the outcome.
    fn retried(a: &Answer) -> (RetryReason, Option<String>) {
        match outcome(a) {
            SendOutcome::Retry {
                reason, excerpt, ..
            } => (reason, excerpt),
            other => panic!("expected Retry, got {other:?}"),
        }
    }

    const GATEWAY_403: &[u8] = b"<html><head><title>403 Forbidden</title></head>\
        <body><h1>Forbidden</h1>gateway</body></html>";

    #[test]
    fn proxy_errors_without_problem_json_still_classify() {
        assert_eq!(
            outcome(&raw(502, b"<html>bad gateway</html>")),
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
    fn a_gateway_403_page_fails_the_batch_as_forbidden() {
        let (reason, excerpt) = retried(&raw(403, GATEWAY_403));
        assert_eq!(reason, RetryReason::Forbidden);
        assert_eq!(excerpt.as_deref(), Some("403 Forbidden"));
        let said = reason.to_string();
        assert!(
            said.contains("gateway refused") && said.contains("credentials"),
            "{said}"
        );
        // A 403 problem from the API itself is no different.
        let (reason, excerpt) = retried(&answer(
            403,
            json!({"title":"Forbidden","status":403,"detail":"client not allowed"}),
        ));
        assert_eq!(reason, RetryReason::Forbidden);
        assert_eq!(excerpt.as_deref(), Some("Forbidden: client not allowed"));
    }

    #[test]
    fn client_errors_that_name_no_record_fail_the_batch() {
        for status in [404, 405, 410, 415, 422, 451] {
            let a = answer(
                status,
                json!({"title":"Nope","status":status,"detail":"go away"}),
            );
            assert_eq!(
                retried(&a),
                (
                    RetryReason::Refused(status),
                    Some("Nope: go away".to_string())
                ),
                "{status}"
            );
        }
        let said = RetryReason::Refused(422).to_string();
        assert_eq!(
            said,
            "the API refused the batch (422) without naming records"
        );
        assert!(
            RetryReason::Refused(302)
                .to_string()
                .contains("GRADESYNC_GOV_API_URL")
        );
        assert_eq!(retried(&raw(404, b"")), (RetryReason::Refused(404), None));
    }

    #[test]
    fn a_400_rejects_records_only_when_its_problem_names_some() {
        let unnamed = answer(
            400,
            json!({"title":"Bad Request","status":400,"detail":"no key"}),
        );
        assert_eq!(
            retried(&unnamed),
            (
                RetryReason::Refused(400),
                Some("Bad Request: no key".to_string())
            )
        );
        let html = raw(
            400,
            b"<html><title>400 Bad Request</title><body>nginx</body></html>",
        );
        assert_eq!(
            retried(&html),
            (
                RetryReason::Refused(400),
                Some("400 Bad Request".to_string())
            )
        );
        // Errors whose record_id is empty name no record.
        let anonymous = answer(
            400,
            json!({"title":"Invalid Records","status":400,"errors":[
                {"record_id":"","field":"grade","message":"records[3]: missing"}]}),
        );
        assert_eq!(retried(&anonymous).0, RetryReason::Refused(400));
        // Not an RFC 9457 problem of the contract (errors[] entries lack fields).
        let foreign = answer(400, json!({"errors":[{"record_id":"r1"}]}));
        assert_eq!(retried(&foreign).0, RetryReason::Refused(400));
        let named = answer(
            400,
            json!({"title":"Invalid Records","errors":[
                {"record_id":"","field":"grade","message":"x"},
                {"record_id":"not-in-this-batch","field":"record_id","message":"y"}]}),
        );
        match outcome(&named) {
            SendOutcome::Rejected {
                status,
                problem,
                record_ids,
            } => {
                assert_eq!((status, problem.status), (400, 400));
                assert_eq!(record_ids, ["not-in-this-batch"]);
            }
            other => panic!("{other:?}"),
        }
        // Only a 400 rejects records: a 422 naming some still fails the batch.
        let named_422 = answer(
            422,
            json!({"errors":[{"record_id":"r1","field":"grade","message":"x"}]}),
        );
        assert_eq!(retried(&named_422).0, RetryReason::Refused(422));
    }

    #[test]
    fn statuses_map_to_decisions() {
        let empty = |s| answer(s, json!({}));
        assert!(matches!(judge_post(&empty(401)), Verdict::RefreshToken(_)));
        assert!(matches!(
            judge_post(&raw(401, GATEWAY_403)),
            Verdict::RefreshToken(Problem { status: 401, .. })
        ));
        assert!(matches!(outcome(&empty(413)), SendOutcome::TooLarge { .. }));
        for (status, reason) in [
            (408, RetryReason::Timeout),
            (409, RetryReason::InFlight),
            (429, RetryReason::RateLimited),
            (503, RetryReason::Unavailable),
            (500, RetryReason::ServerError(500)),
            (504, RetryReason::ServerError(504)),
        ] {
            assert_eq!(retried(&empty(status)).0, reason, "{status}");
        }
        let mut busy = empty(429);
        busy.retry_after = Some(Duration::from_secs(3));
        assert!(matches!(
            outcome(&busy),
            SendOutcome::Retry { after: Some(d), .. } if d == Duration::from_secs(3)
        ));
    }

    #[test]
    fn a_success_without_the_contracts_body_is_looked_up() {
        assert_eq!(
            judge_post(&answer(201, json!({}))),
            Verdict::Lookup(RetryReason::BadAnswer(201))
        );
        assert_eq!(
            judge_post(&raw(200, b"<html>OK</html>")),
            Verdict::Lookup(RetryReason::BadAnswer(200))
        );
        assert_eq!(
            judge_post(&raw(202, b"\x00\xff\xfe")),
            Verdict::Lookup(RetryReason::BadAnswer(202))
        );
    }
}
