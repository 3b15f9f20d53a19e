//! `gradesync sync plan`: the dry run says how many records and batches the next run will
//! send, the real run then sends exactly that, and the plan itself changes nothing.

use serde_json::Value;

use crate::helpers::{QUARTER, TestApp, assert_ledger_clean, fast_policy, quarter, unique_quarter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_predicts_the_batches_and_records_the_run_sends_and_writes_nothing() {
    let app = TestApp::spawn("plan", Default::default()).await;
    let n = app.seed_grades(3, 230).await;
    let statuses_before = app.store.status_counts(&quarter()).await.unwrap();

    let out = app.gradesync(&["sync", "plan", "--quarter", QUARTER, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let batches = plan["batches"].as_u64().unwrap();
    let rate = plan["rate_per_sec"].as_f64().unwrap();
    let guard = plan["rate_guard_ms"].as_u64().unwrap();
    eprintln!("plan: {n} records in {batches} batches");
    assert_eq!(plan["pending_records"].as_u64(), Some(n));
    assert_eq!(plan["records"].as_u64(), Some(n));
    assert_eq!(plan["schools"].as_array().unwrap().len(), 3);
    // ~8 KB records: at least one batch per 100 records of a school, more where 1 MB cuts.
    assert!(batches >= 3 * 230_u64.div_ceil(100), "{plan}");
    assert!(
        plan["bytes"].as_u64().unwrap() <= batches * 1_000_000,
        "{plan}"
    );
    assert_eq!(
        plan["send_ms"].as_u64(),
        Some((batches as f64 / rate).ceil() as u64 * (1_000 + guard))
    );
    assert_eq!(plan["fits_deadline"], Value::Bool(true));

    // The plan cut nothing and moved no record.
    assert!(app.batch_statuses().await.is_empty(), "plan wrote batches");
    assert_eq!(
        app.store.status_counts(&quarter()).await.unwrap(),
        statuses_before
    );
    let text = app.gradesync(&["sync", "plan", "--quarter", QUARTER]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("would send {batches} batches")),
        "{text}"
    );

    let summary = app.sync_and_wait(fast_policy()).await;
    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.totals.batches_sent, batches);
    assert_eq!(summary.totals.records_synced, n);
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert_eq!(ledger.batches_committed, batches);
    assert_eq!(ledger.records.len() as u64, n);
    assert_eq!(
        app.batch_statuses().await,
        vec![("synced".to_string(), batches as i64)]
    );
    // Nothing left: the plan now says so.
    let out = app.gradesync(&["sync", "plan", "--quarter", QUARTER, "--json"]);
    let after: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(after["batches"].as_u64(), Some(0));
    assert_eq!(after["pending_records"].as_u64(), Some(0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_of_a_quarter_without_grades_is_a_usage_error() {
    let app = TestApp::spawn_without_worker("plan-empty", Default::default()).await;
    let q = unique_quarter().to_string();
    let out = app.gradesync(&["sync", "plan", "--quarter", &q]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no grades") && err.contains("gradesync import"),
        "{err}"
    );
    assert!(app.batch_statuses().await.is_empty());
}
