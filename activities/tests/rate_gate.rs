//! The store-backed rate gate, as two worker processes see it: two stores on one database
//! file, each with its own gate, many requests at once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gradesync_activities::gov::RateGate;
use gradesync_activities::rate::StoreRateGate;
use gradesync_activities::store::Store;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_share_one_paced_budget() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("grades.db").display());
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
