//! The government API client against the real simulator over loopback HTTP: every answer
//! of the contract, the faults of the unstable API, and what the simulator's ledger says
//! really happened (applied once, no 429s under the gate, tokens issued).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gradesync_activities::gov::{
    Credentials, Departure, GovClient, GovClientConfig, GovError, Granted, NoGate, RateGate,
    RetryReason, SendOutcome, SpacingGate,
};
use gradesync_govapi::Quarter;
use gradesync_govapi::contract::{BatchReceipt, canonical_json, encode_batch, record_sha256};
use gradesync_govapi::sim::{self, Faults, Ledger, RejectRule, SimConfig, SimHandle};
use serde_json::{Value, json};
use uuid::Uuid;

const QUARTER: &str = "2026-Q4";

/// A simulator on a random loopback port and a client pointed at it.
struct TestSim {
    sim: SimHandle,
    client: GovClient,
}

impl TestSim {
    /// Default credentials, no client-side pacing, the given faults.
    async fn start(faults: Faults) -> Self {
        let config = SimConfig {
            faults,
            ..SimConfig::default()
        };
        Self::custom(config, |_| {}, Arc::new(NoGate)).await
    }

    async fn custom(
        config: SimConfig,
        tweak: impl FnOnce(&mut GovClientConfig),
        gate: Arc<dyn RateGate>,
    ) -> Self {
        let sim = sim::spawn(config).await.expect("simulator starts");
        let mut client_config = GovClientConfig::new(sim.base_url(), sim_credentials());
        tweak(&mut client_config);
        let client = GovClient::new(client_config, gate).expect("client builds");
        Self { sim, client }
    }

    async fn send(&self, batch: &Batch) -> SendOutcome {
        self.client.send_batch(batch.id, batch.body.clone()).await
    }

    async fn ledger(&self) -> Ledger {
        self.sim.ledger().await
    }

    async fn applied(&self, record_id: &str) -> u32 {
        self.ledger()
            .await
            .records
            .get(record_id)
            .map_or(0, |r| r.applied)
    }
}

fn sim_credentials() -> Credentials {
    Credentials::new("gradesync", "sim-secret")
}

struct Batch {
    id: Uuid,
    body: Bytes,
    records: Vec<Value>,
}

fn quarter() -> Quarter {
    QUARTER.parse().unwrap()
}

fn record(id: &str, school: &str, grade: &str) -> Value {
    json!({"record_id": id, "school_id": school, "student_id": format!("st-{id}"),
           "course_code": "MATH", "quarter": QUARTER, "grade": grade})
}

fn batch_of(school: &str, records: Vec<Value>) -> Batch {
    batch_with_id(Uuid::new_v4(), school, records)
}

fn batch_with_id(id: Uuid, school: &str, records: Vec<Value>) -> Batch {
    let canonical: Vec<String> = records.iter().map(canonical_json).collect();
    let refs: Vec<&str> = canonical.iter().map(String::as_str).collect();
    let body = encode_batch(id, &quarter(), school, &refs).unwrap();
    Batch {
        id,
        body: body.into(),
        records,
    }
}

/// A batch of `ids` for school s1, all graded A.
fn batch(ids: &[&str]) -> Batch {
    batch_of("s1", ids.iter().map(|id| record(id, "s1", "A")).collect())
}

/// The receipt and the (replayed, resolved) flags of a `Sent`, or a panic naming the outcome.
fn sent(outcome: SendOutcome) -> (BatchReceipt, bool, bool) {
    match outcome {
        SendOutcome::Sent {
            receipt,
            replayed,
            resolved,
        } => (receipt, replayed, resolved),
        other => panic!("expected Sent, got {other:?}"),
    }
}

fn retry(outcome: &SendOutcome) -> (RetryReason, Option<Duration>) {
    match outcome {
        SendOutcome::Retry { reason, after, .. } => (*reason, *after),
        other => panic!("expected Retry, got {other:?}"),
    }
}

/// The excerpt of a `Retry`, or a panic naming the outcome.
fn excerpt(outcome: &SendOutcome) -> Option<&str> {
    match outcome {
        SendOutcome::Retry { excerpt, .. } => excerpt.as_deref(),
        other => panic!("expected Retry, got {other:?}"),
    }
}

#[tokio::test]
async fn a_new_batch_is_sent_and_applied_once() {
    let t = TestSim::start(Faults::none()).await;
    let b = batch(&["r1", "r2"]);
    let (receipt, replayed, resolved) = sent(t.send(&b).await);
    assert_eq!((receipt.batch_id, receipt.accepted), (b.id, 2));
    assert!(!replayed && !resolved);
    assert_eq!(t.applied("r1").await, 1);
    assert_eq!(t.ledger().await.tokens_issued, 1);
}

/// Names every start and records what the client reports about each departure.
#[derive(Debug, Default)]
struct RecordingGate {
    granted: std::sync::Mutex<Vec<Granted>>,
    departures: std::sync::Mutex<Vec<(Granted, Departure)>>,
    /// How long after its start each request may leave, as the client asked.
    asked_within: std::sync::Mutex<Vec<Duration>>,
}

fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

impl RateGate for RecordingGate {
    fn acquire(&self, leave_within: Duration) -> futures::future::BoxFuture<'_, Option<Granted>> {
        self.asked_within.lock().unwrap().push(leave_within);
        let mut granted = self.granted.lock().unwrap();
        let start_ms = epoch_ms();
        let g = Granted {
            lane: granted.len() as u32,
            start_ms,
            departs_by_ms: start_ms + leave_within.as_millis() as i64,
            leave_by: tokio::time::Instant::now() + leave_within,
        };
        granted.push(g);
        Box::pin(async move { Some(g) })
    }

    fn departed(
        &self,
        granted: Granted,
        departure: Departure,
    ) -> futures::future::BoxFuture<'_, ()> {
        self.departures.lock().unwrap().push((granted, departure));
        Box::pin(async {})
    }
}

impl RecordingGate {
    /// When each granted request left, in the order granted (`None`: it never did, or
    /// the client never said).
    fn left(&self) -> Vec<Option<i64>> {
        let departures = self.departures.lock().unwrap();
        self.granted
            .lock()
            .unwrap()
            .iter()
            .map(|g| {
                departures
                    .iter()
                    .find(|(d, _)| d == g)
                    .and_then(|(_, d)| match d {
                        Departure::Left { at_ms } => Some(*at_ms),
                        Departure::NotSent => None,
                    })
            })
            .collect()
    }
}

#[tokio::test]
async fn the_gate_hears_when_each_request_really_left() {
    let gate = Arc::new(RecordingGate::default());
    let config = SimConfig {
        faults: Faults::none(),
        ..SimConfig::default()
    };
    let t = TestSim::custom(config, |_| {}, gate.clone()).await;
    let b = batch(&["r-1", "r-2"]);
    let before = epoch_ms();
    let (receipt, _, _) = sent(t.send(&b).await);
    assert_eq!(receipt.accepted, 2);
    // A listing page (GET) and a receipt lookup (GET) too.
    t.client
        .records_page(&quarter(), None, 10, None)
        .await
        .unwrap();
    assert!(t.client.receipt(b.id).await.unwrap().is_some());
    let after = epoch_ms();
    // The token request, the batch, the page and the lookup each told the gate, and
    // each left after its start.
    let granted = gate.granted.lock().unwrap().clone();
    let left = gate.left();
    assert_eq!(granted.len(), 4, "{granted:?}");
    assert_eq!(gate.departures.lock().unwrap().len(), 4);
    for (g, left) in granted.iter().zip(&left) {
        let left = left.unwrap_or_else(|| panic!("{g:?} never left"));
        assert!(
            before <= g.start_ms && g.start_ms <= left && left <= after,
            "{g:?} left at {left}"
        );
    }
    // Each within the connect timeout (the request timeout here) and a second.
    for within in gate.asked_within.lock().unwrap().iter() {
        assert_eq!(*within, Duration::from_secs(10 + 1));
    }
    let ledger = t.ledger().await;
    assert_eq!((ledger.tokens_issued, ledger.requests_total), (1, 4));
    assert_eq!(t.applied("r-1").await, 1);
}

/// A request that cannot connect never left, and says so.
#[tokio::test]
async fn a_request_that_cannot_connect_tells_the_gate_it_never_left() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let gate = Arc::new(RecordingGate::default());
    let config = GovClientConfig::new(format!("http://127.0.0.1:{port}"), sim_credentials());
    let client = GovClient::new(config, gate.clone()).unwrap();
    assert!(client.summary(&quarter()).await.is_err());
    let departures = gate.departures.lock().unwrap().clone();
    assert_eq!(departures.len(), 1, "{departures:?}");
    assert_eq!(departures[0].1, Departure::NotSent);
}

/// A request still not on its way at its deadline (here: a gate whose deadline has all but
/// passed when it grants) is abandoned unsent rather than leave when its lane may have
/// moved on, and the API never sees it.
#[tokio::test]
async fn a_request_that_cannot_leave_by_its_deadline_is_abandoned_unsent() {
    #[derive(Debug, Default)]
    struct LateGate(RecordingGate);
    impl RateGate for LateGate {
        fn acquire(
            &self,
            _leave_within: Duration,
        ) -> futures::future::BoxFuture<'_, Option<Granted>> {
            // The deadline is the margin away: the request must leave at once, and it
            // cannot, as its connection is slow to come up.
            self.0.acquire(Duration::from_secs(1))
        }
        fn departed(&self, g: Granted, d: Departure) -> futures::future::BoxFuture<'_, ()> {
            self.0.departed(g, d)
        }
    }
    // A listener that takes connections into its backlog but never answers: the TLS
    // handshake of an https URL never completes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let gate = Arc::new(LateGate::default());
    let config = GovClientConfig::new(format!("https://127.0.0.1:{port}"), sim_credentials());
    let client = GovClient::new(config, gate.clone()).unwrap();
    let started = std::time::Instant::now();
    let b = batch(&["r1"]);
    let outcome = client.send_batch(b.id, b.body.clone()).await;
    assert_eq!(retry(&outcome).0, RetryReason::ConnectionLost);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let departures = gate.0.departures.lock().unwrap().clone();
    assert_eq!(departures.len(), 1, "{departures:?}");
    assert_eq!(departures[0].1, Departure::NotSent);
    let err = client.summary(&quarter()).await.unwrap_err();
    assert!(err.to_string().contains("abandoned unsent"), "{err}");
    assert!(err.is_retryable());
    drop(listener);
}

#[tokio::test]
async fn a_warmed_up_token_serves_the_first_sends() {
    let t = TestSim::start(Faults::none()).await;
    t.client.warm_up().await;
    assert_eq!(t.ledger().await.tokens_issued, 1);
    t.client.warm_up().await;
    sent(t.send(&batch(&["r1"])).await);
    sent(t.send(&batch(&["r2"])).await);
    assert_eq!(t.ledger().await.tokens_issued, 1);
}

#[tokio::test]
async fn resending_the_same_batch_is_a_replay_not_a_second_apply() {
    let t = TestSim::start(Faults::none()).await;
    let b = batch(&["r1"]);
    let (first, _, _) = sent(t.send(&b).await);
    let (again, replayed, _) = sent(t.send(&b).await);
    assert!(replayed);
    assert_eq!(first, again);
    let ledger = t.ledger().await;
    assert_eq!(ledger.records["r1"].applied, 1);
    assert_eq!(ledger.replays[&b.id], 1);
}

#[tokio::test]
async fn the_same_key_with_other_bytes_fails_the_batch_422() {
    let t = TestSim::start(Faults::none()).await;
    let b = batch(&["r1"]);
    sent(t.send(&b).await);
    let other = batch_with_id(b.id, "s1", vec![record("r1", "s1", "B")]);
    let outcome = t.send(&other).await;
    assert_eq!(retry(&outcome).0, RetryReason::Refused(422));
    let said = excerpt(&outcome).unwrap();
    assert!(said.starts_with("Unprocessable Content: "), "{said}");
    assert_eq!(t.applied("r1").await, 1);
}

#[tokio::test]
async fn a_gateway_403_fails_the_batch_with_the_pages_title() {
    let t = TestSim::start(Faults {
        p_403_html: 1.0,
        ..Faults::none()
    })
    .await;
    let outcome = t.send(&batch(&["r1"])).await;
    assert_eq!(retry(&outcome), (RetryReason::Forbidden, None));
    assert_eq!(excerpt(&outcome), Some("403 Forbidden"));
    let ledger = t.ledger().await;
    assert_eq!((ledger.posts_forbidden, ledger.batches_committed), (1, 0));
    // A 403 is not a stale token: no second token request, no second POST.
    assert_eq!((ledger.tokens_issued, ledger.batch_posts), (1, 1));
    assert!(ledger.records.is_empty());
}

#[tokio::test]
async fn a_400_naming_a_stranger_still_rejects_by_the_ids_it_names() {
    let t = TestSim::start(Faults {
        p_400_unnamed: 1.0,
        ..Faults::none()
    })
    .await;
    match t.send(&batch(&["r1", "r2"])).await {
        SendOutcome::Rejected {
            status, record_ids, ..
        } => {
            assert_eq!(status, 400);
            // Not in the batch: the store, not the client, tells that apart.
            assert_eq!(record_ids, [sim::UNNAMED_RECORD_ID]);
        }
        other => panic!("{other:?}"),
    }
    let ledger = t.ledger().await;
    assert_eq!((ledger.posts_unnamed_400, ledger.batches_committed), (1, 0));
}

#[tokio::test]
async fn a_concurrent_send_of_the_same_key_is_told_to_retry_in_flight() {
    let t = TestSim::start(Faults {
        latency_ms: 400,
        ..Faults::none()
    })
    .await;
    let b = batch(&["r1"]);
    let (a, c) = tokio::join!(t.send(&b), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        t.send(&b).await
    });
    sent(a);
    assert_eq!(retry(&c).0, RetryReason::InFlight);
    assert_eq!(t.applied("r1").await, 1);
}

#[tokio::test]
async fn invalid_records_are_named_and_nothing_is_applied() {
    let rule = RejectRule {
        field: "grade".into(),
        equals: "F".into(),
        message: String::new(),
    };
    let t = TestSim::start(Faults {
        reject_rules: vec![rule],
        ..Faults::none()
    })
    .await;
    let records = vec![
        record("r1", "s1", "A"),
        record("r2", "s1", "F"),
        record("r3", "s1", "F"),
    ];
    let outcome = t.send(&batch_of("s1", records)).await;
    match outcome {
        SendOutcome::Rejected {
            status,
            problem,
            record_ids,
        } => {
            assert_eq!(status, 400);
            assert_eq!(record_ids, ["r2", "r3"]);
            assert_eq!(problem.errors.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(t.ledger().await.records.is_empty());
}

#[tokio::test]
async fn too_many_records_or_bytes_is_too_large() {
    let t = TestSim::start(Faults::none()).await;
    let ids: Vec<String> = (0..101).map(|i| format!("r{i:03}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let outcome = t.send(&batch(&ids)).await;
    assert!(
        matches!(outcome, SendOutcome::TooLarge { .. }),
        "{outcome:?}"
    );

    let mut big = record("r1", "s1", "A");
    big["comment"] = json!("x".repeat(1_100_000));
    let outcome = t.send(&batch_of("s1", vec![big])).await;
    match outcome {
        SendOutcome::TooLarge { problem } => assert_eq!(problem.status, 413),
        other => panic!("{other:?}"),
    }
    assert!(t.ledger().await.records.is_empty());
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once_and_the_batch_still_goes() {
    let t = TestSim::start(Faults::none()).await;
    sent(t.send(&batch(&["r1"])).await);
    t.sim.revoke_tokens().await;
    let (_, replayed, _) = sent(t.send(&batch(&["r2"])).await);
    assert!(!replayed);
    let ledger = t.ledger().await;
    assert_eq!(ledger.tokens_issued, 2);
    assert_eq!(ledger.status_counts.get(&401), Some(&1));
    assert_eq!(ledger.records["r2"].applied, 1);
}

#[tokio::test]
async fn an_expired_token_is_renewed() {
    let config = SimConfig {
        token_ttl: Duration::from_secs(1),
        faults: Faults::none(),
        ..SimConfig::default()
    };
    let t = TestSim::custom(config, |_| {}, Arc::new(NoGate)).await;
    sent(t.send(&batch(&["r1"])).await);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    sent(t.send(&batch(&["r2"])).await);
    assert_eq!(t.ledger().await.tokens_issued, 2);
}

/// Several concurrent sends through the real 2/s gate, over more than two lifetimes of a
/// 3 s token: each POST takes its token at its slot, so none meets a 401.
#[tokio::test]
async fn no_post_leaves_with_a_token_that_expires_on_the_way() {
    let config = SimConfig {
        token_ttl: Duration::from_secs(3),
        faults: Faults::default(),
        ..SimConfig::default()
    };
    let gate = Arc::new(SpacingGate::new(2.0, Duration::from_millis(50)));
    let t = TestSim::custom(config, |_| {}, gate).await;
    let batches: Vec<Batch> = (0..12).map(|i| batch(&[&format!("r{i}")])).collect();
    let started = std::time::Instant::now();
    let outcomes = futures::future::join_all(batches.iter().map(|b| t.send(b))).await;
    assert!(
        started.elapsed() > Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let ledger = t.ledger().await;
    assert_eq!(ledger.posts_unauthorized, 0, "{:?}", ledger.status_counts);
    assert_eq!(ledger.status_counts.get(&401), None);
    for o in outcomes {
        sent(o);
    }
    assert_eq!((ledger.batches_committed, ledger.batch_posts), (12, 12));
    assert!(ledger.tokens_issued >= 3, "{}", ledger.tokens_issued);
    assert_eq!(ledger.status_counts.get(&429), None);
    assert!(ledger.max_requests_in_window <= 2);
}

#[tokio::test]
async fn wrong_credentials_fail_auth_without_retrying() {
    let config = SimConfig {
        faults: Faults::none(),
        ..SimConfig::default()
    };
    let wrong = |c: &mut GovClientConfig| c.credentials = Credentials::new("gradesync", "nope");
    let t = TestSim::custom(config, wrong, Arc::new(NoGate)).await;
    let outcome = t.send(&batch(&["r1"])).await;
    match outcome {
        SendOutcome::TokenRefused { status, excerpt } => {
            assert_eq!(status, 401);
            let said = excerpt.unwrap();
            assert!(
                said.starts_with("Unauthorized: unknown client_id"),
                "{said}"
            );
            assert!(!said.contains("nope"), "{said}");
        }
        other => panic!("{other:?}"),
    }
    let err = t.client.summary(&quarter()).await.unwrap_err();
    assert!(
        matches!(err, GovError::BadCredentials { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("GRADESYNC_GOV_CLIENT_SECRET"));
    assert!(!err.to_string().contains("nope"));
    assert_eq!(t.ledger().await.tokens_issued, 0);
}

#[tokio::test]
async fn bursting_past_the_limit_is_rate_limited_with_retry_after() {
    // The simulator's real limit (2/s) and no client pacing: the token request and the
    // first POST use the budget, the other two POSTs get 429.
    let t = TestSim::start(Faults::default()).await;
    let batches = [batch(&["r1"]), batch(&["r2"]), batch(&["r3"])];
    let outcomes = futures::future::join_all(batches.iter().map(|b| t.send(b))).await;
    let limited: Vec<_> = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                SendOutcome::Retry {
                    reason: RetryReason::RateLimited,
                    ..
                }
            )
        })
        .collect();
    assert!(!limited.is_empty(), "{outcomes:?}");
    for o in limited {
        let after = retry(o).1.expect("429 carries Retry-After");
        assert!(
            after >= Duration::from_secs(1) && after <= Duration::from_secs(2),
            "{after:?}"
        );
    }
    assert!(t.ledger().await.status_counts[&429] >= 1);
}

#[tokio::test]
async fn unavailable_is_retried_with_and_without_retry_after() {
    let t = TestSim::start(Faults {
        p_503: 1.0,
        retry_after_secs: Some(7),
        ..Faults::none()
    })
    .await;
    let b = batch(&["r1"]);
    let outcome = t.send(&b).await;
    assert_eq!(
        retry(&outcome),
        (RetryReason::Unavailable, Some(Duration::from_secs(7)))
    );
    t.sim
        .set_faults(Faults {
            p_503: 1.0,
            ..Faults::none()
        })
        .await;
    let outcome = t.send(&b).await;
    assert_eq!(retry(&outcome), (RetryReason::Unavailable, None));
    t.sim.set_faults(Faults::none()).await;
    sent(t.send(&b).await);
    assert_eq!(t.applied("r1").await, 1);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let t = TestSim::start(Faults {
        p_5xx: 1.0,
        ..Faults::none()
    })
    .await;
    for _ in 0..3 {
        let outcome = t.send(&batch(&["r1"])).await;
        match retry(&outcome) {
            (RetryReason::ServerError(500 | 502 | 504), None) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(t.ledger().await.records.is_empty());
}

#[tokio::test]
async fn an_answer_dropped_after_commit_is_resolved_by_lookup() {
    let t = TestSim::start(Faults {
        p_commit_drop: 1.0,
        ..Faults::none()
    })
    .await;
    let b = batch(&["r1"]);
    let (receipt, replayed, resolved) = sent(t.send(&b).await);
    assert_eq!(receipt.batch_id, b.id);
    assert!(replayed && resolved);
    let ledger = t.ledger().await;
    assert_eq!(ledger.connections_dropped, 1);
    assert_eq!(ledger.records["r1"].applied, 1);
}

#[tokio::test]
async fn a_hang_past_the_timeout_is_resolved_by_lookup() {
    let faults = Faults {
        p_hang: 1.0,
        hang_ms: 1500,
        ..Faults::none()
    };
    let config = SimConfig {
        faults,
        ..SimConfig::default()
    };
    let short = |c: &mut GovClientConfig| c.request_timeout = Duration::from_millis(300);
    let t = TestSim::custom(config, short, Arc::new(NoGate)).await;
    let (_, replayed, resolved) = sent(t.send(&batch(&["r1"])).await);
    assert!(replayed && resolved);
    assert_eq!(t.applied("r1").await, 1);
}

#[tokio::test]
async fn a_lost_answer_without_commit_is_a_retry() {
    // Latency past the client timeout: the lookup runs before the commit, finds nothing.
    let faults = Faults {
        latency_ms: 1000,
        ..Faults::none()
    };
    let config = SimConfig {
        faults,
        ..SimConfig::default()
    };
    let short = |c: &mut GovClientConfig| c.request_timeout = Duration::from_millis(300);
    let t = TestSim::custom(config, short, Arc::new(NoGate)).await;
    let outcome = t.send(&batch(&["r1"])).await;
    assert_eq!(retry(&outcome).0, RetryReason::Timeout);
}

#[tokio::test]
async fn an_unreachable_api_is_a_retry_and_a_clear_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = GovClientConfig::new(format!("http://127.0.0.1:{port}"), sim_credentials());
    let client = GovClient::new(config, Arc::new(NoGate)).unwrap();
    let b = batch(&["r1"]);
    let outcome = client.send_batch(b.id, b.body).await;
    assert_eq!(retry(&outcome).0, RetryReason::ConnectionLost);
    let err = client.summary(&quarter()).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot reach the government API at http://127.0.0.1:"),
        "{err}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn the_spacing_gate_keeps_ten_concurrent_sends_under_the_limit() {
    let gate = Arc::new(SpacingGate::new(2.0, Duration::from_millis(100)));
    let t = TestSim::custom(SimConfig::default(), |_| {}, gate).await;
    let batches: Vec<Batch> = (0..10).map(|i| batch(&[&format!("r{i}")])).collect();
    let outcomes = futures::future::join_all(batches.iter().map(|b| t.send(b))).await;
    for o in outcomes {
        sent(o);
    }
    let ledger = t.ledger().await;
    assert!(
        ledger.max_requests_in_window <= 2,
        "{}",
        ledger.max_requests_in_window
    );
    assert_eq!(ledger.status_counts.get(&429), None);
    assert_eq!(ledger.requests_total, 11);
}

#[tokio::test]
async fn summary_and_record_hashes_cover_every_page() {
    let t = TestSim::start(Faults::none()).await;
    let s1 = batch_of(
        "s1",
        (0..5)
            .map(|i| record(&format!("a{i}"), "s1", "A"))
            .collect(),
    );
    let s2 = batch_of(
        "s2",
        (0..3)
            .map(|i| record(&format!("b{i}"), "s2", "B"))
            .collect(),
    );
    sent(t.send(&s1).await);
    sent(t.send(&s2).await);

    let summary = t.client.summary(&quarter()).await.unwrap();
    let counts: Vec<_> = summary
        .schools
        .iter()
        .map(|s| (s.school_id.as_str(), s.records))
        .collect();
    assert_eq!(counts, [("s1", 5), ("s2", 3)]);

    let all = t.client.record_hashes(&quarter(), None, 2).await.unwrap();
    assert_eq!(all.len(), 8);
    let only_s1 = t
        .client
        .record_hashes(&quarter(), Some("s1"), 2)
        .await
        .unwrap();
    let expected: Vec<(String, String)> = s1
        .records
        .iter()
        .map(|r| {
            (
                r["record_id"].as_str().unwrap().to_string(),
                record_sha256(r),
            )
        })
        .collect();
    let got: Vec<(String, String)> = only_s1
        .into_iter()
        .map(|h| (h.record_id, h.sha256))
        .collect();
    assert_eq!(got, expected);
    let empty = t
        .client
        .record_hashes(&"2026-Q1".parse().unwrap(), None, 2)
        .await
        .unwrap();
    assert!(empty.is_empty());
}

#[tokio::test]
async fn reads_wait_out_a_short_outage() {
    let faults = Faults {
        outage_ms: 1200,
        retry_after_secs: Some(1),
        ..Faults::none()
    };
    let t = TestSim::start(faults).await;
    let summary = t.client.summary(&quarter()).await.unwrap();
    assert!(summary.schools.is_empty());
    assert!(t.ledger().await.status_counts[&503] >= 1);
}

#[tokio::test]
async fn receipt_lookup_tells_known_from_unknown_batches() {
    let t = TestSim::start(Faults::none()).await;
    let b = batch(&["r1"]);
    assert_eq!(t.client.receipt(b.id).await.unwrap(), None);
    let (receipt, _, _) = sent(t.send(&b).await);
    assert_eq!(t.client.receipt(b.id).await.unwrap(), Some(receipt));
}

#[tokio::test]
async fn debug_output_never_shows_the_secret_or_a_token() {
    let t = TestSim::start(Faults::none()).await;
    sent(t.send(&batch(&["r1"])).await);
    let config = GovClientConfig::new(t.sim.base_url(), sim_credentials());
    let shown = format!("{:?} {:?} {:?}", t.client, config, sim_credentials());
    assert!(!shown.contains("sim-secret"), "{shown}");
    assert!(!has_hex_run(&shown, 32), "looks like a token: {shown}");
    assert!(shown.contains("gradesync"));
}

fn has_hex_run(text: &str, len: usize) -> bool {
    let mut run = 0;
    for c in text.chars() {
        run = if c.is_ascii_hexdigit() { run + 1 } else { 0 };
        if run >= len {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn an_answer_over_the_size_cap_is_not_read_and_says_why() {
    // A listing page of 40 records is ~4 KB; the token and receipts are far smaller.
    let t = TestSim::custom(
        SimConfig::default(),
        |c| c.max_answer_bytes = 2_000,
        Arc::new(NoGate),
    )
    .await;
    let records = (0..40)
        .map(|i| record(&format!("big{i:03}"), "s1", "A"))
        .collect();
    sent(t.send(&batch_of("s1", records)).await);
    let err = t
        .client
        .record_hashes(&quarter(), None, 100)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            GovError::AnswerTooLarge {
                status: 200,
                limit: 2_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_retryable(), "the same page would be as large again");
    assert!(err.to_string().contains("more than 2000 bytes"), "{err}");

    // A batch whose token answer is over the cap is retried, never taken as sent.
    let tiny = TestSim::custom(
        SimConfig::default(),
        |c| c.max_answer_bytes = 10,
        Arc::new(NoGate),
    )
    .await;
    let b = batch(&["r1"]);
    let outcome = tiny.send(&b).await;
    assert_eq!(
        retry(&outcome).0,
        RetryReason::BadAnswer(200),
        "{outcome:?}"
    );
    assert_eq!(tiny.ledger().await.batch_posts, 0);
}
