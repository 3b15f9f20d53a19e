//! Reports kept in the database: after a sync, `gradesync report show|export|list` run as
//! a separate process from another working directory and home, with nothing but the
//! database URL, as on a host that did not run Reconcile. What they print is what the run
//! produced, byte for byte, with or without report files.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use gradesync_activities::model::{SyncSummary, Verdict};
use gradesync_activities::report::parse_db_reference;
use gradesync_govapi::Quarter;
use gradesync_govapi::sim::{Faults, RejectRule};
use serde_json::Value;

use crate::helpers::{TestApp, fast_policy, unique_quarter, workflow_id_of};

/// A host that shares only the database with the workers: its own empty working
/// directory and home, no Temporal or report settings in its environment.
struct OtherHost {
    cwd: tempfile::TempDir,
    home: tempfile::TempDir,
    database_url: String,
}

impl OtherHost {
    fn new(app: &TestApp) -> Self {
        Self {
            cwd: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
            database_url: app.worker_args.store.database_url.clone(),
        }
    }

    fn gradesync(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gradesync"))
            .args(args)
            .env_clear()
            .env("HOME", self.home.path())
            .env("GRADESYNC_DATABASE_URL", &self.database_url)
            .current_dir(self.cwd.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("the gradesync binary runs")
    }

    /// `report ARGS --quarter Q`.
    fn report(&self, args: &[&str], q: &Quarter) -> Output {
        let q = q.to_string();
        let mut all = vec!["report"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--quarter", &q]);
        self.gradesync(&all)
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `gradesync sync start --quarter Q --wait` with this test's worker settings.
fn sync_start_wait(app: &TestApp, q: &Quarter) -> (Option<i32>, String) {
    let policy = serde_json::to_string(&fast_policy()).unwrap();
    let out = app.gradesync(&[
        "sync",
        "start",
        "--quarter",
        &q.to_string(),
        "--wait",
        "--policy",
        &policy,
    ]);
    (out.status.code(), text(&out))
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flat_map(|e| {
            let path = e.unwrap().path();
            if path.is_dir() {
                files_under(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// The CSV's rows as `(school, record, state, batch, reason)`, after checking its header.
fn csv_rows(csv: &str) -> Vec<[String; 5]> {
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("school_id,record_id,state,batch_id,reason")
    );
    lines
        .map(|line| {
            // Ids, state and batch never hold a comma; the reason may (quoted).
            let mut parts = line.splitn(5, ',').map(str::to_string);
            std::array::from_fn(|_| parts.next().unwrap_or_default())
        })
        .collect()
}

/// The stamp of a run's report as the summary names it when no file was written.
fn stored_stamp(summary: &SyncSummary, q: &Quarter) -> String {
    let (quarter, stamp) = parse_db_reference(&summary.reconcile.report_json)
        .unwrap_or_else(|| panic!("a database reference: {:?}", summary.reconcile));
    assert_eq!(quarter, q.to_string());
    assert_eq!(summary.reconcile.report_csv, summary.reconcile.report_json);
    stamp.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_is_shown_and_exported_from_a_host_that_did_not_run_reconcile() {
    let faults = Faults {
        reject_rules: vec![RejectRule {
            field: "grade".into(),
            equals: "F".into(),
            message: "failing grades need a review note".into(),
        }],
        ..Faults::default()
    };
    let app = TestApp::spawn_without_worker("report-db", faults)
        .await
        .without_report_files()
        .with_worker()
        .await;
    let q = unique_quarter();
    app.seed_grades_in(&q, 2, 100).await;
    let (code, out) = sync_start_wait(&app, &q);
    assert_eq!(code, Some(4), "{out}");
    assert!(
        out.contains(&format!("gradesync report show --quarter {q}")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "`gradesync report export --quarter {q} --format csv`"
        )),
        "{out}"
    );
    let id = workflow_id_of(&app, &q);
    let summary = app.result(&id).await;
    assert_eq!(summary.verdict, Verdict::NeedsCorrection, "{summary:?}");
    let stamp = stored_stamp(&summary, &q);

    // No report file anywhere: not in the test's directory, not in the worker's working
    // directory (where the old default `reports/` was).
    let written: Vec<_> = files_under(app.dir.path())
        .into_iter()
        .chain(files_under(Path::new("reports")))
        .filter(|p| p.to_string_lossy().contains("reconcile-"))
        .collect();
    assert!(written.is_empty(), "report files written: {written:?}");
    let compliance = app.compliance.texts();
    assert!(
        compliance
            .iter()
            .any(|t| t.contains(&format!("gradesync report show --quarter {q}"))),
        "{compliance:?}"
    );

    let host = OtherHost::new(&app);
    let rejected: BTreeSet<String> = app
        .rejections(&q)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(!rejected.is_empty(), "some F grades exist in the data");

    // show: the verdict, counts, records by state, the first rows; exit as the verdict.
    let show = host.report(&["show", "--limit", "3"], &q);
    let shown = text(&show);
    assert_eq!(show.status.code(), Some(4), "{shown}");
    assert!(
        shown.contains(&format!("quarter {q}: needs_correction")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("report {stamp} (the latest of 1 stored)")),
        "{shown}"
    );
    assert!(shown.contains(&format!("by workflow {id}")), "{shown}");
    let n = rejected.len();
    assert!(
        shown.contains(&format!("records listed: {n} ({n} rejected)")),
        "{shown}"
    );
    let listed_rows = shown
        .lines()
        .filter(|l| rejected.iter().any(|r| l.contains(r.as_str())))
        .count();
    assert_eq!(listed_rows, 3.min(n), "{shown}");
    if n > 3 {
        assert!(shown.contains(&format!("… {} more", n - 3)), "{shown}");
    }

    // export json: the run's verdict, workflow and records.
    let json_out = host.report(&["export", "--format", "json"], &q);
    assert!(json_out.status.success(), "{}", text(&json_out));
    let json: Value = serde_json::from_slice(&json_out.stdout).expect("the export is JSON");
    assert_eq!(json["verdict"], summary.verdict.as_str());
    assert_eq!(json["quarter"], q.to_string());
    assert_eq!(json["workflow_id"], id);
    assert_eq!(
        json["counts"]["store"]["rejected"].as_u64(),
        Some(summary.reconcile.rejected)
    );
    let json_ids: BTreeSet<String> = json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(json_ids, rejected);

    // export csv to a file, relative to the other host's directory: the stored bytes.
    let csv_out = host.report(&["export", "--format", "csv", "--output", "out.csv"], &q);
    assert!(csv_out.status.success(), "{}", text(&csv_out));
    let csv = std::fs::read(host.cwd.path().join("out.csv")).unwrap();
    let stored = app.store.latest_report(&q).await.unwrap().unwrap();
    assert_eq!(csv, stored.csv.as_bytes());
    let rows = csv_rows(std::str::from_utf8(&csv).unwrap());
    assert_eq!(rows.len(), n, "{rows:?}");
    for [school, record, state, batch, reason] in &rows {
        assert!(school.starts_with("school-"), "{school}");
        assert!(rejected.contains(record), "{record}");
        assert_eq!(state, "rejected");
        assert!(!batch.is_empty(), "{record} names its batch");
        assert!(
            reason.contains("failing grades need a review note"),
            "{reason}"
        );
    }
    let by_stamp = host.report(&["export", "--format", "csv", "--stamp", &stamp], &q);
    assert!(by_stamp.status.success(), "{}", text(&by_stamp));
    assert_eq!(by_stamp.stdout, csv);

    let list = host.report(&["list"], &q);
    assert!(list.status.success(), "{}", text(&list));
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&stamp) && l.contains("needs_correction") && l.contains(&id)),
        "{listed}"
    );

    // The other host wrote nothing but the file it was asked for.
    let left: Vec<_> = files_under(host.cwd.path());
    assert_eq!(left, [host.cwd.path().join("out.csv")]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_files_when_a_directory_is_set_are_the_stored_report_byte_for_byte() {
    let app = TestApp::spawn("report-files", Faults::default()).await;
    let q = unique_quarter();
    let host = OtherHost::new(&app);

    let none = host.report(&["show"], &q);
    assert_eq!(none.status.code(), Some(2), "{}", text(&none));
    let message = String::from_utf8_lossy(&none.stderr);
    assert_eq!(
        message.trim_end(),
        format!(
            "gradesync: no report for quarter {q} in {}; run the sync first or check \
             GRADESYNC_DATABASE_URL",
            app.store.location()
        )
    );
    assert_eq!(host.report(&["list"], &q).status.code(), Some(2));

    app.seed_grades_in(&q, 1, 50).await;
    let (code, out) = sync_start_wait(&app, &q);
    assert_eq!(code, Some(0), "{out}");
    let summary = app.result(&workflow_id_of(&app, &q)).await;
    assert!(
        Path::new(&summary.reconcile.report_json).starts_with(app.report_dir()),
        "{:?}",
        summary.reconcile
    );

    let show = host.report(&["show"], &q);
    assert_eq!(show.status.code(), Some(0), "{}", text(&show));
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(shown.contains(&format!("quarter {q}: complete")), "{shown}");
    assert!(shown.contains("records listed: 0"), "{shown}");
    for (format, file) in [
        ("json", &summary.reconcile.report_json),
        ("csv", &summary.reconcile.report_csv),
    ] {
        let export = host.report(&["export", "--format", format], &q);
        assert!(export.status.success(), "{}", text(&export));
        assert_eq!(export.stdout, std::fs::read(file).unwrap(), "{format}");
    }
    app.stop().await;
}
