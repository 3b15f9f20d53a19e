//! The verdict is the product: `complete` only when every valid grade is confirmed at the
//! API; `incomplete` or `needs_correction` otherwise, with every record that is not at the
//! API listed in the report (JSON and CSV) with its state, batch and reason, and exit 4.
//! Each test drives the failure the API or the hosts can produce and reads the verdict,
//! the exit code and the report's rows.

use std::time::{Duration, Instant};

use gradesync_activities::model::{SyncSummary, Verdict};
use gradesync_govapi::Quarter;
use gradesync_govapi::sim::{Faults, RejectRule};
use serde_json::Value;

use crate::helpers::{
    TestApp, assert_applied_once, assert_ledger_clean, fast_policy, free_port, outage,
    unique_quarter,
};
use crate::history;

/// `gradesync sync start --quarter Q --wait --policy P`: exit code and output.
fn sync_start_wait(app: &TestApp, q: &Quarter, policy: &str) -> (Option<i32>, String) {
    let out = app.gradesync(&[
        "sync",
        "start",
        "--quarter",
        &q.to_string(),
        "--wait",
        "--policy",
        policy,
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The report's JSON and its CSV rows as `(school, record, state, batch, reason)`.
fn report(summary: &SyncSummary) -> (Value, Vec<[String; 5]>) {
    let json: Value =
        serde_json::from_slice(&std::fs::read(&summary.reconcile.report_json).unwrap()).unwrap();
    let csv = std::fs::read_to_string(&summary.reconcile.report_csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("school_id,record_id,state,batch_id,reason")
    );
    let rows = lines
        .map(|line| {
            // Ids, state and batch never hold a comma; the reason may (quoted).
            let mut parts = line.splitn(5, ',').map(str::to_string);
            std::array::from_fn(|_| parts.next().unwrap_or_default())
        })
        .collect();
    (json, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_run_outage_ends_incomplete_with_every_record_listed_as_dead() {
    let app = TestApp::spawn("outage-all", outage()).await;
    let q = unique_quarter();
    let n = app.seed_grades_in(&q, 2, 30).await;
    let policy = serde_json::to_string(&fast_policy()).unwrap();
    let (code, text) = sync_start_wait(&app, &q, &policy);

    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains(&format!("quarter {q}: incomplete")), "{text}");
    let summary = app.result(&crate::helpers::workflow_id_of(&app, &q)).await;
    assert_eq!(summary.verdict, Verdict::Incomplete, "{summary:?}");
    assert!(!summary.complete);
    assert_eq!(summary.redrives, 2, "both redrive waves ran: {summary:?}");
    let (json, rows) = report(&summary);
    assert_eq!(json["verdict"], "incomplete");
    assert_eq!(rows.len() as u64, n, "every record listed: {rows:?}");
    let letters = app.store.dead_letters(&q).await.unwrap();
    for [school, record, state, batch, reason] in &rows {
        assert!(school.starts_with("school-") && record.starts_with("rec-"));
        assert_eq!(state, "dead");
        assert!(
            letters.iter().any(|d| d.batch_id.to_string() == *batch),
            "{batch} is a dead letter"
        );
        assert!(reason.contains("503"), "{reason}");
    }
    assert!(app.ledger().await.records.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_shorter_than_the_redrive_waves_ends_complete_with_no_one_acting() {
    // Down from the start until a batch has died on the ladder (1.4 s of steps): the waves
    // (1 s, then 2 s later) send it again, and one of them finds the API back. The outage
    // ends on what the run did, not on the clock, so a slow start cannot skip it.
    let app = TestApp::spawn("outage-short", Faults::default()).await;
    let q = unique_quarter();
    let n = app.seed_grades_in(&q, 2, 40).await;
    let policy = serde_json::to_string(&fast_policy()).unwrap();
    app.sim.set_faults(outage()).await;
    let starter = {
        let mut cmd = app.gradesync_command();
        cmd.args([
            "sync",
            "start",
            "--quarter",
            &q.to_string(),
            "--wait",
            "--policy",
            &policy,
        ]);
        tokio::task::spawn_blocking(move || cmd.output().expect("the gradesync binary runs"))
    };
    while app.store.dead_letters(&q).await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.sim.set_faults(Faults::default()).await;
    let out = starter.await.unwrap();
    let (code, text) = (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    );

    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("quarter {q}: complete")), "{text}");
    let id = crate::helpers::workflow_id_of(&app, &q);
    let summary = app.result(&id).await;
    assert_eq!(summary.verdict, Verdict::Complete, "{summary:?}");
    assert!(summary.redrives >= 1, "{summary:?}");
    let (json, rows) = report(&summary);
    assert_eq!(json["verdict"], "complete");
    assert!(rows.is_empty(), "{rows:?}");
    let ledger = app.ledger().await;
    assert_applied_once(&ledger, n);
    let letters = app.store.dead_letters(&q).await.unwrap();
    assert!(letters.is_empty(), "{letters:?}");
    let timers = history::timer_summaries(&history::events(&app, &id));
    assert!(timers.iter().any(|t| t == "Redrive1s"), "{timers:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_html_answer_from_a_gateway_rejects_no_record() {
    // Every POST refused until one is, then three in ten.
    let always = Faults {
        p_403_html: 1.0,
        ..Faults::default()
    };
    let app = TestApp::spawn("gateway403", always).await;
    let n = app.seed_grades(3, 100).await;
    let id = app.start_sync(fast_policy()).await;
    app.wait_for_status(403).await;
    app.sim
        .set_faults(Faults {
            p_403_html: 0.3,
            seed: crate::helpers::test_seed(),
            ..Faults::default()
        })
        .await;
    let summary = app.result(&id).await;

    let ledger = app.ledger().await;
    assert!(
        ledger.status_counts.get(&403).copied().unwrap_or(0) > 0,
        "the gateway refused some POSTs"
    );
    assert_eq!(summary.verdict, Verdict::Complete, "{summary:?}");
    assert_eq!(summary.totals.records_rejected, 0, "{summary:?}");
    assert_eq!(summary.reconcile.rejected, 0);
    assert_ledger_clean(&ledger);
    assert_eq!(ledger.records.len() as u64, n, "all grades at the API");
    let (_, rows) = report(&summary);
    assert!(rows.is_empty(), "{rows:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_end_needs_correction_each_with_its_reason() {
    let faults = Faults {
        reject_rules: vec![RejectRule {
            field: "grade".into(),
            equals: "F".into(),
            message: "failing grades need a review note".into(),
        }],
        ..Faults::default()
    };
    let app = TestApp::spawn("poison", faults).await;
    let q = unique_quarter();
    let n = app.seed_grades_in(&q, 2, 100).await;
    let policy = serde_json::to_string(&fast_policy()).unwrap();
    let (code, text) = sync_start_wait(&app, &q, &policy);

    assert_eq!(code, Some(4), "{text}");
    assert!(
        text.contains(&format!("quarter {q}: needs_correction")),
        "{text}"
    );
    let summary = app.result(&crate::helpers::workflow_id_of(&app, &q)).await;
    assert_eq!(summary.verdict, Verdict::NeedsCorrection, "{summary:?}");
    let rejected = app.rejections(&q).await;
    assert!(!rejected.is_empty(), "some F grades exist in the data");
    let (json, rows) = report(&summary);
    assert_eq!(json["verdict"], "needs_correction");
    assert_eq!(rows.len(), rejected.len(), "{rows:?}");
    for [_, record, state, batch, reason] in &rows {
        assert_eq!(state, "rejected");
        assert!(!batch.is_empty(), "{record} names its batch");
        assert!(
            reason.contains("grade") && reason.contains("failing grades need a review note"),
            "{reason}"
        );
        assert!(rejected.iter().any(|(id, _)| id == record));
    }
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert_eq!(ledger.records.len() + rejected.len(), n as usize);
    app.stop().await;
}

/// A 400 whose problem runs to hundreds of kilobytes (three long messages) is parsed whole
/// before anything is kept: it rejects the three records it names, with their reasons cut
/// short, and their 97 neighbours go out again in a new batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_400_naming_3_of_100_records_rejects_those_3() {
    let named = [
        "rec-school-001-0000007",
        "rec-school-001-0000042",
        "rec-school-001-0000093",
    ];
    let long = "this record fails the registry's check; ".repeat(3_000);
    assert!(long.len() * named.len() > 256 * 1024);
    let faults = Faults {
        reject_rules: named
            .iter()
            .map(|id| RejectRule {
                field: "record_id".into(),
                equals: id.to_string(),
                message: long.clone(),
            })
            .collect(),
        ..Faults::default()
    };
    let app = TestApp::spawn("long400", faults).await;
    let n = app.seed_grades(1, 100).await;
    let summary = app.sync_and_wait(fast_policy()).await;

    assert_eq!(summary.verdict, Verdict::NeedsCorrection, "{summary:?}");
    let q = crate::helpers::quarter();
    let rejected = app.rejections(&q).await;
    let ids: Vec<&str> = rejected.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, named, "exactly the named records are rejected");
    for (id, reason) in &rejected {
        let reason = reason.as_deref().unwrap_or_default();
        assert!(
            reason.starts_with("record_id: this record fails") && reason.len() < 2_000,
            "{id}: {} chars",
            reason.len()
        );
    }
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert_eq!(ledger.records.len() as u64, n - 3, "the other 97 went out");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_starters_at_once_make_one_run() {
    let app = TestApp::spawn("onerun", Faults::default()).await;
    let q = unique_quarter();
    let n = app.seed_grades_in(&q, 2, 100).await;
    let policy = serde_json::to_string(&fast_policy()).unwrap();
    // The schedule's way (an id of its own) and our CLI's, at the same moment.
    let other = format!("scheduled-{}", app.task_queue());
    let input = format!(r#"{{"quarter":"{q}","policy":{policy}}}"#);
    let cli = app
        .gradesync_command()
        .args([
            "sync",
            "start",
            "--quarter",
            &q.to_string(),
            "--policy",
            &policy,
        ])
        .output();
    app.start_with_temporal_cli(&other, &input);
    let cli = cli.unwrap();
    let own = crate::helpers::workflow_id_of(&app, &q);
    let summary = app.result(&own).await;
    assert_eq!(summary.verdict, Verdict::Complete, "{summary:?}");

    let handle = app
        .client
        .get_workflow_handle::<gradesync_workflows::QuarterlySync>(other.clone());
    let joined = tokio::time::timeout(
        Duration::from_secs(120),
        handle.get_result(Default::default()),
    )
    .await
    .unwrap();
    let cli_text = String::from_utf8_lossy(&cli.stderr).into_owned();
    match (cli.status.code(), &joined) {
        // The CLI's run went first: the other start says so and sends nothing.
        (Some(0), Err(e)) => assert!(
            format!("{e:?}").contains("already being synced")
                || e.to_string().contains("already being synced"),
            "{e:?}"
        ),
        // The other start went first and follows the quarter's run; the CLI is refused.
        (Some(4), Ok(followed)) => {
            assert!(cli_text.contains("already running"), "{cli_text}");
            assert_eq!(followed.verdict, Verdict::Complete);
        }
        other => panic!("one run, one refusal: {other:?} {cli_text}"),
    }
    // Only the quarter's own id ever had schools.
    let stray = app.workflow_runs_starting_with(&format!("{other}/"));
    assert!(stray.is_empty(), "{stray:?}");
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert_applied_once(&ledger, n);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_never_holds_the_sync() {
    let mut app = TestApp::spawn_without_worker("deadhook", outage()).await;
    let dead = format!("http://127.0.0.1:{}/hooks/T000/SECRET-PATH", free_port());
    app.worker_args.output.alert_webhook_url = Some(dead.clone());
    app.worker_args.output.compliance_webhook_url = Some(dead);
    let app = app.with_worker().await;
    let q = crate::helpers::quarter();
    let n = app.seed_grades(1, 50).await;
    let id = app.start_sync(fast_policy()).await;
    // A dead letter (whose alert cannot be delivered), then the API comes back.
    for _ in 0..600 {
        if !app.store.dead_letters(&q).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.sim.set_faults(Faults::default()).await;
    let summary = app.result(&id).await;

    assert_eq!(summary.verdict, Verdict::Complete, "{summary:?}");
    assert!(summary.reconcile.webhook_failures >= 2, "{summary:?}");
    assert_applied_once(&app.ledger().await, n);
    let failures = app.store.webhook_failures(&q).await.unwrap();
    let hooks: Vec<_> = failures.iter().map(|f| f.hook.as_str()).collect();
    assert!(
        hooks.contains(&"alert") && hooks.contains(&"compliance"),
        "{hooks:?}"
    );
    assert!(
        failures.iter().all(|f| !f.error.contains("SECRET-PATH")),
        "{failures:?}"
    );
    let (json, _) = report(&summary);
    assert!(!json["webhook_failures"].as_array().unwrap().is_empty());
    let status = app.gradesync(&["sync", "status", "--quarter", &q.to_string()]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("webhooks:") && text.contains("posts failed"),
        "{text}"
    );
    assert!(text.contains("verdict complete"), "{text}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_stop_the_run_at_once_with_an_alert() {
    let mut app = TestApp::spawn_without_worker("badcreds", Faults::default()).await;
    app.worker_args.gov.gov_client_secret = Some("not-the-secret".into());
    let app = app.with_worker().await;
    app.seed_grades(2, 50).await;
    let started = Instant::now();
    let id = app.start_sync(fast_policy()).await;
    let handle = app
        .client
        .get_workflow_handle::<gradesync_workflows::QuarterlySync>(id);
    let failed = tokio::time::timeout(
        Duration::from_secs(60),
        handle.get_result(Default::default()),
    )
    .await
    .expect("the run ends at once, not after the ladder and the redrive waves");
    let e = failed.expect_err("refused credentials fail the run");
    let text = format!("{e:?}");
    assert!(
        text.contains("token endpoint refused our client credentials"),
        "{text}"
    );
    assert!(text.contains("GRADESYNC_GOV_CLIENT_SECRET"), "{text}");
    eprintln!("failed after {:?}", started.elapsed());
    app.wait_for_alerts(1).await;
    let alerts = app.alerts.texts();
    assert!(alerts[0].contains("stopped the sync"), "{alerts:?}");
    assert!(!alerts.iter().any(|a| a.contains("not-the-secret")));
    let ledger = app.ledger().await;
    assert_eq!(ledger.batch_posts, 0, "no POST without a token");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_naming_nothing_of_the_batch_is_dead_lettered_then_sent_in_a_new_batch() {
    // The first POSTs meet a 400 that names a record the batch does not hold: resending
    // the same key would meet the same answer, so the batch is a dead letter (alerted), and
    // the redrive wave cuts its records into a new batch.
    let unnamed = Faults {
        p_400_unnamed: 1.0,
        ..Faults::default()
    };
    let app = TestApp::spawn("unnamed400", unnamed).await;
    let q = crate::helpers::quarter();
    let n = app.seed_grades(1, 60).await;
    let id = app.start_sync(fast_policy()).await;
    app.wait_for_alerts(1).await;
    let letters = app.store.dead_letters(&q).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(letters[0].error.contains("naming no record"), "{letters:?}");
    app.sim.set_faults(Faults::default()).await;
    let summary = app.result(&id).await;

    assert_eq!(summary.verdict, Verdict::Complete, "{summary:?}");
    assert_eq!(
        summary.reconcile.rejected, 0,
        "nothing rejected: {summary:?}"
    );
    assert!(summary.redrives >= 1);
    let ledger = app.ledger().await;
    assert!(ledger.posts_unnamed_400 >= 1);
    assert_applied_once(&ledger, n);
    assert!(
        ledger
            .records
            .values()
            .all(|r| r.batches != [letters[0].batch_id]),
        "sent in a new batch, not under the refused key"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_25_s_tokens_sends_no_post_with_an_expired_token() {
    // 60 batches at 2 requests/s take over 30 s: the token expires mid-run, with batches
    // queued at the rate gate. It is checked when each request leaves, not before the wait.
    let config = gradesync_govapi::sim::SimConfig {
        token_ttl: Duration::from_secs(25),
        faults: Faults::default(),
        ..Default::default()
    };
    let app = TestApp::spawn_with("token25", config, None)
        .await
        .with_worker()
        .await;
    let n = app.seed_grades(4, 1_500).await;
    let summary = app.sync_and_wait(fast_policy()).await;

    assert_eq!(summary.verdict, Verdict::Complete, "{summary:?}");
    let ledger = app.ledger().await;
    assert!(
        ledger.tokens_issued >= 2,
        "the token was renewed: {}",
        ledger.tokens_issued
    );
    assert_eq!(
        ledger.posts_unauthorized, 0,
        "no POST left with an expired token"
    );
    assert_ledger_clean(&ledger);
    assert_applied_once(&ledger, n);
    app.stop().await;
}
