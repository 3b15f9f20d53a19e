//! The operator's side of a `gradesync worker` process: `/metrics` whose series move during
//! a run, probes that name the dependency that is down, a drain on SIGTERM that loses and
//! doubles nothing and exits 0 within the grace period, and log lines that say where they
//! belong.

use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gradesync_activities::model::Policy;
use gradesync_govapi::sim::{Faults, SimConfig};
use serde_json::Value;

use crate::helpers::*;

fn http() -> reqwest::Client {
    gradesync_activities::http::client_builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

async fn get(url: &str) -> (u16, String) {
    let answer = http().get(url).send().await.expect("the listener answers");
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap())
}

/// The value of one series, spelled as Prometheus renders it (`name{a="1",b="2"}`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The sum of every series of a metric, whatever its labels.
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `gradesync worker` serving its probes on `port`, JSON logs into `log`.
fn worker_with_metrics(app: &TestApp, port: u16, log: &Path) -> Child {
    let file = std::fs::File::create(log).unwrap();
    app.worker_command()
        .env("GRADESYNC_METRICS_LISTEN", format!("127.0.0.1:{port}"))
        .env("GRADESYNC_LOG_FORMAT", "json")
        .env("GRADESYNC_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("the gradesync binary starts")
}

async fn wait_ready(base: &str) {
    for _ in 0..300 {
        if let Ok(answer) = http().get(format!("{base}/readyz")).send().await
            && answer.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{base}/readyz never answered 200");
}

/// SIGTERM, as an orchestrator stops a container; returns how the process ended and when.
fn terminate(child: &mut Child) -> (ExitStatus, Duration) {
    let sent = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM ran");
    let ended = child.wait().unwrap();
    (ended, sent.elapsed())
}

fn json_lines(log: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log).unwrap();
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log written to a file"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Batches of 10 so a small quarter takes long enough at 2 requests/s to be watched.
fn small_batches(policy: Policy) -> Policy {
    Policy {
        max_batch_records: 10,
        ..policy
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_during_a_run_and_every_activity_line_names_its_ids() {
    let faults = Faults {
        latency_ms: 200,
        ..Faults::default()
    };
    let app = TestApp::spawn_without_worker("ops-metrics", faults).await;
    let n = app.seed_grades(4, 100).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = app.dir.path().join("worker.log");
    let mut worker = worker_with_metrics(&app, port, &log);
    wait_ready(&base).await;
    let (status, body) = get(&format!("{base}/healthz")).await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    for line in ["temporal ok", "store ok", "gov-api ok"] {
        assert!(body.contains(line), "{line} missing from /readyz: {body}");
    }

    let id = app.start_sync(small_batches(fast_policy())).await;
    let q = QUARTER;
    // The quarter's gauges appear once the watcher has seen the run (every 15 s).
    let started = Instant::now();
    let mid = loop {
        let (_, text) = get(&format!("{base}/metrics")).await;
        if sample(
            &text,
            &format!("gradesync_quarter_deadline_timestamp_seconds{{quarter=\"{q}\"}}"),
        )
        .is_some()
        {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no quarter gauges within 60 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let deadline = sample(
        &mid,
        &format!("gradesync_quarter_deadline_timestamp_seconds{{quarter=\"{q}\"}}"),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let hours = (deadline - now) / 3600.0;
    assert!(
        (46.0..=47.0).contains(&hours),
        "deadline {hours:.2} h away, the policy says 47 h"
    );
    let owed = sample(
        &mid,
        &format!("gradesync_quarter_records{{quarter=\"{q}\",state=\"owed\"}}"),
    )
    .expect("records owed while running");
    assert!(owed > 0.0 && owed <= n as f64, "owed {owed} of {n}");
    for sdk in [
        "temporal_num_pollers",
        "temporal_worker_task_slots_available",
    ] {
        assert!(total(&mid, sdk) > 0.0, "no SDK series {sdk}:\n{mid}");
    }

    let summary = app.result(&id).await;
    assert!(summary.complete, "{summary:?}");
    let (_, end) = get(&format!("{base}/metrics")).await;
    let synced = format!("gradesync_records_total{{outcome=\"synced\",quarter=\"{q}\"}}");
    assert_eq!(sample(&end, &synced), Some(n as f64), "{end}");
    let sent = format!("gradesync_batches_total{{outcome=\"sent\",quarter=\"{q}\"}}");
    let (sent_mid, sent_end) = (sample(&mid, &sent).unwrap_or(0.0), sample(&end, &sent));
    assert!(sent_end >= Some(40.0), "{sent_end:?} batches sent");
    assert!(sent_end > Some(sent_mid), "batches sent did not move");
    for moving in [
        "gradesync_rate_gate_slots_total",
        "gradesync_api_answers_total",
        "temporal_activity_execution_latency_count",
    ] {
        assert!(
            total(&end, moving) > total(&mid, moving),
            "{moving} did not move: {} then {}",
            total(&mid, moving),
            total(&end, moving)
        );
    }
    assert!(
        sample(&end, "gradesync_api_answers_total{class=\"2xx\"}") >= Some(41.0),
        "{end}"
    );
    // The shipped dashboard only charts SDK series a worker really exports.
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/gradesync-dashboard.json"),
    )
    .unwrap();
    for name in dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("temporal_"))
    {
        let base = name.strip_suffix("_bucket").unwrap_or(name);
        assert!(
            end.lines().any(|l| l.starts_with(base)),
            "the dashboard charts {name}, which the worker does not export"
        );
    }
    let (ended, _) = terminate(&mut worker);
    assert!(ended.success(), "worker exit: {ended}");

    let lines = json_lines(&log);
    let in_activity = |name: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["span"]["activity"] == name)
            .collect()
    };
    let sends = in_activity("SendBatch");
    assert!(sends.len() >= 40, "{} SendBatch lines", sends.len());
    for line in &sends {
        let span = &line["span"];
        for field in ["workflow_id", "run_id", "batch_id", "school_id", "quarter"] {
            assert!(
                span[field].as_str().is_some_and(|v| !v.is_empty()),
                "{field} missing: {line}"
            );
        }
        assert!(span["attempt"].as_u64() >= Some(1), "{line}");
        assert!(
            span["workflow_id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{id}/school/")),
            "{line}"
        );
    }
    let marks = in_activity("MarkSynced");
    assert!(!marks.is_empty());
    for line in marks {
        assert_eq!(line["span"]["quarter"], q, "{line}");
        assert!(line["span"]["school_id"].is_string(), "{line}");
    }
    assert!(
        in_activity("QueryPending")
            .iter()
            .all(|l| l["span"]["workflow_id"] == id.as_str()),
        "QueryPending lines name the quarter's workflow"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_drains_exits_0_and_loses_nothing_with_the_default_policy() {
    // The seed's timers and the default 25 s grace: the drain is the point.
    let policy = small_batches(Policy::default());
    let faults = Faults {
        latency_ms: 1_000,
        ..Faults::default()
    };
    let app = TestApp::spawn_without_worker("ops-drain", faults).await;
    let n = app.seed_grades(4, 60).await;
    let port = free_port();
    let log = app.dir.path().join("first.log");
    let mut first = worker_with_metrics(&app, port, &log);
    wait_ready(&format!("http://127.0.0.1:{port}")).await;
    let id = app.start_sync(policy).await;
    app.wait_for_batches(3).await;
    let (ended, took) = terminate(&mut first);
    eprintln!("drained in {took:?}");
    assert!(ended.success(), "worker exit: {ended}");
    assert!(
        took < Duration::from_secs(25),
        "took {took:?}, past the 25 s grace period"
    );
    let stopping = json_lines(&log)
        .into_iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("stopping"))
        })
        .expect("the worker said it was stopping");
    assert_eq!(stopping["fields"]["signal"], "SIGTERM");
    let committed = app.ledger().await.batches_committed;
    assert!(
        committed < 24,
        "the run was over before the stop ({committed} of 24 batches)"
    );

    let mut second = app.spawn_worker_process();
    let summary = app.result(&id).await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(summary.complete, "{summary:?}");
    let ledger = app.ledger().await;
    assert_applied_once(&ledger, n);
    assert_ledger_clean(&ledger);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_slower_than_the_grace_period_is_handed_back_and_applied_once() {
    // Every answer takes 6 s; the worker may wait 2 s. Its SendBatch is cancelled and
    // handed back; the next worker sends the same bytes under the same key at once.
    let faults = Faults {
        latency_ms: 6_000,
        ..Faults::default()
    };
    let app = TestApp::spawn_without_worker("ops-handback", faults).await;
    let n = app.seed_grades(2, 30).await;
    let log = app.dir.path().join("first.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut first = app
        .worker_command()
        .env("GRADESYNC_SHUTDOWN_GRACE_SECS", "2")
        .env("GRADESYNC_HTTP_TIMEOUT_SECS", "120")
        .env("GRADESYNC_LOG_FORMAT", "json")
        .env("GRADESYNC_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let id = app.start_sync(small_batches(Policy::default())).await;
    // A batch is in flight once the store says so and its request has had time to leave.
    let started = Instant::now();
    while app.in_flight_batches().await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing in flight"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (ended, took) = terminate(&mut first);
    eprintln!("stopped in {took:?}");
    assert!(ended.success(), "worker exit: {ended}");
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} with a 2 s grace period"
    );
    let handed_back = json_lines(&log)
        .into_iter()
        .filter(|l| {
            l["span"]["activity"] == "SendBatch"
                && l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("activity cancelled"))
        })
        .count();
    assert!(handed_back >= 1, "no SendBatch was handed back");

    let mut second = app
        .worker_command()
        .env("GRADESYNC_HTTP_TIMEOUT_SECS", "120")
        .env("GRADESYNC_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let summary = app.result(&id).await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(summary.complete, "{summary:?}");
    // Handed back, not failed: no retry step was spent on the drained attempt.
    assert_eq!(summary.totals.retries, 0, "{summary:?}");
    let ledger = app.ledger().await;
    assert_applied_once(&ledger, n);
    assert_ledger_clean(&ledger);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_the_dependency_that_is_down() {
    // A Temporal server of this test's own, to stop.
    let dir = tempfile::tempdir().unwrap();
    let server = gradesync::devserver::start(free_port(), None, &dir.path().join("t.db"))
        .await
        .unwrap();
    let app = TestApp::spawn_with(
        "ops-readyz",
        SimConfig::default(),
        Some(server.address.clone()),
    )
    .await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut worker = worker_with_metrics(&app, port, &app.dir.path().join("worker.log"));
    wait_ready(&base).await;

    if let Some(admin) = gradesync_activities::store::scratch::test_server() {
        // PostgreSQL: the grades database goes away.
        let url = &app.worker_args.store.database_url;
        let name = url.rsplit('/').next().unwrap().split('?').next().unwrap();
        let pool = sqlx::PgPool::connect(&admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let body = wait_for_down(&base, "store down").await;
        assert!(body.contains("temporal ok"), "{body}");
    }

    drop(server); // kills the dev server
    let body = wait_for_down(&base, "temporal down").await;
    assert!(body.contains("gov-api ok"), "{body}");
    // Liveness is not readiness: the process still answers.
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    worker.kill().unwrap();
    worker.wait().unwrap();
}

/// Polls `/readyz` until it answers 503 with `line`; returns the body.
async fn wait_for_down(base: &str, line: &str) -> String {
    let mut last = String::new();
    for _ in 0..60 {
        let (status, body) = get(&format!("{base}/readyz")).await;
        if status == 503 && body.contains(line) {
            return body;
        }
        last = format!("{status}: {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("/readyz never said `{line}`; last answer {last}");
}
