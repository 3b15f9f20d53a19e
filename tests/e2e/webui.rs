//! The run at a glance in the real Temporal Web UI: a dev server of the test's own with its
//! UI, `gradesync setup` on it, a quarter with a retry in it, and headless Chromium reading
//! the pages a person would open (the quarter's run, a school's run, the filtered list).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gradesync::commands::sync::{pending_in, start_counted};
use gradesync::datagen::{self, DataSpec};
use gradesync_activities::model::{Policy, Verdict};
use gradesync_govapi::sim::{Faults, SimConfig};
use tokio::process::{Child, Command};

use crate::helpers::{TestApp, free_port, outage, quarter, unique_quarter, workflow_id_of};

/// A dev server with its Web UI and no gradesync search attributes (setup adds them).
struct UiServer {
    _child: Child,
    address: String,
    ui: String,
}

async fn ui_server(dir: &Path) -> UiServer {
    let (port, ui_port) = (free_port(), free_port());
    let child = Command::new("temporal")
        .args(["server", "start-dev", "--ip", "127.0.0.1"])
        .args([
            "--port",
            &port.to_string(),
            "--ui-port",
            &ui_port.to_string(),
        ])
        .arg("--db-filename")
        .arg(dir.join("temporal.db"))
        .args(["--log-level", "error"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("`temporal server start-dev` runs (scripts/ensure-tools.sh installs it)");
    let address = format!("127.0.0.1:{port}");
    let ui = format!("http://127.0.0.1:{ui_port}");
    for _ in 0..450 {
        if gradesync::devserver::answers(&address).await && gradesync::devserver::answers(&ui).await
        {
            return UiServer {
                _child: child,
                address,
                ui,
            };
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the dev server did not answer on {address} and {ui}");
}

/// Chromium's flags for a headless page load on a machine without a display or sandbox.
const CHROMIUM: [&str; 6] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
];

/// The page's DOM once the UI's scripts have run (virtual time, so no sleeping).
async fn render(url: &str, profile: &Path, extra: &[&str]) -> String {
    let out = Command::new("chromium")
        .args(CHROMIUM)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=15000", "--window-size=1400,1000"])
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), out)
        .await
        .expect("chromium rendered the page within 90 s")
        .expect("chromium runs (scripts/ensure-tools.sh installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text a person reads: tags, scripts and styles removed, entities decoded.
fn visible_text(dom: &str) -> String {
    let mut text = String::with_capacity(dom.len() / 2);
    let mut rest = dom;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        text.push(' ');
        let tag = &rest[open..];
        let skip_to = ["<style", "<script"]
            .iter()
            .find(|t| tag.starts_with(**t))
            .map(|t| format!("</{}", &t[1..]));
        let end = match skip_to {
            Some(close) => tag.find(&close).map_or(tag.len(), |i| i + close.len()),
            None => 0,
        };
        let tail = &tag[end..];
        rest = tail.find('>').map_or("", |i| &tail[i + 1..]);
    }
    text.push_str(rest);
    let text = text
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Renders `url` until its text (or a frame it embeds) holds every needle (the list's visibility store and the
/// UI's queries settle in a few seconds); returns the text.
async fn page_showing(url: &str, profile: &Path, needles: &[&str]) -> String {
    let started = Instant::now();
    loop {
        let dom = render(url, profile, &["--dump-dom"]).await;
        let text = visible_text(&dom);
        // The summary and current details render in frames the page addresses by URL.
        let shown = |n: &&str| text.contains(*n) || dom.contains(&urlencode(n));
        let missing: Vec<_> = needles.iter().filter(|n| !shown(n)).collect();
        if missing.is_empty() {
            return text;
        }
        if started.elapsed() > Duration::from_secs(120) {
            panic!("{url} never showed {missing:?}; it shows: {text}");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn workflow_url(ui: &str, id: &str) -> String {
    format!(
        "{ui}/namespaces/default/workflows/{}",
        id.replace('/', "%2F")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_shows_a_finished_quarter_with_its_verdict_and_named_steps() {
    let dir = tempfile::tempdir().unwrap();
    let server = ui_server(dir.path()).await;
    let app = TestApp::spawn_with("webui", SimConfig::default(), Some(server.address.clone()))
        .await
        .with_worker()
        .await;

    // Before setup: the run goes on without search attributes, and the starter says why.
    let early = unique_quarter();
    let spec = DataSpec {
        quarter: early.to_string(),
        schools: 1,
        records_per_school: 20,
        ..DataSpec::default()
    };
    let mut lines = Vec::new();
    datagen::write_jsonl(&spec, &mut lines).unwrap();
    // Record ids of their own: the store and the API know a record by its id alone.
    let lines = String::from_utf8(lines)
        .unwrap()
        .replace("\"rec-", "\"early-rec-");
    app.import_bytes(lines.as_bytes()).await;
    let out = app.gradesync(&["sync", "start", "--quarter", &early.to_string(), "--wait"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("lacks the search attributes") && stderr.contains("gradesync setup"),
        "{stderr}"
    );

    let out = app.gradesync(&["setup"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("registered in namespace default: GradesyncQuarter (Keyword)"),
        "{stdout}"
    );
    let out = app.gradesync(&["setup"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("search attributes already registered"),
        "{stdout}"
    );

    // A quarter whose first sends meet an outage: a Retry5s (the seed's first step) in its
    // one school's run.
    let n = app.seed_grades(1, 120).await;
    app.sim.set_faults(outage()).await;
    let pending = pending_in(&app.worker_args.store.database_url, &quarter())
        .await
        .unwrap();
    let id = start_counted(
        &app.client,
        app.task_queue(),
        &app.workflow_id(),
        quarter(),
        Policy::default(),
        Some(pending),
    )
    .await
    .unwrap();
    app.end_outage_after_first_503().await;
    let summary = app.result(&id).await;
    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.totals.records_synced, n);
    app.sim.set_faults(Faults::default()).await;

    // The list, filtered by the attributes the run upserted: this quarter's run, not the
    // one started before setup.
    let query = format!(
        "GradesyncVerdict=\"complete\" AND GradesyncRecordsSynced={n} AND GradesyncRecordsOwed=0"
    );
    let listed = app.temporal_cli(&["workflow", "list", "--query", &query, "--output", "json"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains(&id), "{listed}");
    let early_id = workflow_id_of(&app, &early);
    assert!(!listed.contains(&early_id), "{listed}");

    // A start under another id, as the schedule's: it hands the quarter to the quarter's
    // own run, and both end with the verdict in the list: a quarter without grades is
    // `empty`, never `complete`.
    let handed = unique_quarter();
    let other = format!("scheduled-{}", uuid::Uuid::new_v4().simple());
    app.start_with_temporal_cli(
        &other,
        &format!(r#"{{"quarter":"{handed}","search_attributes":true}}"#),
    );
    assert_eq!(app.result(&other).await.verdict, Verdict::Empty);
    let query = format!("GradesyncQuarter=\"{handed}\" AND GradesyncVerdict=\"empty\"");
    let listed = listed_until(&app, &query, &[&other, &workflow_id_of(&app, &handed)]).await;
    assert!(listed.contains("\"GradesyncPhase\""), "{listed}");

    let profile = dir.path().join("chromium");
    let page = workflow_url(&server.ui, &id);
    let quarter_page = page_showing(
        &page,
        &profile,
        &["QueryPending", "Reconcile", "\"verdict\" : \"complete\""],
    )
    .await;
    assert!(quarter_page.contains("SchoolSync"), "{quarter_page}");
    let run_id = app
        .workflow_runs_starting_with(&id)
        .into_iter()
        .find(|(workflow, _)| *workflow == id)
        .map(|(_, run)| run)
        .expect("the quarter's run is listed");
    let summary_line = format!("quarter {}: {n} records of 1 school, deadline", quarter());
    page_showing(
        &format!("{page}/{run_id}/user-metadata"),
        &profile,
        &[&summary_line, "phase: Complete"],
    )
    .await;
    page_showing(
        &format!("{page}/{run_id}/search-attributes"),
        &profile,
        &[
            "\"GradesyncVerdict\" : \"complete\"",
            "\"GradesyncPhase\" : \"Complete\"",
            &format!("\"GradesyncRecordsSynced\" : {n}"),
            "\"GradesyncRecordsOwed\" : 0",
        ],
    )
    .await;

    let school = format!("{id}/school/school-001");
    let school_page = page_showing(
        &workflow_url(&server.ui, &school),
        &profile,
        &["SendBatch", "Retry5s", "MarkSynced"],
    )
    .await;
    assert!(school_page.contains("PrepBatch"), "{school_page}");

    let list_url = format!(
        "{}/namespaces/default/workflows?query={}",
        server.ui,
        urlencode(&format!(
            "GradesyncQuarter=\"{}\" AND GradesyncVerdict=\"complete\"",
            quarter()
        ))
    );
    page_showing(&list_url, &profile, &[&id]).await;

    if let Some(path) = std::env::var_os("GRADESYNC_WEBUI_SCREENSHOT") {
        let shot = format!("--screenshot={}", Path::new(&path).display());
        let attributes = format!("{page}/{run_id}/search-attributes");
        render(&attributes, &profile, &[&shot]).await;
    }
    if std::env::var_os("GRADESYNC_RECORD_HISTORIES").is_some() {
        let json = app
            .client
            .get_workflow_handle::<gradesync_workflows::QuarterlySync>(id.clone())
            .fetch_history(Default::default())
            .to_json()
            .await
            .unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/histories/quarterly_sync_search_attributes.json");
        std::fs::write(path, json).unwrap();
    }
    app.stop().await;
}

/// `temporal workflow list --query` until it lists every id (visibility settles shortly
/// after a run closes); returns its JSON.
async fn listed_until(app: &TestApp, query: &str, ids: &[&str]) -> String {
    for _ in 0..50 {
        let out = app.temporal_cli(&["workflow", "list", "--query", query, "--output", "json"]);
        let listed = String::from_utf8_lossy(&out.stdout).into_owned();
        if ids.iter().all(|id| listed.contains(id)) {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("`temporal workflow list --query '{query}'` never listed {ids:?}");
}

/// Percent-encodes a query string value (the UI reads `?query=` from the address).
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
