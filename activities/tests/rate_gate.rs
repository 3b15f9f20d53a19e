//! The store-backed rate gate, as two worker processes see it: two stores on one database
//! file, each with its own gate, many requests at once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gradesync_activities::gov::RateGate;
use gradesync_activities::rate::StoreRateGate;
use gradesync_activities::store::{Store, scratch};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
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
            tokio::spawn(async move {
                gate.acquire().await;
                now_ms()
            })
        })
        .collect();
    let mut starts = Vec::new();
    for t in tasks {
        starts.push(t.await.unwrap());
    }
    starts.sort();
    // 10 per second: the slots are 101 ms apart and any 1,015 ms hold at most 10. Starts
    // are read a moment after their slot, so count over a window a little shorter.
    let most = starts
        .iter()
        .enumerate()
        .map(|(i, &t)| starts[i..].iter().take_while(|&&s| s < t + 985).count())
        .max()
        .unwrap();
    assert!(most <= 10, "{most} starts within one window: {starts:?}");
    // Paced, not serialised behind each other: the whole set takes about 23 spacings.
    let span = starts[23] - starts[0];
    assert!(span >= 23 * 101 - 30, "24 starts in {span} ms: {starts:?}");
}

/// On PostgreSQL the gate learns the store's clock from its claims, which read it a moment
/// before the answer arrives: its idea of "now" can be a ms or two early.
fn slack_ms() -> i64 {
    if scratch::test_server().is_some() {
        2
    } else {
        0
    }
}

async fn one_lane_gate(dir: &tempfile::TempDir) -> StoreRateGate {
    let url = scratch::url_for(dir.path()).await.unwrap();
    let store = Store::connect(&url).await.unwrap();
    // 1.6/s: one start per 625 ms + 15 ms guard, so every start is cut from the last.
    StoreRateGate::new(store, 1.6, Duration::from_millis(15))
}

#[tokio::test]
async fn a_request_that_left_late_pushes_the_next_start_back() {
    let dir = tempfile::tempdir().unwrap();
    let gate = one_lane_gate(&dir).await;
    let first = gate
        .acquire()
        .await
        .expect("the store gate names its starts");
    gate.departed(first, first + 60).await;
    let second = gate.acquire().await.unwrap();
    assert!(
        second >= first + 60 + 640 - slack_ms(),
        "the next start ({second}) is cut from when the first left ({})",
        first + 60
    );
}

#[tokio::test]
async fn a_late_departure_cannot_move_a_lane_past_a_later_start() {
    let dir = tempfile::tempdir().unwrap();
    let gate = one_lane_gate(&dir).await;
    let first = gate.acquire().await.unwrap();
    let second = gate.acquire().await.unwrap();
    // Heard after the next start was claimed: that start stands, and so does its lane.
    gate.departed(first, first + 60).await;
    let third = gate.acquire().await.unwrap();
    assert!(
        third >= second + 640 && third < second + 640 + 60,
        "{third}"
    );
}

#[tokio::test]
async fn a_departure_a_few_ms_late_pushes_back_and_one_within_tolerance_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let gate = one_lane_gate(&dir).await;
    // The 15 ms guard leaves 3 ms (a fifth of it) uncorrected: batches usually leave
    // 0-2 ms after their slot, and a store write per batch would cost more than it saves.
    let first = gate.acquire().await.unwrap();
    gate.departed(first, first + 2).await;
    let second = gate.acquire().await.unwrap();
    assert!(
        second < first + 640 + 2,
        "within tolerance: {second} vs {first}"
    );
    gate.departed(second, second + 5).await;
    let third = gate.acquire().await.unwrap();
    assert!(
        third >= second + 5 + 640 - slack_ms(),
        "5 ms late pushes back: {third} vs {second}"
    );
}
