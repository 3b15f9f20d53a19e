//! The store-backed rate gate, as worker processes see it: stores on one database (a
//! SQLite file, or a PostgreSQL database in the second pass), each with its own gate, many
//! requests at once, and requests that leave late, never leave, or never say.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gradesync_activities::gov::{Departure, Granted, RateGate};
use gradesync_activities::rate::StoreRateGate;
use gradesync_activities::store::{Store, scratch};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// How long after its start a request may leave, as the API client asks.
const LEAVE_WITHIN: Duration = Duration::from_secs(3);

/// A start, and its request reported as leaving there and then.
async fn go(gate: &StoreRateGate) -> i64 {
    let granted = gate
        .acquire(LEAVE_WITHIN)
        .await
        .expect("the store gate names its starts");
    let left = now_ms();
    gate.departed(granted, Departure::Left { at_ms: left })
        .await;
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_share_one_paced_budget() {
    let dir = tempfile::tempdir().unwrap();
    let url = scratch::url_for(dir.path()).await.unwrap();
    let guard = Duration::from_millis(15);
    let mut gates = Vec::new();
    for _ in 0..2 {
        let store = Store::connect(&url).await.unwrap();
        gates.push(Arc::new(StoreRateGate::new(store, 10.0, guard)));
    }
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let gate = gates[i % 2].clone();
            tokio::spawn(async move { go(&gate).await })
        })
        .collect();
    let mut starts = Vec::new();
    for t in tasks {
        starts.push(t.await.unwrap());
    }
    starts.sort();
    // 10 per second: the slots are 101 ms apart and any 1,015 ms hold at most 10, each
    // lane's requests at least 1,015 ms apart from when they left.
    let most = starts
        .iter()
        .enumerate()
        .map(|(i, &t)| starts[i..].iter().take_while(|&&s| s < t + 1_000).count())
        .max()
        .unwrap();
    assert!(
        most <= 10,
        "{most} departures within one second: {starts:?}"
    );
    // Paced, not serialised behind each other: the whole set takes about 23 spacings.
    let span = starts[23] - starts[0];
    assert!(span >= 23 * 101 - 30, "24 starts in {span} ms: {starts:?}");
    assert!(
        span <= 23 * 101 + 1_500,
        "24 starts in {span} ms: {starts:?}"
    );
}

async fn one_lane_gate(dir: &tempfile::TempDir) -> StoreRateGate {
    let url = scratch::url_for(dir.path()).await.unwrap();
    let store = Store::connect(&url).await.unwrap();
    // 1.6/s: one start per 625 ms + 15 ms guard, so every start is cut from the last.
    StoreRateGate::new(store, 1.6, Duration::from_millis(15))
}

/// A second process's gate on the same database.
async fn other_gate(dir: &tempfile::TempDir) -> StoreRateGate {
    one_lane_gate(dir).await
}

async fn acquire(gate: &StoreRateGate) -> Granted {
    gate.acquire(LEAVE_WITHIN)
        .await
        .expect("the store gate names its starts")
}

#[tokio::test]
async fn a_request_that_left_late_pushes_the_next_start_back() {
    let dir = tempfile::tempdir().unwrap();
    let gate = one_lane_gate(&dir).await;
    let first = acquire(&gate).await;
    let left = now_ms() + 60;
    gate.departed(first, Departure::Left { at_ms: left }).await;
    let second = acquire(&gate).await;
    assert!(
        second.start_ms >= left + 640,
        "the next start ({}) is cut from when the first left ({left})",
        second.start_ms
    );
    // Every ms counts: a few ms late pushes back by as much.
    let left = now_ms() + 5;
    gate.departed(second, Departure::Left { at_ms: left }).await;
    let third = acquire(&gate).await;
    assert!(third.start_ms >= left + 640, "{} vs {left}", third.start_ms);
}

/// The promise: another process's claim on the lane waits until the lane's last request
/// has said when it left, however late that is, and starts a window after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_waits_until_the_lanes_last_request_says_when_it_left() {
    let dir = tempfile::tempdir().unwrap();
    let gate = one_lane_gate(&dir).await;
    let other = Arc::new(other_gate(&dir).await);
    let first = acquire(&gate).await;
    let waiting = {
        let other = other.clone();
        tokio::spawn(async move { acquire(&other).await })
    };
    // The first request is still connecting when its lane would be free again.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        !waiting.is_finished(),
        "a claim went ahead of an unknown departure"
    );
    let left = now_ms();
    gate.departed(first, Departure::Left { at_ms: left }).await;
    let second = waiting.await.unwrap();
    assert!(
        second.start_ms >= left + 640,
        "{} vs {left}",
        second.start_ms
    );
}

/// A process that dies between its claim and its report never says: its lane waits until
/// the request's deadline (it left by then or never) and counts it as leaving then.
#[tokio::test]
async fn a_lane_whose_request_never_says_waits_until_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let died = one_lane_gate(&dir).await;
    let gate = other_gate(&dir).await;
    let within = Duration::from_millis(400);
    let lost = died.acquire(within).await.expect("a start");
    drop(died);
    let next = acquire(&gate).await;
    assert_eq!(lost.departs_by_ms, lost.start_ms + 400);
    assert!(
        next.start_ms >= lost.departs_by_ms + 640,
        "{} vs {lost:?}",
        next.start_ms
    );
    // Well within the deadline plus a window: nothing else held it.
    assert!(
        next.start_ms <= lost.departs_by_ms + 640 + 300,
        "{} vs {lost:?}",
        next.start_ms
    );
}

/// A slot given up (nothing left on it) frees its lane as it was cut, at once.
#[tokio::test]
async fn a_request_that_never_left_frees_its_lane_as_cut() {
    let dir = tempfile::tempdir().unwrap();
    let gate = one_lane_gate(&dir).await;
    let first = acquire(&gate).await;
    gate.departed(first, Departure::NotSent).await;
    let second = acquire(&gate).await;
    assert!(
        second.start_ms >= first.start_ms + 640 && second.start_ms <= first.start_ms + 640 + 100,
        "{} vs {}",
        second.start_ms,
        first.start_ms
    );
}
