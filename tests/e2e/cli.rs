//! The `gradesync` binary as users and their scripts meet it: the schedule, exit codes and
//! one-line errors.

use std::process::{Command, Output};

use crate::helpers::{TestApp, temporal_address, unique_quarter};
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
    // gradesync reads that calendar back as the cron it was created with.
    let described = String::from_utf8_lossy(&ours.stdout);
    let cron = described
        .lines()
        .find(|l| l.trim_start().starts_with("cron:"))
        .unwrap_or_else(|| panic!("no cron line: {described}"));
    assert_eq!(cron.trim(), "cron:      0 2 1 */3 *  (UTC)", "{described}");
    assert!(
        described
            .lines()
            .any(|l| l.trim_start().starts_with("next:")),
        "{described}"
    );
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

/// A quarter without a single grade (a typo in its name, an import not done) is never
/// `complete`: the run ends `empty` and the command exits 4 saying what to check. A quarter
/// that has not begun is refused before anything starts, unless forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_quarter_is_not_complete_and_a_future_one_is_refused() {
    let app = TestApp::spawn("empty-quarter", Faults::default()).await;
    // The store holds grades, of another quarter.
    app.seed_grades(1, 5).await;
    let empty = unique_quarter().to_string();
    let out = app.gradesync(&["sync", "start", "--quarter", &empty, "--wait"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!("quarter {empty} is empty"))
            && err.contains("gradesync import")
            && err.contains("GRADESYNC_SOURCE"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("empty"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let shown = app.gradesync(&["report", "show", "--quarter", &empty]);
    assert_eq!(shown.status.code(), Some(4), "{}", stderr(&shown));
    assert!(String::from_utf8_lossy(&shown.stdout).contains(&format!("quarter {empty}: empty")));

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let current = gradesync_govapi::Quarter::at(now);
    // The quarter after the current one: it begins within three months.
    let next = gradesync_govapi::Quarter::at(current.begins_at_unix_secs() + 100 * 86_400);
    let refused = app.gradesync(&["sync", "start", "--quarter", &next.to_string()]);
    let err = stderr(&refused);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("quarter {next} has not begun"))
            && err.contains(&format!("the current quarter is {current}"))
            && err.contains("--force"),
        "{err}"
    );
    let id = gradesync::commands::sync::workflow_id(&next, app.task_queue());
    let listed = app.temporal_cli(&["workflow", "describe", "--workflow-id", &id]);
    assert!(!listed.status.success(), "a refused start started {id}");
    let forced = app.gradesync(&["sync", "start", "--quarter", &next.to_string(), "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_eq!(
        app.result(&id).await.verdict,
        gradesync_activities::model::Verdict::Empty
    );
    app.stop().await;
}
