//! The quarterly sync, end to end: clean runs, the retry ladder, dead letters, 4xx, the
//! rate window, `temporal workflow start`.

use gradesync_activities::model::{Policy, Verdict};
use gradesync_govapi::sim::{Faults, RejectRule};

use crate::helpers::{
    QUARTER, TestApp, assert_applied_once, assert_ledger_clean, fast_policy, no_redrive, outage,
};
use crate::history;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_run_applies_every_record_exactly_once() {
    let app = TestApp::spawn("clean", Faults::default()).await;
    let n = app.seed_grades(3, 150).await;
    let summary = app.sync_and_wait(fast_policy()).await;

    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert_eq!(
        ledger.records.len() as u64,
        n,
        "every record reached the API"
    );
    assert!(ledger.records.values().all(|r| r.applied == 1));
    assert_eq!(summary.totals.records_synced, n);
    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.reconcile.missing_at_api, 0);
    assert!(std::path::Path::new(&summary.reconcile.report_json).starts_with(app.report_dir()));
    assert!(std::path::Path::new(&summary.reconcile.report_json).exists());
    assert!(std::path::Path::new(&summary.reconcile.report_csv).exists());
    assert_eq!(
        app.compliance.texts().len(),
        1,
        "the report went to compliance"
    );
    let counts = app
        .store
        .status_counts(&crate::helpers::quarter())
        .await
        .unwrap();
    assert_eq!(counts.iter().map(|c| c.synced).sum::<u64>(), n);
    assert_eq!(counts.iter().map(|c| c.pending + c.batched).sum::<u64>(), 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_are_checked_while_sending_and_not_read_again() {
    let app = TestApp::spawn("readahead", Faults::default()).await;
    let n = app.seed_grades(4, 150).await;
    // Pages of 100 records over 600, one school at a time so the settled line moves up
    // the record ids (rec-<school>-<n>) while the run goes on.
    let policy = Policy {
        parallel_schools: 1,
        reconcile_page_size: 100,
        reconcile_ahead_poll_ms: 20,
        ..fast_policy()
    };
    let summary = app.sync_and_wait(policy).await;

    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.reconcile.synced_in_store, n);
    assert_eq!(summary.reconcile.received_by_api, n);
    // Reads queue at the rate gate behind the batches already waiting there, so how many
    // pages get checked before the end depends on timing; at least the first does.
    assert!(
        summary.reconcile.pages_checked_ahead >= 1,
        "pages were checked before the last answer: {summary:?}"
    );
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    let reads = ledger.requests_total - ledger.batch_posts - ledger.tokens_issued;
    assert_eq!(reads, n.div_ceil(100), "each listing page was read once");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_listing_page_is_read_while_the_last_answers_are_awaited() {
    // Answers take 600 ms. Once both batches are on their way, ReconcileAhead reads the
    // listing's one page a rate slot after the last POST; the API lists it after that
    // POST's commit, so the page is kept and the final Reconcile reads nothing.
    let faults = Faults {
        latency_ms: 600,
        ..Faults::default()
    };
    let app = TestApp::spawn("lastpage", faults).await;
    let n = app.seed_grades(2, 100).await;
    let summary = app.sync_and_wait(fast_policy()).await;

    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.reconcile.pages_checked_ahead, 1, "{summary:?}");
    assert_eq!(summary.reconcile.synced_in_store, n);
    assert_eq!(summary.reconcile.received_by_api, n);
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    let reads = ledger.requests_total - ledger.batch_posts - ledger.tokens_issued;
    assert_eq!(reads, 1, "the page was read once, by ReconcileAhead");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grades_imported_during_a_sync_are_sent_before_its_verdict() {
    let app = TestApp::spawn("lateimport", Faults::default()).await;
    let n = app.seed_grades(2, 150).await;
    let id = app.start_sync(fast_policy()).await;
    app.wait_for_batches(1).await;
    // A third school's grades arrive while the first two are sent. This run's QueryPending
    // did not count them, so ReconcileAhead never sees every record settled: the run gives
    // it a grace period and goes on without it. Reconcile's last read of the source finds
    // them owed, so the run sends them in another round before it gives its verdict.
    let spec = gradesync::datagen::DataSpec {
        quarter: QUARTER.to_string(),
        schools: 3,
        records_per_school: 150,
        seed: 1,
        ..Default::default()
    };
    let mut all = Vec::new();
    gradesync::datagen::write_jsonl(&spec, &mut all).unwrap();
    let late: Vec<u8> = String::from_utf8(all)
        .unwrap()
        .lines()
        .filter(|line| line.contains("\"school-003\""))
        .flat_map(|line| format!("{line}\n").into_bytes())
        .collect();
    assert_eq!(app.import_bytes(&late).await, 150);
    let summary = app.result(&id).await;

    assert_eq!(summary.verdict, Verdict::Complete, "{summary:?}");
    assert_eq!(summary.reconcile.synced_in_store, n + 150, "{summary:?}");
    assert_eq!(summary.reconcile.missing_at_api, 0);
    assert!(summary.reconcile.source_read_at_ms > 0);
    let events = history::events(&app, &id);
    let timers = history::timer_summaries(&events);
    assert!(
        timers.iter().any(|t| t == "ReconcileAheadGrace"),
        "{timers:?}"
    );
    let reconciles = history::activity_types(&events)
        .iter()
        .filter(|t| *t == "Reconcile")
        .count();
    assert_eq!(reconciles, 2, "the first Reconcile handed the round back");
    let counts = app
        .store
        .status_counts(&crate::helpers::quarter())
        .await
        .unwrap();
    let late_school = counts.iter().find(|c| c.school_id == "school-003").unwrap();
    assert_eq!((late_school.pending, late_school.synced), (0, 150));
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert_applied_once(&ledger, n + 150);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_api_is_retried_on_named_timers() {
    // Down until the first 503 is seen, then healthy: the ladder's first timer covers it.
    let faults = outage();
    let app = TestApp::spawn("retry503", faults).await;
    let n = app.seed_grades(1, 100).await;
    let policy = Policy {
        backoff_ms: vec![2_000, 4_000, 8_000],
        ..Policy::default()
    };
    let id = app.start_sync(policy).await;
    app.end_outage_after_first_503().await;
    let summary = app.result(&id).await;

    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.totals.records_synced, n);
    assert_eq!(summary.totals.retries, 1);
    assert_eq!(summary.totals.batches_dead, 0);
    let school = history::events(&app, &format!("{id}/school/school-001"));
    let timers = history::timer_summaries(&school);
    assert_eq!(timers, ["Retry2s"]);
    assert_eq!(app.ledger().await.status_counts.get(&503), Some(&1));
    assert_ledger_clean(&app.ledger().await);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_past_the_retry_ladder_dead_letters_and_alerts() {
    let faults = outage();
    let app = TestApp::spawn("deadletter", faults).await;
    app.seed_grades(1, 50).await;
    let id = app.start_sync(no_redrive(fast_policy())).await;
    app.wait_for_alerts(1).await;
    // The API comes back after the ladder gave up: Reconcile can read it again.
    app.sim.set_faults(Faults::default()).await;
    let summary = app.result(&id).await;

    assert_eq!(summary.totals.batches_dead, 1);
    assert_eq!(summary.totals.records_dead, 50);
    assert_eq!(summary.totals.retries, 3);
    assert_eq!(summary.reconcile.dead_lettered, 50);
    let letters = app
        .store
        .dead_letters(&crate::helpers::quarter())
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].alerted);
    let alerts = app.alerts.texts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].contains(&letters[0].batch_id.to_string()));
    assert!(alerts[0].contains(QUARTER) && alerts[0].contains("school-001"));
    let timers =
        history::timer_summaries(&history::events(&app, &format!("{id}/school/school-001")));
    assert_eq!(timers, ["Retry200ms", "Retry400ms", "Retry800ms"]);
    assert!(
        app.ledger().await.records.is_empty(),
        "nothing was applied during the outage"
    );

    // After the API recovers, a replay sends the same batch (same id, same key) once.
    let requeued = app
        .store
        .requeue_dead_letters(&crate::helpers::quarter())
        .await
        .unwrap();
    assert_eq!(requeued, 1);
    let replay_id = format!("{id}-replay");
    gradesync::commands::sync::start(
        &app.client,
        app.task_queue(),
        &replay_id,
        crate::helpers::quarter(),
        fast_policy(),
    )
    .await
    .unwrap();
    let replayed = app.result(&replay_id).await;
    assert!(replayed.complete, "{replayed:?}");
    assert_eq!(replayed.totals.records_synced, 50);
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert_eq!(ledger.records.len(), 50);
    assert!(
        ledger
            .records
            .values()
            .all(|r| r.batches == [letters[0].batch_id])
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_error_rejects_named_records_and_the_run_continues() {
    let faults = Faults {
        reject_rules: vec![RejectRule {
            field: "grade".into(),
            equals: "F".into(),
            message: "failing grades need a review note".into(),
        }],
        ..Faults::default()
    };
    let app = TestApp::spawn("clienterror", faults).await;
    let n = app.seed_grades(2, 100).await;
    let summary = app.sync_and_wait(fast_policy()).await;

    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    let rejected = summary.totals.records_rejected;
    assert!(rejected > 0, "some F grades exist in the data");
    assert_eq!(summary.totals.records_synced + rejected, n, "{summary:?}");
    assert_eq!(ledger.records.len() as u64, n - rejected);
    let counts = app
        .store
        .status_counts(&crate::helpers::quarter())
        .await
        .unwrap();
    assert_eq!(counts.iter().map(|c| c.rejected).sum::<u64>(), rejected);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    // The API asks for 2 s; the ladder's 200 ms step is lengthened to that.
    let faults = Faults {
        retry_after_secs: Some(2),
        ..outage()
    };
    let app = TestApp::spawn("retryafter", faults).await;
    app.seed_grades(1, 20).await;
    let id = app.start_sync(fast_policy()).await;
    app.end_outage_after_first_503().await;
    let summary = app.result(&id).await;

    assert!(summary.complete, "{summary:?}");
    let timers =
        history::timer_summaries(&history::events(&app, &format!("{id}/school/school-001")));
    assert_eq!(timers, ["Retry200ms (Retry-After 2s)"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_cli_start_completes_and_history_has_no_personal_data() {
    let app = TestApp::spawn("cli-start", Faults::default()).await;
    let n = app.seed_grades(2, 30).await;
    let id = format!("cli-{}", app.task_queue());
    let input = format!(r#"{{"quarter":"{QUARTER}"}}"#);
    app.start_with_temporal_cli(&id, &input);
    let summary = app.result(&id).await;
    assert_eq!(summary.totals.records_synced, n);
    assert!(summary.complete);

    // Started under an id of its own, the run hands over to the quarter's own id.
    let names = history::activity_types(&history::events(
        &app,
        &format!("{}/school/school-001", app.workflow_id()),
    ));
    for expected in ["PrepBatch", "SendBatch", "MarkSynced"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    // Every payload of every history of the run (the starter, the quarter's own run, the
    // schools), decoded: no student id and no record content.
    let leaks = history::leaks(&app, &id, &["stu-0", "evaluation-1"]);
    let own = app.workflow_id();
    assert!(leaks.is_empty(), "personal data in histories: {leaks:?}");
    let leaks = history::leaks(&app, &own, &["stu-0", "evaluation-1"]);
    assert!(leaks.is_empty(), "personal data in histories: {leaks:?}");

    // A scheduled run carries no quarter: it syncs the quarter that ended most recently
    // (here: nothing is pending, so it ends at once).
    let scheduled = format!("{id}-scheduled");
    app.start_with_temporal_cli(&scheduled, "{}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expected = gradesync_govapi::Quarter::last_ended_before(now as i64).to_string();
    let empty = app.result(&scheduled).await;
    assert_eq!(empty.quarter, expected);
    // Either that is the quarter synced above (nothing left to send, complete), or one
    // with no grades in this store, which is never called complete.
    assert_eq!(empty.totals.records_synced, 0);
    let verdict = if expected == QUARTER {
        Verdict::Complete
    } else {
        Verdict::Empty
    };
    assert_eq!(empty.verdict, verdict, "{empty:?}");
    assert_eq!(empty.reconcile.missing_at_api, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_personal_data_check_finds_a_canary_planted_in_a_payload() {
    // The check must be able to fail: a canary put into a workflow input on purpose (an
    // unknown field, which the workflow ignores) is found once payloads are decoded, and
    // is invisible to a search of the raw JSON, where payloads are base64.
    let app = TestApp::spawn("canary-check", Faults::default()).await;
    let canary = "CANARY-PLANTED-7731";
    let id = format!("planted-{}", app.task_queue());
    let input = format!(r#"{{"quarter":"{QUARTER}","note":"{canary}"}}"#);
    app.start_with_temporal_cli(&id, &input);
    app.result(&id).await;
    let found = history::leaks(&app, &id, &[canary]);
    assert_eq!(found, [(id.clone(), canary.to_string())], "{found:?}");
    let raw = app.temporal_cli(&["workflow", "show", "--workflow-id", &id, "--output", "json"]);
    assert!(!String::from_utf8_lossy(&raw.stdout).contains(canary));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_api_silently_lost_are_found_and_sent_again() {
    let faults = Faults {
        p_silent_loss: 0.05,
        seed: 11,
        ..Faults::default()
    };
    let app = TestApp::spawn("silentloss", faults).await;
    let n = app.seed_grades(2, 200).await;
    let id = app.start_sync(fast_policy()).await;
    // Lose records only on the first pass; the repair pass meets a faithful API.
    app.wait_for_batches(4).await;
    app.sim.set_faults(Faults::default()).await;
    let summary = app.result(&id).await;

    let ledger = app.ledger().await;
    let lost = ledger.silently_lost.len() as u64;
    assert!(lost > 0, "the fault lost some records");
    assert!(summary.complete, "{summary:?}");
    assert_eq!(
        summary.reconcile.repaired, lost,
        "exactly the lost records were resent"
    );
    assert_eq!(summary.reconcile.missing_at_api, 0);
    assert_eq!(
        ledger.records.len() as u64,
        n,
        "every record is at the API now"
    );
    assert_ledger_clean(&ledger);
    for id in &ledger.silently_lost {
        assert_eq!(
            ledger.records[id].applied, 1,
            "{id} applied once, by the repair"
        );
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary.reconcile.report_json).unwrap()).unwrap();
    assert_eq!(report["earlier_reports"].as_array().map(Vec::len), Some(1));
    let first: serde_json::Value = serde_json::from_slice(
        &std::fs::read(report["earlier_reports"][0].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        first["discrepancies"].as_array().unwrap().len() as u64,
        lost
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_the_api_finds_too_large_are_split_and_sent() {
    // Limits set above the API's (250 records, 4 MB): its 413s make us split until it fits.
    let app = TestApp::spawn("split413", Faults::default()).await;
    let n = app.seed_grades(1, 250).await;
    let policy = Policy {
        max_batch_records: 250,
        max_batch_bytes: 4 << 20,
        ..fast_policy()
    };
    let summary = app.sync_and_wait(policy).await;

    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.totals.records_synced, n);
    assert_eq!(summary.totals.records_rejected, 0);
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert_eq!(ledger.records.len() as u64, n);
    assert!(ledger.status_counts.get(&413).copied().unwrap_or(0) >= 1);
    assert!(
        ledger.batches_committed >= 3,
        "split at least into halves and quarters"
    );
    app.stop().await;
}
