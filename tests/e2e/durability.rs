//! Crashes, restarts, replay and the deadline: the run survives what the seed's Step
//! Functions design survived, and its code stays replayable.

use std::time::Duration;

use gradesync_activities::model::Policy;
use gradesync_govapi::sim::Faults;
use gradesync_workflows::{QuarterlySync, SchoolSync};
use temporalio_client::{WorkflowFetchHistoryOptions, WorkflowHistory};
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

use crate::helpers::{TestApp, assert_applied_once, assert_ledger_clean, fast_policy, outage};

/// Activity timeouts short enough that a killed worker's tasks time out in seconds.
fn crash_policy() -> Policy {
    Policy {
        send_start_to_close_ms: 5_000,
        send_schedule_to_close_ms: 10_000,
        query_timeout_ms: 5_000,
        heartbeat_timeout_ms: 3_000,
        ..fast_policy()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_run_resumes_with_nothing_lost_or_doubled() {
    let faults = Faults {
        latency_ms: 300,
        ..Faults::default()
    };
    let app = TestApp::spawn_without_worker("sigkill", faults).await;
    let n = app.seed_grades(3, 200).await;
    let mut worker = app.spawn_worker_process();
    let id = app.start_sync(crash_policy()).await;
    app.wait_for_batches(2).await;
    worker.kill().expect("SIGKILL the worker"); // Child::kill sends SIGKILL on Unix
    worker.wait().unwrap();
    let mut worker = app.spawn_worker_process();
    let summary = app.result(&id).await;
    worker.kill().unwrap();
    worker.wait().unwrap();

    assert!(summary.complete, "{summary:?}");
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert_eq!(ledger.records.len() as u64, n);
    let counts = app
        .store
        .status_counts(&crate::helpers::quarter())
        .await
        .unwrap();
    assert_eq!(counts.iter().map(|c| c.synced).sum::<u64>(), n);
}

async fn history(app: &TestApp, id: &str) -> WorkflowHistory {
    let handle = app
        .client
        .get_workflow_handle::<QuarterlySync>(id.to_string());
    let json = handle
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .unwrap();
    WorkflowHistory::from_json(&json).unwrap()
}

fn replayer() -> WorkflowReplayer {
    let options = WorkflowReplayerOptions::new()
        .register_workflow::<QuarterlySync>()
        .unwrap()
        .register_workflow::<SchoolSync>()
        .unwrap()
        .build();
    WorkflowReplayer::new(options).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_histories_replay_without_nondeterminism() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories");
    // A fresh run with a retry in it replays against the code that made it
    // (GRADESYNC_RECORD_HISTORIES=1 saves it as the new recorded history).
    let app = TestApp::spawn("replay", outage()).await;
    app.seed_grades(2, 120).await;
    let id = app.start_sync(fast_policy()).await;
    app.end_outage_after_first_503().await;
    app.result(&id).await;
    for wf in [id.clone(), format!("{id}/school/school-001")] {
        let json = history(&app, &wf).await.to_json().await.unwrap();
        if std::env::var_os("GRADESYNC_RECORD_HISTORIES").is_some() {
            let name = if wf.contains("/school/") {
                "school_sync.json"
            } else {
                "quarterly_sync.json"
            };
            std::fs::write(dir.join(name), &json).unwrap();
        }
        let h = WorkflowHistory::from_json(&json).unwrap();
        replayer().replay_workflow(h).await.unwrap();
    }
    // Histories recorded from earlier versions of the workflows must still replay.
    let mut recorded = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let history = WorkflowHistory::from_json(&std::fs::read(&path).unwrap()).unwrap();
        replayer()
            .replay_workflow(history)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        recorded += 1;
    }
    assert!(recorded >= 2, "recorded histories in {}", dir.display());

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_alerts_before_and_ends_the_run_at_the_limit() {
    // The API never comes back; the compressed deadline must fire its warning, then end
    // the run, whatever the batches are doing.
    let app = TestApp::spawn("deadline", outage()).await;
    app.seed_grades(1, 10).await;
    let policy = Policy {
        backoff_ms: vec![60_000],
        deadline_warning_ms: 1_000,
        // The watchdog ends the run 10% before the server's execution timeout: 800 ms
        // here, enough for its workflow task on a loaded CI machine (400 ms was not).
        deadline_ms: 8_000,
        ..Policy::default()
    };
    let id = app.start_sync(policy).await;
    let handle = app.client.get_workflow_handle::<QuarterlySync>(id.clone());
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        handle.get_result(Default::default()),
    )
    .await
    .unwrap();
    let err = outcome
        .expect_err("the run must fail at its deadline")
        .to_string();
    assert!(
        err.contains("deadline") || err.contains("Deadline"),
        "{err}"
    );
    let alerts = app.alerts.texts();
    assert!(
        alerts.iter().any(|t| t.contains("deadline at risk")),
        "{alerts:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_rate_window_under_load() {
    let faults = Faults {
        latency_ms: 400,
        latency_jitter_ms: 200,
        ..Faults::default()
    };
    let app = TestApp::spawn("rate", faults).await.with_worker().await;
    let n = app.seed_grades(4, 250).await;
    let policy = Policy {
        parallel_schools: 4,
        lanes_per_school: 3,
        ..fast_policy()
    };
    let started = std::time::Instant::now();
    let summary = app.sync_and_wait(policy).await;
    let elapsed = started.elapsed().as_secs_f64();

    assert!(summary.complete, "{summary:?}");
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert_eq!(ledger.records.len() as u64, n);
    // 12 batches plus tokens and reconcile reads, never more than 2 in any second.
    assert!(ledger.batches_committed >= 12);
    assert!(
        elapsed >= (ledger.requests_total as f64 - 2.0) / 2.0,
        "{elapsed} s for {} requests",
        ledger.requests_total
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_query_reports_counts_per_school_while_running() {
    let app = TestApp::spawn(
        "progress",
        Faults {
            latency_ms: 300,
            ..Faults::default()
        },
    )
    .await;
    let n = app.seed_grades(2, 300).await;
    let id = app.start_sync(fast_policy()).await;
    app.wait_for_batches(2).await;
    let handle = app.client.get_workflow_handle::<QuarterlySync>(id.clone());
    let p = handle
        .query(QuarterlySync::progress, (), Default::default())
        .await
        .unwrap();
    assert_eq!(p.quarter, crate::helpers::QUARTER);
    assert_eq!(p.pending_at_start, n);
    assert_eq!(p.schools.len(), 2);
    assert!(
        ["Sending", "Reconcile"].contains(&p.phase.as_str()),
        "{}",
        p.phase
    );
    let summary = app.result(&id).await;
    let done = handle
        .query(QuarterlySync::progress, (), Default::default())
        .await;
    if let Ok(done) = done {
        assert_eq!(done.totals.records_synced, n);
        assert!(done.schools.iter().all(|s| s.done));
    }
    assert_eq!(summary.totals.records_synced, n);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn school_history_stays_bounded_by_continue_as_new() {
    let app = TestApp::spawn("can", Faults::default()).await;
    let n = app.seed_grades(1, 600).await;
    let policy = Policy {
        batches_per_chunk: 1,
        continue_as_new_after_events: 20,
        ..fast_policy()
    };
    let id = app.start_sync(policy).await;
    let summary = app.result(&id).await;
    assert_eq!(
        summary.totals.records_synced, n,
        "counts survive continue-as-new"
    );
    assert_eq!(summary.totals.batches_sent, 6);
    let events = crate::history::events(&app, &format!("{id}/school/school-001"));
    assert!(events.len() < 60, "last run has {} events", events.len());
    assert!(
        events.iter().any(
            |e| e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"
                && e["workflowExecutionStartedEventAttributes"]["continuedExecutionRunId"]
                    .is_string()
        ),
        "the last run was continued as new"
    );
    assert_ledger_clean(&app.ledger().await);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarter_history_stays_bounded_by_continue_as_new() {
    // Six schools two at a time, and a parent that continues as new once its history
    // passes 20 events: past the mark as soon as its first two children have started, so
    // each run syncs two schools and the next finds only the rest pending.
    let app = TestApp::spawn("parent-can", Faults::default()).await;
    let n = app.seed_grades(6, 120).await;
    let policy = Policy {
        parallel_schools: 2,
        parent_continue_as_new_after_events: 20,
        ..fast_policy()
    };
    let id = app.start_sync(policy).await;
    let summary = app.result(&id).await;

    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.totals.records_synced, n, "totals cover every run");
    assert_eq!(summary.totals.batches_sent, 12);
    assert!(summary.reconcile.clean, "{:?}", summary.reconcile);
    assert_eq!(summary.reconcile.synced_in_store, n);
    assert_eq!(summary.reconcile.missing_at_api, 0);
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert_applied_once(&ledger, n);

    let runs = parent_runs(&app, &id);
    assert!(runs.len() >= 3, "the quarter ran in {} run(s)", runs.len());
    let (last, earlier) = runs.split_last().unwrap();
    for run in earlier {
        assert_eq!(
            run.last().unwrap()["eventType"],
            "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW"
        );
        assert!(run.len() < 60, "a run of {} events", run.len());
    }
    // The last run took over the first run's start (the deadline's origin) and the
    // earlier runs' counts; the schools it synced itself make up the rest.
    let carried = started_input(last)["carried"].clone();
    assert_eq!(carried["runs"], runs.len() - 1);
    let first_start = seconds_of_day(&runs[0][0]["eventTime"]).unwrap();
    let carried_start = (carried["started_ms"].as_u64().unwrap() % 86_400_000) as f64 / 1000.0;
    assert!(
        (carried_start - first_start).abs() < 0.002,
        "carried start {carried_start} s, first run started at {first_start} s"
    );
    let own = started_children(last).len() as u64 * 120;
    assert_eq!(
        carried["totals"]["records_synced"].as_u64().unwrap() + own,
        n
    );
    assert_eq!(carried["pending_at_start"].as_u64().unwrap() + own, n);
    let reconciles: Vec<usize> = runs
        .iter()
        .map(|run| {
            let types = crate::history::activity_types(run);
            types.iter().filter(|t| *t == "Reconcile").count()
        })
        .collect();
    assert_eq!(
        reconciles.iter().sum::<usize>(),
        1,
        "Reconcile per run: {reconciles:?}"
    );
    assert_eq!(
        crate::history::activity_types(last).last().unwrap(),
        "Reconcile"
    );
    assert_eq!(
        app.compliance.texts().len(),
        1,
        "one report, from the last run"
    );
    // Every school synced by one child, none started again by a later run.
    let mut children: Vec<String> = runs.iter().flat_map(|run| started_children(run)).collect();
    children.sort();
    let before = children.len();
    children.dedup();
    assert_eq!(before, 6, "{children:?}");
    assert_eq!(children.len(), 6, "{children:?}");
    assert!(app.alerts.texts().is_empty(), "{:?}", app.alerts.texts());
    // A continued run replays like any other.
    replayer()
        .replay_workflow(history(&app, &id).await)
        .await
        .unwrap();
    app.stop().await;
}

/// The events of every run of `id`, first run first: from the latest run back through
/// each run's `continuedExecutionRunId`.
fn parent_runs(app: &TestApp, id: &str) -> Vec<Vec<serde_json::Value>> {
    let mut runs = vec![crate::history::events(app, id)];
    while let Some(previous) = runs.last().unwrap()[0]["workflowExecutionStartedEventAttributes"]
        ["continuedExecutionRunId"]
        .as_str()
        .map(str::to_string)
    {
        let out = app.temporal_cli(&[
            "workflow",
            "show",
            "--workflow-id",
            id,
            "--run-id",
            &previous,
            "--output",
            "json",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        runs.push(v["events"].as_array().cloned().unwrap_or_default());
    }
    runs.reverse();
    runs
}

/// The input a run started with (the history's payload, base64 JSON).
fn started_input(events: &[serde_json::Value]) -> serde_json::Value {
    use base64::Engine;
    let data = events[0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]["data"]
        .as_str()
        .expect("an input payload");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

/// Workflow ids of the children a run started.
fn started_children(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| {
            e["startChildWorkflowExecutionInitiatedEventAttributes"]["workflowId"].as_str()
        })
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_the_rate_window() {
    let faults = Faults {
        latency_ms: 300,
        latency_jitter_ms: 150,
        ..Faults::default()
    };
    let app = TestApp::spawn_without_worker("two-procs", faults).await;
    let n = app.seed_grades(3, 250).await;
    let mut workers = [app.spawn_worker_process(), app.spawn_worker_process()];
    let policy = Policy {
        parallel_schools: 3,
        lanes_per_school: 3,
        ..fast_policy()
    };
    let summary = app.sync_and_wait(policy).await;
    for w in &mut workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }

    assert!(summary.complete, "{summary:?}");
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert_eq!(ledger.records.len() as u64, n);
    assert_eq!(
        ledger.tokens_issued, 2,
        "both processes sent (one token each)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_school_starts_while_the_last_batches_of_the_previous_are_in_flight() {
    // One school at a time, each cut in one chunk: without the "drained" hand-over the
    // second school would start only after the first one's last answer.
    let app = TestApp::spawn(
        "handover",
        Faults {
            latency_ms: 400,
            ..Faults::default()
        },
    )
    .await;
    let n = app.seed_grades(3, 300).await;
    let policy = Policy {
        parallel_schools: 1,
        ..fast_policy()
    };
    let id = app.start_sync(policy).await;
    let summary = app.result(&id).await;
    assert_eq!(summary.totals.records_synced, n);
    assert!(summary.complete);
    assert_ledger_clean(&app.ledger().await);

    let events = crate::history::events(&app, &id);
    let position = |event_type: &str, attrs: &str, child: &str| {
        events
            .iter()
            .position(|e| {
                e["eventType"] == event_type
                    && e[attrs]["workflowId"]
                        .as_str()
                        .or_else(|| e[attrs]["workflowExecution"]["workflowId"].as_str())
                        .is_some_and(|w| w.ends_with(child))
            })
            .unwrap_or_else(|| panic!("no {event_type} for {child}"))
    };
    for (first, next) in [("school-001", "school-002"), ("school-002", "school-003")] {
        let first_done = position(
            "EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED",
            "childWorkflowExecutionCompletedEventAttributes",
            first,
        );
        let next_started = position(
            "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED",
            "startChildWorkflowExecutionInitiatedEventAttributes",
            next,
        );
        assert!(
            next_started < first_done,
            "{next} started at event {next_started}, after {first} completed at {first_done}"
        );
        // ...but not before the previous school's last batch was handed to a lane:
        // `parallel_schools` still bounds the schools cutting and sending.
        let last_dispatch = crate::history::events(&app, &format!("{id}/school/{first}"))
            .iter()
            .filter(|e| {
                e["activityTaskScheduledEventAttributes"]["activityType"]["name"] == "SendBatch"
            })
            .filter_map(|e| seconds_of_day(&e["eventTime"]))
            .fold(f64::MIN, f64::max);
        let next_start = seconds_of_day(&events[next_started]["eventTime"]).unwrap();
        assert!(
            next_start >= last_dispatch,
            "{next} started at {next_start} s, before {first}'s last SendBatch at {last_dispatch} s"
        );
    }
    app.stop().await;
}

/// `2026-11-28T11:15:24.88Z` as seconds since midnight (the test runs within seconds).
fn seconds_of_day(time: &serde_json::Value) -> Option<f64> {
    let clock = time.as_str()?.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = clock.split(':').map(|p| p.parse::<f64>().ok());
    Some(parts.next()?? * 3600.0 + parts.next()?? * 60.0 + parts.next()??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_replaced_within_the_heartbeat_timeout_with_the_default_policy() {
    // The seed's SendBatch timeouts (900 s start-to-close, 1200 s schedule-to-close) and
    // the default heartbeat timeout: only the heartbeat can hand a killed worker's batches
    // to the next worker in seconds. Without it this run stalls for 15 minutes.
    let policy = Policy {
        backoff_ms: vec![200, 400, 800],
        redrive_waves_ms: vec![1_000, 2_000],
        redrive_every_ms: 0,
        ..Policy::default()
    };
    assert_eq!(policy.send_start_to_close_ms, 900_000);
    let faults = Faults {
        latency_ms: 1_000,
        ..Faults::default()
    };
    let app = TestApp::spawn_without_worker("kill-default", faults).await;
    let n = app.seed_grades(4, 400).await;
    let mut worker = app.spawn_worker_process();
    let id = app.start_sync(policy.clone()).await;
    app.wait_for_batches(3).await;
    worker.kill().expect("SIGKILL the worker");
    let killed_at = std::time::Instant::now();
    worker.wait().unwrap();
    // What was already at the API when the worker died still commits; count from there.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = app.ledger().await.batches_committed;
    let mut worker = app.spawn_worker_process();
    let mut stall = None;
    for _ in 0..1_200 {
        if app.ledger().await.batches_committed > before {
            stall = Some(killed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stall = stall.expect("the new worker sent within a minute");
    eprintln!("stall from kill to the next commit: {stall:?}");
    let limit = Duration::from_millis(policy.send_heartbeat_timeout_ms) + Duration::from_secs(25);
    assert!(
        stall < limit,
        "stall {stall:?} is past the heartbeat timeout"
    );
    let summary = app.result(&id).await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert!(summary.complete, "{summary:?}");
    let ledger = app.ledger().await;
    assert_applied_once(&ledger, n);
    assert_ledger_clean(&ledger);
    app.stop().await;
}
