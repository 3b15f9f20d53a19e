//! The `gradesync` binary as users and their scripts meet it: the schedule, exit codes and
//! one-line errors.

use std::process::{Command, Output};

use crate::helpers::{TestApp, temporal_address};
use gradesync_govapi::sim::Faults;

fn gradesync(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradesync"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("the gradesync binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_create_is_idempotent_and_visible_to_the_temporal_cli() {
    let address = temporal_address().await;
    let id = format!("gradesync-quarterly-{}", uuid::Uuid::new_v4().simple());
    let env = [("TEMPORAL_ADDRESS", address.as_str())];
    let first = gradesync(&["schedule", "create", "--schedule-id", &id], &env);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(String::from_utf8_lossy(&first.stdout).contains("created"));
    let second = gradesync(&["schedule", "create", "--schedule-id", &id], &env);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(String::from_utf8_lossy(&second.stdout).contains("updated"));

    let out = Command::new("temporal")
        .args([
            "schedule",
            "describe",
            "--schedule-id",
            &id,
            "--address",
            &address,
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("QuarterlySync"), "{text}");
    assert!(
        text.contains("OVERLAP_POLICY_SKIP") || text.contains("\"overlapPolicy\": \"Skip\""),
        "{text}"
    );
    // Temporal stores the cron as a calendar: 02:00 on day 1 of every third month.
    assert!(
        text.contains("\"dayOfMonth\"") && text.contains("\"month\""),
        "{text}"
    );

    let ours = gradesync(&["schedule", "describe", "--schedule-id", &id], &env);
    assert!(ours.status.success(), "{}", stderr(&ours));
    let deleted = gradesync(&["schedule", "delete", "--schedule-id", &id], &env);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let gone = gradesync(&["schedule", "describe", "--schedule-id", &id], &env);
    assert_eq!(gone.status.code(), Some(2), "{}", stderr(&gone));
    assert!(stderr(&gone).contains("does not exist"));
}

#[test]
fn malformed_quarter_is_a_usage_error() {
    let out = gradesync(&["sync", "start", "--quarter", "2026-Q5"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("YYYY-Qn"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
}

#[test]
fn unreachable_temporal_says_how_to_start_one() {
    let out = gradesync(
        &["sync", "start", "--quarter", "2026-Q4"],
        &[("TEMPORAL_ADDRESS", "127.0.0.1:9")],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach Temporal") && err.contains("temporal server start-dev"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn unreachable_database_is_reported_in_one_line() {
    let out = gradesync(
        &["sync", "status", "--quarter", "2026-Q4"],
        &[(
            "GRADESYNC_DATABASE_URL",
            "sqlite:///proc/no/such/dir/grades.db",
        )],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("GRADESYNC_DATABASE_URL"),
        "{}",
        stderr(&out)
    );
    // A PostgreSQL server that is not there: at once, one line, the password blanked.
    let out = gradesync(
        &["sync", "status", "--quarter", "2026-Q4"],
        &[(
            "GRADESYNC_DATABASE_URL",
            "postgres://gradesync:hunter2@127.0.0.1:1/grades",
        )],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("postgres://gradesync:***@127.0.0.1:1/grades")
            && err.contains("GRADESYNC_DATABASE_URL")
            && !err.contains("hunter2"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_bad_lines_and_keeps_the_good_ones() {
    let app = TestApp::spawn_without_worker("import-cli", Faults::default()).await;
    let file = app.dir.path().join("grades.jsonl");
    let good = r#"{"record_id":"r1","school_id":"s1","student_id":"x","course_code":"M","quarter":"2026-Q3","grade":"A"}"#;
    let bad_quarter = r#"{"record_id":"r2","school_id":"s1","student_id":"x","course_code":"M","quarter":"26Q3","grade":"A"}"#;
    std::fs::write(&file, format!("{good}\nnot json\n{bad_quarter}\n")).unwrap();
    let url = format!("sqlite://{}", app.dir.path().join("cli.db").display());
    let out = gradesync(
        &["import", file.to_str().unwrap()],
        &[("GRADESYNC_DATABASE_URL", &url)],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("line 2:") && err.contains("line 3:"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 new"));
    let missing = gradesync(
        &["import", "/no/such/file.jsonl"],
        &[("GRADESYNC_DATABASE_URL", &url)],
    );
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_each_service_and_exits_by_the_worst() {
    let app = TestApp::spawn_without_worker("check-cli", Faults::default()).await;
    let ok = app.gradesync(&["check"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let lines = String::from_utf8_lossy(&ok.stdout).into_owned();
    for service in ["temporal  ok", "store     ok", "gov-api   ok"] {
        assert!(lines.contains(service), "{lines}");
    }

    let bad_secret = app
        .gradesync_command()
        .env("GRADESYNC_GOV_CLIENT_SECRET", "not-the-secret")
        .arg("check")
        .output()
        .expect("the gradesync binary runs");
    assert_eq!(bad_secret.status.code(), Some(2), "{}", stderr(&bad_secret));
    let err = stderr(&bad_secret);
    assert!(err.contains("GRADESYNC_GOV_CLIENT_SECRET"), "{err}");
    assert!(!err.contains("not-the-secret"), "the secret leaked: {err}");

    let no_api = app
        .gradesync_command()
        .env("GRADESYNC_GOV_API_URL", "http://127.0.0.1:9")
        .arg("check")
        .output()
        .expect("the gradesync binary runs");
    assert_eq!(no_api.status.code(), Some(3), "{}", stderr(&no_api));
    let err = stderr(&no_api);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("cannot reach the government API") && err.contains("GRADESYNC_GOV_API_URL"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // Temporal and the store still answered and say so.
    assert!(String::from_utf8_lossy(&no_api.stdout).contains("store     ok"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_an_unknown_quarter_says_what_to_do() {
    let app = TestApp::spawn_without_worker("unknown-quarter", Faults::default()).await;
    let out = app.gradesync(&["sync", "status", "--quarter", "1999-Q1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("no grades and no runs for quarter 1999-Q1")
            && err.contains("gradesync import"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    app.stop().await;
}

/// The demo syncs data it generates against a fresh simulator: pointed at a database that
/// already holds the quarter (a production store), it refuses before touching anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_refuses_a_database_that_already_holds_the_quarter() {
    let app = TestApp::spawn_without_worker("demo-refuse", Faults::default()).await;
    app.seed_grades(1, 3).await;
    let q = crate::helpers::quarter().to_string();
    let url = app.worker_args.store.database_url.clone();
    let dir = app.dir.path().join("demo");
    let out = gradesync(
        &["demo", "--quarter", &q, "--dir", dir.to_str().unwrap()],
        &[("GRADESYNC_DATABASE_URL", &url)],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(&format!("already holds quarter {q}")), "{err}");
    // Nothing generated, and the quarter's records are as they were.
    assert!(!dir.join(format!("grades-{q}.jsonl")).exists());
    let counts = app
        .store
        .status_counts(&crate::helpers::quarter())
        .await
        .unwrap();
    assert_eq!(counts.iter().map(|c| c.pending).sum::<u64>(), 3);
}
