//! The seed's DynamoDB table as the grades source, on moto's local DynamoDB: a quarter read
//! through the `sync_status` index ends complete with every item marked synced there; an
//! item changed while its batch is in flight is never marked over its new grade and goes
//! in a later batch; throttling is waited out; a SIGKILLed worker loses and doubles nothing;
//! items that arrive or go back to pending mid-run reach the API and the table before the
//! verdict; items of other quarters, broken or not, never touch the quarter's counts.
//! The workers are `gradesync worker` processes configured as users configure them
//! (GRADESYNC_SOURCE, AWS_ENDPOINT_URL, AWS_REGION, credentials in the environment).

use std::process::Child;
use std::time::Duration;

use aws_sdk_dynamodb::types::ProjectionType;
use gradesync::datagen::{self, DataSpec};
use gradesync_activities::model::Policy;
use gradesync_govapi::sim::Faults;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::Value;

use crate::helpers::{TestApp, assert_ledger_clean, fast_policy, quarter};
use crate::moto::{self, Moto, Throttler};

/// `schools x per_school` generated records (about 8 KB each), as the table holds them.
fn records(schools: usize, per_school: usize) -> Vec<Value> {
    let spec = DataSpec {
        quarter: quarter().to_string(),
        schools,
        records_per_school: per_school,
        seed: 3,
        ..DataSpec::default()
    };
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    (0..schools)
        .flat_map(|s| (0..per_school).map(move |n| (s, n)))
        .map(|(s, n)| datagen::record(&mut rng, &spec, s, n))
        .collect()
}

async fn table_with(records: &[Value]) -> Moto {
    let moto = Moto::start().await;
    moto.create_seed_table().await;
    moto.put_pending(records).await;
    moto
}

/// A worker process reading the table through `endpoint`.
fn worker(app: &TestApp, endpoint: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(app.dir.path().join("worker.log"))
        .unwrap();
    app.worker_command()
        .envs(Moto::env(endpoint))
        .env("GRADESYNC_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the gradesync binary starts")
}

fn stop(mut worker: Child) {
    worker.kill().unwrap();
    worker.wait().unwrap();
}

/// Every item is `synced`, names a batch the API committed it in, and a time.
async fn assert_every_item_synced(moto: &Moto, app: &TestApp, n: usize) {
    let items = moto.items().await;
    assert_eq!(items.len(), n);
    let ledger = app.ledger().await;
    for item in &items {
        let id = moto::text(item, "record_id").unwrap();
        assert_eq!(moto::text(item, "sync_status"), Some("synced"), "{id}");
        let batch: uuid::Uuid = moto::text(item, "synced_batch_id")
            .and_then(|b| b.parse().ok())
            .unwrap_or_else(|| panic!("{id} names no batch"));
        let applied = &ledger.records[id];
        assert_eq!(applied.batches.last(), Some(&batch), "{id}");
        let at = moto::text(item, "synced_at").unwrap_or_default();
        assert!(
            at.starts_with("20") && at.ends_with('Z'),
            "{id}: synced_at {at}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarter_read_from_the_table_ends_complete_with_every_item_synced_there_through_throttling()
 {
    let records = records(3, 40);
    let moto = table_with(&records).await;
    // Every third call of each operation is refused as throttled: the SDK's backoff must
    // wait each one out, in QueryPending's reads and MarkSynced's reads and writes alike.
    let throttler = Throttler::start(&moto.endpoint, 3).await;
    let app = TestApp::spawn_without_worker("dynamodb-complete", Faults::default()).await;
    let worker = worker(&app, &throttler.url);
    let summary = app.sync_and_wait(fast_policy()).await;
    stop(worker);

    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.totals.records_synced, records.len() as u64);
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    crate::helpers::assert_applied_once(&ledger, records.len() as u64);
    assert_every_item_synced(&moto, &app, records.len()).await;
    let throttled = throttler
        .throttled
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(throttled >= 10, "only {throttled} calls were throttled");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_changed_while_its_batch_is_in_flight_is_sent_again_never_marked_over() {
    let records = records(1, 30);
    let moto = table_with(&records).await;
    // Slow answers leave time to change an item whose batch is on its way.
    let faults = Faults {
        latency_ms: 1_500,
        ..Faults::default()
    };
    let app = TestApp::spawn_without_worker("dynamodb-changed", faults).await;
    let worker = worker(&app, &moto.endpoint);
    let policy = Policy {
        max_batch_records: 10,
        ..fast_policy()
    };
    let id = app.start_sync(policy).await;
    let changed = loop {
        if let Some(record_id) = record_in_flight(&app).await {
            break record_id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    moto.update_grade(&changed, "B-revised").await;
    eprintln!(
        "changed {changed}; worker log {}",
        app.dir.path().join("worker.log").display()
    );
    let summary = app.result(&id).await;
    stop(worker);

    assert!(summary.complete, "{summary:?}");
    let ledger = app.ledger().await;
    let twice = &ledger.records[&changed];
    assert_eq!(twice.applied, 2, "the old grade, then the new one");
    assert_ne!(
        twice.batches[0], twice.batches[1],
        "sent again in a later batch"
    );
    for (id, r) in &ledger.records {
        if *id != changed {
            assert_eq!(r.applied, 1, "{id}");
        }
    }
    assert_eq!(ledger.records.len(), records.len());
    // The table holds the new grade, marked synced by the batch that carried it.
    assert_every_item_synced(&moto, &app, records.len()).await;
    let item = moto
        .items()
        .await
        .into_iter()
        .find(|i| moto::text(i, "record_id") == Some(changed.as_str()))
        .unwrap();
    assert_eq!(moto::text(&item, "grade"), Some("B-revised"));
    // And what the API holds is the new grade: Reconcile found the store's hash there.
    let body = stored_body(&app, &changed).await;
    assert_eq!(body["grade"], "B-revised");
    assert_eq!(
        summary.reconcile.missing_at_api + summary.reconcile.hash_mismatches,
        0
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_loses_and_doubles_nothing_with_the_default_policy() {
    // The default policy's timeouts and heartbeat (only the retry timers compressed): the
    // heartbeat hands the dead worker's batches, and its half-done MarkSynced, to the next.
    let policy = fast_policy();
    assert_eq!(
        policy.send_heartbeat_timeout_ms,
        Policy::default().send_heartbeat_timeout_ms
    );
    let records = records(3, 60);
    let moto = table_with(&records).await;
    let faults = Faults {
        latency_ms: 1_000,
        ..Faults::default()
    };
    let app = TestApp::spawn_without_worker("dynamodb-kill", faults).await;
    let first = worker(&app, &moto.endpoint);
    let id = app.start_sync(policy).await;
    app.wait_for_batches(2).await;
    let mut first = first;
    first.kill().expect("SIGKILL the worker");
    first.wait().unwrap();
    let second = worker(&app, &moto.endpoint);
    let summary = app.result(&id).await;
    stop(second);
    let _ = std::fs::copy(
        app.dir.path().join("worker.log"),
        "/tmp/lead/kill-worker.log",
    );

    assert!(summary.complete, "{summary:?}");
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    crate::helpers::assert_applied_once(&ledger, records.len() as u64);
    assert_every_item_synced(&moto, &app, records.len()).await;
    app.stop().await;
}

/// A record of a batch the API is answering right now, if there is one.
async fn record_in_flight(app: &TestApp) -> Option<String> {
    let pool = pool(app).await;
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT g.record_id FROM grades g JOIN batches b ON b.batch_id = g.batch_id \
         WHERE b.in_flight_since IS NOT NULL AND b.status = 'prepared' AND g.status = 'batched' \
         ORDER BY g.record_id LIMIT 1",
    )
    .fetch_optional(&pool)
    .await
    .unwrap();
    pool.close().await;
    row.map(|(id,)| id)
}

async fn stored_body(app: &TestApp, record_id: &str) -> Value {
    let pool = pool(app).await;
    let (body,): (String,) = sqlx::query_as("SELECT body FROM grade_bodies WHERE record_id = $1")
        .bind(record_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    serde_json::from_str(&body).unwrap()
}

async fn pool(app: &TestApp) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&app.worker_args.store.database_url)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_check_and_plan_read_the_table_and_never_write_to_it() {
    let mut records = records(2, 15);
    let n = records.len();
    let mut bad = records[0].clone();
    bad["record_id"] = "bad-1".into();
    bad.as_object_mut().unwrap().remove("student_id");
    records.push(bad);
    let moto = table_with(&records).await;
    let app = TestApp::spawn_without_worker("dynamodb-cli", Faults::default()).await;
    let run = |args: &[&str]| {
        app.gradesync_command()
            .envs(Moto::env(&moto.endpoint))
            .args(args)
            .output()
            .expect("the gradesync binary runs")
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();

    let check = run(&["check"]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    let lines = text(&check.stdout);
    assert!(
        lines.contains(
            "source    ok  dynamodb://grades?index=sync_status-index (table ACTIVE, index ACTIVE"
        ),
        "{lines}"
    );

    let q = quarter().to_string();
    let plan = run(&["sync", "plan", "--quarter", &q, "--json"]);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    let report: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(report["pending_records"], n as u64);
    assert_eq!(report["schools"].as_array().unwrap().len(), 2);
    let said = text(&plan.stderr);
    assert!(
        said.contains("item record_id=bad-1: attribute `student_id` is missing"),
        "{said}"
    );
    assert_eq!(
        app.store.pending_counts(&quarter()).await.unwrap().len(),
        0,
        "the plan stored nothing"
    );

    let url = format!("dynamodb://{}?index={}", moto::TABLE, moto::INDEX);
    let first = run(&["import", "--from", &url]);
    assert_eq!(first.status.code(), Some(4), "{}", text(&first.stderr));
    let summary = text(&first.stdout);
    assert!(
        summary.contains(&format!("{} pending items, {n} new", n + 1)),
        "{summary}"
    );
    assert!(
        text(&first.stderr).contains("item record_id=bad-1:"),
        "{}",
        text(&first.stderr)
    );
    let again = run(&["import", "--from", &url]);
    assert!(
        text(&again.stdout).contains(&format!("{n} unchanged")),
        "{}",
        text(&again.stdout)
    );
    let counts = app.store.pending_counts(&quarter()).await.unwrap();
    assert_eq!(counts.iter().map(|c| c.pending).sum::<u64>(), n as u64);
    for item in moto.items().await {
        assert_eq!(moto::text(&item, "sync_status"), Some("pending"));
        assert!(
            !item.contains_key("synced_batch_id"),
            "import wrote to the table"
        );
    }

    // An index that projects keys only: the items are read back from the table by key,
    // and the same records come out.
    moto.create_table("grades_keys", ProjectionType::KeysOnly)
        .await;
    moto.put_pending_in("grades_keys", &records).await;
    let keys_only = format!("dynamodb://grades_keys?index={}", moto::INDEX);
    let out = run(&["import", "--from", &keys_only, "--quarter", &q]);
    assert!(
        text(&out.stdout).contains(&format!(
            "{} pending items, 0 new, 0 changed (back to pending), {n} unchanged, 1 bad",
            n + 1
        )),
        "{}",
        text(&out.stdout)
    );

    let wrong = run(&["import", "--from", "dynamodb://grades?index=by_school"]);
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong.stderr));
    assert!(
        text(&wrong.stderr).contains("no global secondary index `by_school`"),
        "{}",
        text(&wrong.stderr)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_that_is_no_record_makes_the_quarter_need_correction_until_it_is_fixed() {
    let mut records = records(1, 10);
    let mut broken = records[0].clone();
    broken["record_id"] = "rec-broken".into();
    broken.as_object_mut().unwrap().remove("grade");
    records.push(broken.clone());
    let moto = table_with(&records).await;
    let app = TestApp::spawn_without_worker("dynamodb-invalid", Faults::default()).await;
    let worker = worker(&app, &moto.endpoint);
    let summary = app.sync_and_wait(fast_policy()).await;
    stop(worker);

    assert_eq!(
        summary.verdict,
        gradesync_activities::model::Verdict::NeedsCorrection,
        "{summary:?}"
    );
    assert_eq!(summary.totals.records_synced, 10);
    let rejections = app.rejections(&quarter()).await;
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    let (id, reason) = &rejections[0];
    assert_eq!(id, "rec-broken");
    let reason = reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("attribute `grade` is missing") && reason.contains("table grades"),
        "{reason}"
    );
    let shown = app.gradesync(&["report", "show", "--quarter", &quarter().to_string()]);
    assert_eq!(shown.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&shown.stdout).contains("rec-broken"));
    let item = moto
        .items()
        .await
        .into_iter()
        .find(|i| moto::text(i, "record_id") == Some("rec-broken"))
        .unwrap();
    assert_eq!(
        moto::text(&item, "sync_status"),
        Some("pending"),
        "left for the school to fix"
    );

    // Corrected in the table, the item is a changed record the next read sends.
    broken["grade"] = "B".into();
    moto.put_pending(&[broken]).await;
    let url = format!("dynamodb://{}?index={}", moto::TABLE, moto::INDEX);
    let out = app
        .gradesync_command()
        .envs(Moto::env(&moto.endpoint))
        .args([
            "import",
            "--from",
            &url,
            "--quarter",
            &quarter().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 changed (back to pending)"));
    assert!(app.rejections(&quarter()).await.is_empty());
    app.stop().await;
}

/// The quarter's record hashes as the API lists them, by record id.
async fn api_hashes(app: &TestApp) -> std::collections::HashMap<String, String> {
    use gradesync_activities::gov::{Credentials, GovClient, GovClientConfig, NoGate, Secret};
    let gov = &app.worker_args.gov;
    let credentials = Credentials::new(
        gov.gov_client_id.clone(),
        Secret::new(gov.gov_client_secret.clone().unwrap_or_default()),
    );
    let client = GovClient::new(
        GovClientConfig::new(app.sim.base_url(), credentials),
        std::sync::Arc::new(NoGate),
    )
    .unwrap();
    client
        .record_hashes(&quarter(), None, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.record_id, h.sha256))
        .collect()
}

fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_items_reach_the_api_and_are_marked_synced_before_a_complete_verdict() {
    let mut records = records(1, 20);
    let n = records.len();
    let moto = table_with(&records).await;
    // One lane and slow answers: the run is still sending when the late items arrive.
    let faults = Faults {
        latency_ms: 1_000,
        ..Faults::default()
    };
    let app = TestApp::spawn_without_worker("dynamodb-late", faults).await;
    let worker = worker(&app, &moto.endpoint);
    let policy = Policy {
        max_batch_records: 5,
        lanes_per_school: 1,
        ..fast_policy()
    };
    let id = app.start_sync(policy).await;
    // A first batch marked synced in the table, and the next one on its way.
    let (synced, in_flight) = loop {
        let synced: Vec<String> = moto
            .items()
            .await
            .iter()
            .filter(|i| moto::text(i, "sync_status") == Some("synced"))
            .filter_map(|i| moto::text(i, "record_id").map(str::to_string))
            .collect();
        if synced.len() >= 3
            && let Some(record_id) = record_in_flight(&app).await
        {
            break (synced, record_id);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // Late: three new items, and three synced ones set back to pending with a new grade.
    let late: Vec<Value> = records
        .iter()
        .take(3)
        .enumerate()
        .map(|(i, record)| {
            let mut item = record.clone();
            item["record_id"] = format!("rec-late-{i}").into();
            item["student_id"] = format!("stu-late-{i}").into();
            item
        })
        .collect();
    moto.put_pending(&late).await;
    let regraded: Vec<String> = synced.into_iter().take(3).collect();
    for record_id in &regraded {
        moto.update_grade(record_id, "B-late").await;
        let record = records
            .iter_mut()
            .find(|r| r["record_id"] == record_id.as_str())
            .unwrap();
        record["grade"] = "B-late".into();
    }
    let last_put_ms = unix_ms_now();
    records.extend(late.iter().cloned());
    // The puts were done before any Reconcile: a batch of the first round is still out.
    let pool = pool(&app).await;
    let (status,): (String,) = sqlx::query_as("SELECT status FROM grades WHERE record_id = $1")
        .bind(&in_flight)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(
        status, "batched",
        "the late items came after the first round"
    );

    let summary = app.result(&id).await;
    stop(worker);

    assert!(summary.complete, "{summary:?}");
    let log = std::fs::read_to_string(app.dir.path().join("worker.log")).unwrap();
    assert!(
        log.contains("Reconcile: the source still owes records"),
        "the late items went out in a round Reconcile handed back: {log}"
    );
    assert!(
        summary.reconcile.source_read_at_ms > last_put_ms,
        "the verdict's read ({}) came after the last put ({last_put_ms})",
        summary.reconcile.source_read_at_ms
    );
    let exported = app.gradesync(&[
        "report",
        "export",
        "--quarter",
        &quarter().to_string(),
        "--format",
        "json",
    ]);
    assert!(exported.status.success());
    let report: Value = serde_json::from_slice(&exported.stdout).unwrap();
    assert_eq!(report["verdict"], "complete");
    assert_eq!(
        report["source_read_at_ms"].as_u64(),
        Some(summary.reconcile.source_read_at_ms)
    );

    // At the API: each record once with its latest content; a regraded one twice in all
    // (its old grade in the first round, the new one in a later batch).
    let ledger = app.ledger().await;
    assert!(ledger.max_requests_in_window <= 2, "{ledger:?}");
    assert_eq!(ledger.status_counts.get(&429), None, "{ledger:?}");
    assert_eq!(ledger.records.len(), n + late.len());
    for (id, r) in &ledger.records {
        let times = if regraded.contains(id) { 2 } else { 1 };
        assert_eq!(r.applied, times, "{id}: {r:?}");
    }
    let hashes = api_hashes(&app).await;
    for record in &records {
        let id = record["record_id"].as_str().unwrap();
        assert_eq!(
            hashes.get(id),
            Some(&gradesync_govapi::contract::record_sha256(record)),
            "{id}: the API holds its latest content"
        );
    }
    // In the table: every item synced by the batch that carried its latest content.
    assert_every_item_synced(&moto, &app, records.len()).await;
    for item in moto.items().await {
        let id = moto::text(&item, "record_id").unwrap();
        if regraded.iter().any(|r| r == id) {
            assert_eq!(moto::text(&item, "grade"), Some("B-late"), "{id}");
        }
    }
    app.stop().await;
}

/// A table whose index projects `projection` holding the quarter's items, a broken item of
/// another quarter whose record the store holds as synced there (an earlier run), and an
/// item with no quarter. The run of this quarter ends as if neither were there: complete,
/// its counts its own; the other quarter's row stays as it was; the item without a quarter
/// is reported by key (the worker's log, `import --from`), never counted.
async fn another_quarters_broken_item_leaves_the_quarter_alone(
    projection: ProjectionType,
    name: &str,
) {
    let records = records(1, 10);
    let n = records.len() as u64;
    let mut earlier = records[0].clone();
    earlier["record_id"] = "rec-other-quarter".into();
    earlier["quarter"] = "2026-Q2".into();
    let mut broken = earlier.clone();
    broken.as_object_mut().unwrap().remove("grade");
    let mut nowhere = records[1].clone();
    nowhere["record_id"] = "rec-no-quarter".into();
    nowhere.as_object_mut().unwrap().remove("quarter");

    let moto = Moto::start().await;
    moto.create_table(moto::TABLE, projection).await;
    let mut table = records.clone();
    table.extend([broken, nowhere]);
    moto.put_pending(&table).await;
    let app = TestApp::spawn_without_worker(name, Faults::default()).await;
    app.import_bytes(format!("{earlier}\n").as_bytes()).await;
    let pool = pool(&app).await;
    sqlx::query("UPDATE grades SET status = 'synced' WHERE record_id = 'rec-other-quarter'")
        .execute(&pool)
        .await
        .unwrap();

    let worker = worker(&app, &moto.endpoint);
    let summary = app.sync_and_wait(fast_policy()).await;
    stop(worker);

    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.totals.records_synced, n);
    assert_eq!(summary.reconcile.rejected, 0);
    assert!(app.rejections(&quarter()).await.is_empty());
    let counts = app.store.status_counts(&quarter()).await.unwrap();
    let total = |f: fn(&gradesync_activities::store::SchoolStatus) -> u64| {
        counts.iter().map(f).sum::<u64>()
    };
    assert_eq!(
        (
            total(|c| c.synced),
            total(|c| c.pending + c.batched + c.rejected + c.dead)
        ),
        (n, 0)
    );
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT record_id, quarter, status FROM grades WHERE record_id LIKE 'rec-%-quarter' ORDER BY record_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert_eq!(
        rows,
        [(
            "rec-other-quarter".to_string(),
            "2026-Q2".to_string(),
            "synced".to_string()
        )],
        "the other quarter's row stays there; the item without a quarter is in none"
    );
    for item in moto.items().await {
        let id = moto::text(&item, "record_id").unwrap();
        let expected = if id.ends_with("-quarter") {
            "pending"
        } else {
            "synced"
        };
        assert_eq!(moto::text(&item, "sync_status"), Some(expected), "{id}");
    }
    let log = std::fs::read_to_string(app.dir.path().join("worker.log")).unwrap();
    assert!(
        log.contains("item record_id=rec-no-quarter: attribute `quarter` is missing"),
        "{log}"
    );
    assert!(!log.contains("rec-other-quarter"), "{log}");

    let url = format!("dynamodb://{}?index={}", moto::TABLE, moto::INDEX);
    let out = app
        .gradesync_command()
        .envs(Moto::env(&moto.endpoint))
        .args([
            "import",
            "--from",
            &url,
            "--quarter",
            &quarter().to_string(),
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stdout.contains("1 pending items, 0 new, 0 changed (back to pending), 0 unchanged, 1 bad"),
        "{stdout}"
    );
    assert!(
        stderr.contains("item record_id=rec-no-quarter: attribute `quarter` is missing"),
        "{stderr}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_quarters_broken_item_leaves_the_quarter_alone_through_a_keys_only_index() {
    another_quarters_broken_item_leaves_the_quarter_alone(
        ProjectionType::KeysOnly,
        "dynamodb-other-keys",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_quarters_broken_item_leaves_the_quarter_alone_through_a_whole_items_index() {
    another_quarters_broken_item_leaves_the_quarter_alone(
        ProjectionType::All,
        "dynamodb-other-all",
    )
    .await;
}
