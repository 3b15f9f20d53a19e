//! Reports kept in the database: after a sync, `gradesync report show|export|list` run as
//! a separate process from another working directory and home, with nothing but the
//! database URL, as on a host that did not run Reconcile. What they print is what the run
//! produced, byte for byte, with or without report files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use gradesync_activities::model::{SyncSummary, Verdict};
use gradesync_activities::report::parse_db_reference;
use gradesync_govapi::Quarter;
use gradesync_govapi::sim::{Faults, RejectRule};
use serde_json::Value;

use crate::helpers::{TestApp, fast_policy, no_redrive, outage, unique_quarter, workflow_id_of};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_shows_the_verdict_and_each_school_and_renders_in_chromium() {
    // F grades are refused by name; after the first batches the API goes down and the
    // rest is dead-lettered (no redrive waves); it comes back for Reconcile.
    let rejecting = Faults {
        reject_rules: vec![RejectRule {
            field: "grade".into(),
            equals: "F".into(),
            message: "failing grades need a review note".into(),
        }],
        ..Faults::default()
    };
    let app = TestApp::spawn_without_worker("report-html", rejecting.clone())
        .await
        .without_report_files()
        .with_worker()
        .await;
    let q = unique_quarter();
    app.seed_grades_in(&q, 3, 150).await;
    let policy = serde_json::to_string(&no_redrive(fast_policy())).unwrap();
    let q_text = q.to_string();
    let mut sync = app
        .gradesync_command()
        .args([
            "sync",
            "start",
            "--quarter",
            &q_text,
            "--wait",
            "--policy",
            &policy,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    app.wait_for_batches(2).await;
    app.sim
        .set_faults(Faults {
            reject_rules: rejecting.reject_rules.clone(),
            ..outage()
        })
        .await;
    // Once nothing is left to send, the API comes back so Reconcile can read its listing.
    loop {
        let counts = app.store.status_counts(&q).await.unwrap();
        if counts.iter().all(|c| c.pending + c.batched == 0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.sim.set_faults(rejecting).await;
    let code = tokio::task::spawn_blocking(move || sync.wait().unwrap().code())
        .await
        .unwrap();
    assert_eq!(code, Some(4));
    let summary = app.result(&workflow_id_of(&app, &q)).await;
    assert_eq!(summary.verdict, Verdict::Incomplete, "{summary:?}");
    assert!(summary.reconcile.rejected > 0, "{summary:?}");
    assert!(summary.reconcile.dead_lettered > 0, "{summary:?}");

    // Exported by a host that shares only the database.
    let host = OtherHost::new(&app);
    let out = host.report(
        &["export", "--format", "html", "--output", "report.html"],
        &q,
    );
    assert!(out.status.success(), "{}", text(&out));
    let path = host.cwd.path().join("report.html");
    let html = std::fs::read_to_string(&path).unwrap();
    let json_out = host.report(&["export", "--format", "json"], &q);
    let json: Value = serde_json::from_slice(&json_out.stdout).unwrap();

    // The verdict at the top, as the JSON says.
    assert_eq!(json["verdict"], "incomplete");
    let verdict_at = html
        .find("data-verdict=\"incomplete\"")
        .expect("the verdict");
    assert!(verdict_at < html.find("id=\"schools\"").unwrap());
    for banned in ["<script", "<link", "src=", "href=", "url(", "@import"] {
        assert!(!html.contains(banned), "{banned} in the page");
    }
    // Each school's counts: the JSON's records by state, the store's synced records.
    let mut listed: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in json["records"].as_array().unwrap() {
        let key = (
            r["school_id"].as_str().unwrap().to_string(),
            r["state"].as_str().unwrap().to_string(),
        );
        *listed.entry(key).or_default() += 1;
    }
    let schools = app.store.status_counts(&q).await.unwrap();
    assert_eq!(schools.len(), 3);
    for s in &schools {
        let n = |state: &str| {
            listed
                .get(&(s.school_id.clone(), state.to_string()))
                .copied()
                .unwrap_or(0)
                .to_string()
        };
        let id = &s.school_id;
        assert_eq!(school_cell(&html, id, "rejected"), n("rejected"), "{id}");
        assert_eq!(school_cell(&html, id, "dead"), n("dead"), "{id}");
        assert_eq!(school_cell(&html, id, "missing"), n("missing"), "{id}");
        assert_eq!(school_cell(&html, id, "unsent"), n("unsent"), "{id}");
        let missing: u64 =
            n("missing").parse::<u64>().unwrap() + n("mismatch").parse::<u64>().unwrap();
        assert_eq!(
            school_cell(&html, id, "confirmed"),
            (s.synced - missing).to_string(),
            "{id}"
        );
        let all = s.pending + s.batched + s.synced + s.rejected + s.dead;
        assert_eq!(school_cell(&html, id, "records"), all.to_string(), "{id}");
    }
    assert!(html.contains("failing grades need a review note"));
    assert!(
        html.contains("the API is unavailable (503)"),
        "the dead letters' reason"
    );

    // Headless Chromium: the DOM it built holds both plots with their data, ...
    let dom = chromium(&[&"--dump-dom".to_string()], &path);
    assert!(dom.contains("data-verdict=\"incomplete\""), "{dom}");
    let points = attr_after(&dom, r#"class="series confirmed" data-points=""#);
    assert!(points >= 2, "the confirmed line has {points} points");
    assert!(dom.contains(r#"class="bar c-2xx""#), "2xx answers plotted");
    assert!(
        dom.contains(r#"class="bar c-5xx""#),
        "the outage's 503s plotted"
    );
    assert!(
        dom.contains(r#"class="bar c-4xx""#),
        "the 400s naming F grades plotted"
    );
    assert!(dom.contains(r#"class="deadline""#), "the deadline marked");
    // ... and it renders: a screenshot that is not blank, with the red verdict banner.
    let png = host.cwd.path().join("report.png");
    chromium(
        &[
            &format!("--screenshot={}", png.display()),
            &"--window-size=1100,1400".to_string(),
            &"--hide-scrollbars".to_string(),
        ],
        &path,
    );
    let (width, height, pixels) = decode_png(&png);
    assert_eq!((width, height), (1100, 1400));
    let distinct: BTreeSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(distinct.len() > 50, "{} colours: blank?", distinct.len());
    let banner = pixels.iter().filter(|p| **p == [0xb0, 0x2a, 0x37]).count();
    assert!(banner > 20_000, "{banner} pixels of the incomplete banner");
    app.stop().await;
}

/// The number in the `<td class="n {col}">` cell of `school`'s row.
fn school_cell(html: &str, school: &str, col: &str) -> String {
    let start = html
        .find(&format!("<tr data-school=\"{school}\""))
        .unwrap_or_else(|| panic!("no row for {school}"));
    let row = &html[start..start + html[start..].find("</tr>").unwrap()];
    let open = format!("<td class=\"n {col}\">");
    let at = row
        .find(&open)
        .unwrap_or_else(|| panic!("no {col} in {row}"))
        + open.len();
    row[at..at + row[at..].find('<').unwrap()].to_string()
}

/// The integer right after `prefix` (an attribute's opening) in `text`.
fn attr_after(text: &str, prefix: &str) -> u64 {
    let at = text.find(prefix).unwrap_or_else(|| panic!("no {prefix}")) + prefix.len();
    text[at..at + text[at..].find('"').unwrap()]
        .parse()
        .unwrap()
}

/// Debian's chromium, headless, on `page`; its standard output. Nothing on the network.
fn chromium(args: &[&String], page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (scripts/ensure-tools.sh installs it)");
    assert!(out.status.success(), "chromium: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Width, height and RGB pixels of a PNG.
fn decode_png(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, pixels)
}
