//! Grades corrected while the quarter is sent: a teacher fixes a score, the SIS export is
//! re-run. A batch that has left keeps its key and bytes until its outcome is known, a
//! correction follows its batch instead of failing it, and nothing of a batch is cut again
//! before a 201, a 400 naming its records or a receipt lookup has settled it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use gradesync::datagen;
use gradesync_activities::model::{Policy, Verdict};
use gradesync_govapi::contract::record_sha256;
use gradesync_govapi::sim::{Faults, Ledger};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::helpers::{
    QUARTER, TestApp, assert_applied_once, fast_policy, generated_jsonl, test_seed,
};

/// A busy quarter: 8 schools sent at once, two batches in flight each.
const SCHOOLS: usize = 8;
const PER_SCHOOL: usize = 500;

/// The quarter's records as the data generator makes them.
fn quarter_records(schools: usize, per_school: usize) -> Vec<Value> {
    String::from_utf8(generated_jsonl(QUARTER, schools, per_school))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn jsonl(records: &[Value]) -> Vec<u8> {
    records
        .iter()
        .flat_map(|r| format!("{r}\n").into_bytes())
        .collect()
}

/// The API misbehaving as the issue measured it: slow, some 503s, some commits whose
/// answer never arrives.
fn unstable(seed: u64) -> Faults {
    Faults {
        seed,
        latency_ms: 200,
        latency_jitter_ms: 100,
        p_503: 0.03,
        p_commit_drop: 0.03,
        ..Faults::default()
    }
}

/// The number just before `marker` in `text` (`"… 12 changed …"`).
fn number_before(text: &str, marker: &str) -> u64 {
    let head = &text[..text
        .find(marker)
        .unwrap_or_else(|| panic!("no `{marker}` in {text}"))];
    let digits: String = head
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

/// One round of corrections through `gradesync import`, as a school's SIS export would
/// arrive: returns how many the import held back for a batch in flight.
async fn import_round(app: &TestApp, round: u32, records: &[Value]) -> u64 {
    let path = app.dir.path().join(format!("corrections-{round}.jsonl"));
    std::fs::write(&path, jsonl(records)).unwrap();
    let mut cmd = tokio::process::Command::from(app.gradesync_command());
    let out = cmd
        .arg("import")
        .arg(&path)
        .env("GRADESYNC_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "import of round {round}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        number_before(&stdout, " changed"),
        records.len() as u64,
        "{stdout}"
    );
    if stdout.contains(" of them once") {
        number_before(&stdout, " of them once")
    } else {
        0
    }
}

/// Every dead letter the quarter ever had, replayed or not.
async fn dead_letters_ever(app: &TestApp) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.worker_args.store.database_url)
        .await
        .unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

/// Whether the API applied any record under `batch`.
fn committed_by_api(ledger: &Ledger, batch: &str) -> bool {
    ledger
        .records
        .values()
        .any(|r| r.batches.iter().any(|b| b.to_string() == batch))
}

/// Dead letters after a 400 naming none of their batch whose batch the API had in fact
/// committed (an earlier attempt's answer was lost, and so was the client's lookup).
async fn committed_dead_letters(app: &TestApp) -> usize {
    let letters = unnamed_dead_letters(app).await;
    let ledger = app.ledger().await;
    letters
        .iter()
        .filter(|(batch, _)| committed_by_api(&ledger, batch))
        .count()
}

/// `(batch id, batch status)` of every dead letter written after a 400 naming none of its
/// batch, replayed or not.
async fn unnamed_dead_letters(app: &TestApp) -> Vec<(String, String)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.worker_args.store.database_url)
        .await
        .unwrap();
    let rows = sqlx::query_as(
        "SELECT d.batch_id, b.status FROM dead_letters d JOIN batches b ON b.batch_id = d.batch_id \
         WHERE d.error LIKE '%naming no record%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

fn assert_window_kept(ledger: &Ledger) {
    assert!(
        ledger.max_requests_in_window <= 2,
        "rate window exceeded: {} requests in 1 s (tightest spans {:?})",
        ledger.max_requests_in_window,
        ledger.tightest_spans
    );
    assert_eq!(ledger.status_counts.get(&429), None, "429s received");
}

/// The acceptance test of issue 25: with the **default policy** and an unstable API,
/// rounds of corrected grades are imported every 2 s while a busy quarter is sent. Every
/// corrected record ends at the API with its newest content, no other record is applied
/// twice, and no correction causes a retry step, a dead letter, an alert or a redrive
/// wait: the run takes its clean time plus the corrections' own sending time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrections_streamed_into_a_busy_quarter_follow_their_batches() {
    let seed = test_seed();
    let records = quarter_records(SCHOOLS, PER_SCHOOL);
    let n = records.len() as u64;

    // The same quarter on the same unstable API, without corrections: the clean time.
    let clean = TestApp::spawn("corrections-clean", unstable(seed)).await;
    assert_eq!(clean.import_bytes(&jsonl(&records)).await, n);
    let started = Instant::now();
    let summary = clean.sync_and_wait(Policy::default()).await;
    let clean_elapsed = started.elapsed();
    assert_eq!(summary.verdict, Verdict::Complete, "{summary:?}");
    let clean_ledger = clean.ledger().await;
    assert_applied_once(&clean_ledger, n);
    clean.stop().await;

    let app = TestApp::spawn("corrections", unstable(seed)).await;
    assert_eq!(app.import_bytes(&jsonl(&records)).await, n);
    let mut latest: BTreeMap<String, Value> = records
        .iter()
        .map(|r| (r["record_id"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    let ids: Vec<String> = latest.keys().cloned().collect();
    let mut rng = SmallRng::seed_from_u64(seed);
    let started = Instant::now();
    let id = app.start_sync(Policy::default()).await;
    app.wait_for_batches(1).await;
    let mut corrected = BTreeSet::new();
    let mut held = 0;
    for round in 1..=6u32 {
        let picked: BTreeSet<&String> = (0..40)
            .map(|_| &ids[rng.random_range(0..ids.len())])
            .collect();
        let round_records: Vec<Value> = picked
            .iter()
            .map(|id| datagen::correct(&latest[*id], round))
            .collect();
        held += import_round(&app, round, &round_records).await;
        for r in round_records {
            let id = r["record_id"].as_str().unwrap().to_string();
            corrected.insert(id.clone());
            latest.insert(id, r);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let summary = app.result(&id).await;
    let elapsed = started.elapsed();

    assert_eq!(summary.verdict, Verdict::Complete, "{summary:?}");
    assert!(
        held > 0,
        "no correction met a batch in flight: the test proves less than it says"
    );
    let ledger = app.ledger().await;
    let holds = app.sim.holds(QUARTER).await;
    assert_eq!(holds.len() as u64, n, "every record is at the API");
    for (id, record) in &latest {
        assert_eq!(
            holds.get(id),
            Some(&record_sha256(record)),
            "{id}: the API holds other content than the newest"
        );
    }
    let twice: Vec<_> = ledger
        .records
        .iter()
        .filter(|(id, r)| r.applied != 1 && !corrected.contains(*id))
        .collect();
    assert!(
        twice.is_empty(),
        "uncorrected records applied twice or never: {twice:?}"
    );
    assert_eq!(
        dead_letters_ever(&app).await,
        0,
        "a correction dead-lettered a batch"
    );
    assert!(app.alerts.texts().is_empty(), "{:?}", app.alerts.texts());
    assert_eq!(summary.redrives, 0);

    // The corrections' own sending time: the batches they needed beyond the clean run's,
    // at the API's 2 requests per second.
    let extra = ledger
        .batches_committed
        .saturating_sub(clean_ledger.batches_committed);
    let bound = (clean_elapsed + Duration::from_millis(500) * extra as u32).mul_f64(1.15);
    eprintln!(
        "corrections: {} records corrected in 6 rounds ({held} held for a batch in flight), \
         {extra} extra batches; clean {:.1} s, with corrections {:.1} s (bound {:.1} s)",
        corrected.len(),
        clean_elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        bound.as_secs_f64()
    );
    assert!(
        elapsed <= bound,
        "the corrections cost more than their sending: {elapsed:?} > {bound:?} (seed {seed})"
    );
    assert_window_kept(&ledger);
    app.stop().await;
}

/// A 400 that names none of the batch is answered before the API's idempotency check, so
/// an earlier attempt under the same key may have committed the batch (its answer dropped
/// or hung past the client's timeout, and the client's own lookup answered 503). The batch
/// must be settled by a receipt lookup before any of its records goes out in another
/// batch: nothing is applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_naming_none_of_a_batch_that_had_committed_applies_nothing_twice() {
    let seed = test_seed();
    // First every commit's answer is lost: dropped, or hung past the tests' 2 s timeout.
    let lost_answers = Faults {
        seed,
        p_commit_drop: 0.5,
        p_hang: 1.0,
        hang_ms: 3_000,
        p_lookup_503: 1.0,
        ..Faults::default()
    };
    let app = TestApp::spawn("unnamed-after-commit", lost_answers).await;
    let n = app.seed_grades(3, 40).await;
    let policy = Policy {
        max_batch_records: 10,
        redrive_waves_ms: vec![1_000, 2_000],
        ..fast_policy()
    };
    let id = app.start_sync(policy).await;
    app.wait_for_batches(3).await;
    // Then every POST meets a 400 naming none of its batch, and lookups still fail: the
    // batches committed above are dead-lettered by their retries.
    app.sim
        .set_faults(Faults {
            seed,
            p_400_unnamed: 1.0,
            p_lookup_503: 1.0,
            ..Faults::default()
        })
        .await;
    let started = Instant::now();
    while committed_dead_letters(&app).await < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the committed batches were not dead-lettered (seed {seed})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The API recovers; the redrive waves look every dead batch up before anything else.
    app.sim.set_faults(Faults::default()).await;
    let summary = app.result(&id).await;

    assert_eq!(
        summary.verdict,
        Verdict::Complete,
        "{summary:?} (seed {seed})"
    );
    let ledger = app.ledger().await;
    assert_applied_once(&ledger, n);
    // Answers were lost by a drop or a hang, as the seed rolled (the wait above saw three
    // committed batches dead-lettered either way); then came the unnamed 400s.
    assert!(ledger.posts_unnamed_400 > 0);
    // Each such batch was settled as synced by a lookup, never cut into another.
    let letters = unnamed_dead_letters(&app).await;
    let committed: Vec<_> = letters
        .iter()
        .filter(|(batch, _)| committed_by_api(&ledger, batch))
        .collect();
    assert!(!committed.is_empty());
    assert!(
        committed.iter().all(|(_, status)| status == "synced"),
        "{committed:?}"
    );
    assert_window_kept(&ledger);
    app.stop().await;
}
