//! The deadline-aware ETA: the `progress` query's projection and the early "deadline at
//! risk" alert it raises when an outage makes the run miss its deadline at the measured rate.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use gradesync_activities::model::Policy;
use gradesync_govapi::sim::Faults;

use crate::helpers::{TestApp, assert_ledger_clean, fast_policy, outage};
use crate::history;

/// ETA checks every 250 ms, judged after 3 s of sending; one batch per chunk so schools
/// report after every batch (the default reports every 50).
fn eta_policy() -> Policy {
    Policy {
        eta_check_interval_ms: 250,
        eta_min_measure_ms: 3_000,
        eta_window_ms: 2_000,
        batches_per_chunk: 1,
        ..fast_policy()
    }
}

fn deadline_alerts(app: &TestApp) -> Vec<String> {
    app.alerts
        .texts()
        .into_iter()
        .filter(|t| t.contains("deadline at risk"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_raises_the_early_deadline_alert_once_before_the_warning_mark() {
    let app = TestApp::spawn("eta-outage", outage()).await;
    let n = app.seed_grades(2, 150).await;
    let policy = Policy {
        // Each batch retries for ~20 s: the outage, not a dead letter, is what the ETA sees.
        backoff_ms: vec![500; 40],
        deadline_warning_ms: 60_000,
        deadline_ms: 90_000,
        ..eta_policy()
    };
    let started = Instant::now();
    let id = app.start_sync(policy.clone()).await;
    app.wait_for_alerts(1).await;
    let waited = started.elapsed();
    eprintln!("early alert after {waited:?}");
    assert!(
        waited < Duration::from_millis(policy.deadline_warning_ms),
        "the alert came at the warning mark, not early: {waited:?}"
    );
    assert!(
        waited >= Duration::from_millis(policy.eta_min_measure_ms),
        "judged before the minimum measure: {waited:?}"
    );
    let alerts = deadline_alerts(&app);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].contains("projected never to finish"),
        "{alerts:?}"
    );
    assert!(
        !alerts[0].contains("st-"),
        "no student id in the alert: {alerts:?}"
    );

    let p = app.progress(&id).await.expect("the progress query answers");
    let eta = p.eta.expect("a projection");
    assert_eq!(eta.on_track, Some(false), "{p:?}");
    assert_eq!(eta.projected_finish_ms, None, "{p:?}");
    assert_eq!(eta.rate_per_sec, 0.0);
    assert_eq!(p.deadline_at_ms, p.started_ms + policy.deadline_ms);

    // Still off track for a dozen more checks: no second alert.
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.sim.set_faults(Faults::default()).await;
    let summary = app.result(&id).await;
    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.totals.records_synced, n);
    assert_eq!(deadline_alerts(&app).len(), 1, "{:?}", app.alerts.texts());
    let events = history::events(&app, &id);
    let alerts_run = history::activity_types(&events)
        .iter()
        .filter(|t| *t == "DeadlineAtRisk")
        .count();
    assert_eq!(alerts_run, 1, "one DeadlineAtRisk activity per run");
    let timers = history::timer_summaries(&events);
    assert!(timers.iter().any(|t| t == "EtaCheck"), "{timers:?}");
    assert!(!timers.iter().any(|t| t == "Deadline"), "{timers:?}");
    assert_ledger_clean(&app.ledger().await);
    record_history(&app, &id).await;
    app.stop().await;
}

/// With GRADESYNC_RECORD_HISTORIES=1, keeps this run's history (ETA timers, the early
/// alert) in tests/histories/, where the replay test guards its shape from then on.
async fn record_history(app: &TestApp, id: &str) {
    if std::env::var_os("GRADESYNC_RECORD_HISTORIES").is_none() {
        return;
    }
    let json = app
        .client
        .get_workflow_handle::<gradesync_workflows::QuarterlySync>(id.to_string())
        .fetch_history(Default::default())
        .to_json()
        .await
        .unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/histories/quarterly_sync_eta_alert.json");
    std::fs::write(path, json).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_run_is_judged_on_track_and_sends_no_deadline_alert() {
    let app = TestApp::spawn("eta-clean", Faults::default()).await;
    let n = app.seed_grades(2, 500).await;
    let policy = Policy {
        eta_window_ms: 60_000,
        deadline_warning_ms: 60_000,
        deadline_ms: 120_000,
        ..eta_policy()
    };
    let id = app.start_sync(policy.clone()).await;
    // Follow the projection while the run goes on, as `sync status` does.
    let handle = app
        .client
        .get_workflow_handle::<gradesync_workflows::QuarterlySync>(id.clone());
    let mut result = std::pin::pin!(handle.get_result(Default::default()));
    let mut judged = Vec::new();
    let summary = loop {
        tokio::select! {
            r = &mut result => break r.expect("the sync workflow completed"),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if let Some(eta) = app.progress(&id).await.and_then(|p| p.eta) {
                    judged.push(eta);
                }
            }
        }
    };
    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.totals.records_synced, n);
    let on_track: Vec<_> = judged.iter().filter_map(|e| e.on_track).collect();
    eprintln!(
        "rates seen: {:?}",
        judged.iter().map(|e| e.rate_per_sec).collect::<Vec<_>>()
    );
    assert!(
        !on_track.is_empty(),
        "the run was never judged (it must outlast the minimum measure): {judged:?}"
    );
    assert!(on_track.iter().all(|&t| t), "{judged:?}");
    assert!(
        judged
            .iter()
            .any(|e| e.rate_per_sec > 0.0 && e.projected_finish_ms.is_some()),
        "{judged:?}"
    );
    assert!(deadline_alerts(&app).is_empty(), "{:?}", app.alerts.texts());
    let events = history::events(&app, &id);
    assert!(
        !history::activity_types(&events)
            .iter()
            .any(|t| t == "DeadlineAtRisk"),
        "no DeadlineAtRisk activity in a run on track"
    );
    assert!(
        history::timer_summaries(&events)
            .iter()
            .any(|t| t == "EtaCheck")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_status_prints_rate_eta_deadline_and_verdict() {
    // Through the CLI, whose workflow id is per quarter: a quarter no other test uses.
    let app = TestApp::spawn("eta-status", Faults::default()).await;
    let q = crate::helpers::unique_quarter();
    let quarter = q.to_string();
    app.seed_grades_in(&q, 2, 500).await;
    let policy = serde_json::to_string(&Policy {
        eta_window_ms: 60_000,
        deadline_ms: 120_000,
        deadline_warning_ms: 60_000,
        ..eta_policy()
    })
    .unwrap();
    let out = app.gradesync(&["sync", "start", "--quarter", &quarter, "--policy", &policy]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = Vec::new();
    let line = loop {
        let out = app.gradesync(&["sync", "status", "--quarter", &quarter]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("records/s, ETA") && l.ends_with("on track"))
        {
            break line.trim().to_string();
        }
        seen.push(text);
        assert!(
            seen.len() < 100,
            "no judged ETA line in `sync status`: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("{line}");
    // "rate 196 records/s, ETA 2026-11-28 14:05 UTC, deadline 2026-11-28 16:00 UTC: on track"
    let parts: Vec<&str> = line.split(", ").collect();
    assert!(
        parts[0].starts_with("rate ") && parts[0].ends_with(" records/s"),
        "{line}"
    );
    let rate: f64 = parts[0]["rate ".len()..parts[0].len() - " records/s".len()]
        .parse()
        .unwrap();
    assert!(rate > 0.0, "{line}");
    assert!(
        parts[1].starts_with("ETA ") && parts[1].ends_with(" UTC"),
        "{line}"
    );
    assert!(
        parts[2].starts_with("deadline ") && parts[2].contains(" UTC: "),
        "{line}"
    );
    let id = gradesync::commands::sync::workflow_id(&q, app.task_queue());
    app.result(&id).await;

    // Once the run has ended, status says when and after how long, not an ETA.
    let out = app.gradesync(&["sync", "status", "--quarter", &quarter]);
    let text = String::from_utf8_lossy(&out.stdout);
    let finished = text
        .lines()
        .find(|l| l.trim_start().starts_with("finished "))
        .unwrap_or_else(|| panic!("no finished line: {text}"));
    assert!(
        finished.contains(" UTC after ") && finished.contains(", deadline "),
        "{finished}"
    );
    assert!(
        !text.contains("ETA") && !text.contains("too early"),
        "{text}"
    );

    // `sync status | head -1`: head reads a line and exits; the command ends quietly.
    let mut status = app.gradesync_command();
    status
        .args(["sync", "status", "--quarter", &quarter])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut status = status.spawn().unwrap();
    let head = std::process::Command::new("head")
        .arg("-1")
        .stdin(status.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(head.status.success());
    let first = String::from_utf8_lossy(&head.stdout);
    assert!(
        first.starts_with("workflow ") && first.lines().count() == 1,
        "{first}"
    );
    let status = status.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&status.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // Closed before anything is written, the pipe always breaks: no panic, no error
    // message; the command ends by SIGPIPE (the shell's 141) as a Unix tool does.
    let mut early = app.gradesync_command();
    early
        .args(["sync", "status", "--quarter", &quarter])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = early.spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && err.is_empty(), "{err}");
    assert_eq!(out.status.signal(), Some(13), "{:?} {err}", out.status);
    app.stop().await;
}
