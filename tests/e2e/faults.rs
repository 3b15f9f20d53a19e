//! The fault suite: each test drives a whole quarterly sync through one fault (or a few) and
//! then checks the Jepsen-style invariants against three independent witnesses, the store,
//! the simulator's ledger and the run's summary: nothing lost, nothing applied twice, every
//! record synced, rejected with a reason, or dead-lettered with an alert.
//!
//! Seeded randomness prints `seed = N`; `GRADESYNC_TEST_SEED=N` replays it.

use std::time::{Duration, Instant};

use base64::Engine;
use gradesync::devserver;
use gradesync_activities::model::{Policy, SyncSummary, Verdict};
use gradesync_govapi::Quarter;
use gradesync_govapi::sim::{Faults, RejectRule, SimConfig};
use gradesync_workflows::QuarterlySync;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::helpers::{
    QUARTER, TestApp, assert_applied_once, assert_ledger_clean, fast_policy, free_port, no_redrive,
    outage, quarter, test_seed, unique_quarter,
};

/// Activity timeouts short enough that the tasks of a killed worker (or of a worker cut
/// off from Temporal) time out in seconds instead of the seed's 15 minutes.
fn crash_policy() -> Policy {
    Policy {
        send_start_to_close_ms: 5_000,
        send_schedule_to_close_ms: 10_000,
        query_timeout_ms: 5_000,
        heartbeat_timeout_ms: 3_000,
        ..fast_policy()
    }
}

/// A `gradesync worker` process, SIGKILLed when dropped so that a failing test leaves no
/// worker behind.
struct Worker(std::process::Child);

impl Worker {
    fn kill(&mut self) {
        let _ = self.0.kill(); // SIGKILL on Unix
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where every record of the quarter ended up, per the store.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    synced: u64,
    rejected: u64,
    dead: u64,
}

/// The invariants of every run: nothing left unsent, nothing lost (every synced record is
/// at the API with the same content), nothing applied twice, every rejection with a reason,
/// every dead letter alerted; store, ledger and summary agree, the run's own counts too
/// (for a run that started from a store where nothing was sent yet).
async fn assert_invariants(app: &TestApp, q: &Quarter, n: u64, summary: &SyncSummary) -> Tally {
    let t = assert_quarter_invariants(app, q, n, summary).await;
    // The run's own counts agree (records the API lost are sent, and counted, twice).
    let totals = &summary.totals;
    let repaired = summary.reconcile.repaired;
    assert_eq!(totals.records_synced, t.synced + repaired, "{summary:?}");
    assert_eq!(totals.records_rejected, t.rejected, "{summary:?}");
    assert_eq!(totals.records_dead, t.dead, "{summary:?}");
    t
}

/// [`assert_invariants`] but for the run's own counts, which after a replay cover only
/// what the replay sent.
async fn assert_quarter_invariants(
    app: &TestApp,
    q: &Quarter,
    n: u64,
    summary: &SyncSummary,
) -> Tally {
    let counts = app.store.status_counts(q).await.unwrap();
    let t = Tally {
        synced: counts.iter().map(|c| c.synced).sum(),
        rejected: counts.iter().map(|c| c.rejected).sum(),
        dead: counts.iter().map(|c| c.dead).sum(),
    };
    let unsent: u64 = counts.iter().map(|c| c.pending + c.batched).sum();
    assert_eq!(unsent, 0, "records left pending or in flight: {counts:?}");
    assert_eq!(
        t.synced + t.rejected + t.dead,
        n,
        "every record accounted for: {counts:?}"
    );

    // Lost = 0: the reconciliation found every synced record at the API, unchanged, and
    // the verdict says what is left: dead letters, then records refused by name.
    let r = &summary.reconcile;
    let expected = match (t.dead, t.rejected) {
        (0, 0) => Verdict::Complete,
        (0, _) => Verdict::NeedsCorrection,
        _ => Verdict::Incomplete,
    };
    assert_eq!(summary.verdict, expected, "{summary:?}");
    assert_eq!(summary.complete, expected == Verdict::Complete);
    assert_eq!(
        (r.missing_at_api, r.hash_mismatches, r.unexpected_at_api),
        (0, 0, 0),
        "{summary:?}"
    );
    assert_eq!(r.synced_in_store, t.synced, "{summary:?}");
    assert_eq!(r.received_by_api, t.synced, "{summary:?}");
    assert_eq!(r.rejected, t.rejected, "{summary:?}");
    assert_eq!(r.dead_lettered, t.dead, "{summary:?}");

    // Applied twice = 0, and what the API holds is exactly what the store calls synced.
    let ledger = app.ledger().await;
    let twice: Vec<_> = ledger
        .records
        .iter()
        .filter(|(_, rec)| rec.applied > 1)
        .map(|(id, rec)| (id, rec.applied))
        .collect();
    assert!(
        twice.is_empty(),
        "records applied more than once: {twice:?}"
    );
    assert_eq!(ledger.records.len() as u64, t.synced, "records at the API");

    // Rejected: each with its reason.
    let rejections = app.rejections(q).await;
    assert_eq!(rejections.len() as u64, t.rejected);
    for (id, reason) in &rejections {
        assert!(
            reason.as_deref().is_some_and(|r| !r.trim().is_empty()),
            "{id} rejected without a reason"
        );
    }

    // Dead-lettered: each batch in the dead-letter table, alerted, and named in an alert.
    let letters = app.store.dead_letters(q).await.unwrap();
    assert_eq!(letters.iter().map(|d| d.records).sum::<u64>(), t.dead);
    let alerts = app.alerts.texts();
    for d in &letters {
        assert!(d.alerted, "dead letter {} not alerted", d.batch_id);
        let id = d.batch_id.to_string();
        assert!(
            alerts.iter().any(|a| a.contains(&id)),
            "no alert names {id}: {alerts:?}"
        );
    }
    eprintln!(
        "{t:?} of {n}; totals {:?}; ledger: {} records, {} batches committed, {} replays, \
         statuses {:?}, {} dropped",
        summary.totals,
        ledger.records.len(),
        ledger.batches_committed,
        ledger.replays.values().sum::<u32>(),
        ledger.status_counts,
        ledger.connections_dropped,
    );
    t
}

/// Waits until `batches` are committed, or until the API holds all `n` records (after which
/// no more batches come).
async fn wait_for_batches_or_all(app: &TestApp, batches: u64, n: u64) {
    for _ in 0..1200 {
        let ledger = app.ledger().await;
        if ledger.batches_committed >= batches || ledger.records.len() as u64 >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the simulator never committed {batches} batches");
}

async fn wait_for_records(app: &TestApp, n: u64) {
    for _ in 0..1200 {
        if app.ledger().await.records.len() as u64 >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the API never held {n} records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigkilled_ten_times_finishes_with_nothing_lost_or_doubled() {
    let seed = test_seed();
    let mut rng = SmallRng::seed_from_u64(seed);
    let faults = Faults {
        latency_ms: 200,
        seed,
        ..Faults::default()
    };
    let app = TestApp::spawn_without_worker("kill10", faults).await;
    let n = app.seed_grades(4, 300).await;
    let policy = Policy {
        lanes_per_school: 1,
        // Ten kills within seconds cost one batch more failed attempts than the seed's
        // three-step ladder is meant for; a longer ladder keeps them from dead-lettering.
        backoff_ms: vec![200; 10],
        ..crash_policy()
    };
    let mut worker = Worker(app.spawn_worker_process());
    let started = Instant::now();
    let id = app.start_sync(policy).await;
    app.wait_for_batches(1).await;
    // Each kill comes a random moment after the last kill, or after one more commit (one
    // time in two). Whatever its moment, a kill costs the run 5 to 10 s: the dead worker's
    // activities time out (5 s here) and so do the workflow tasks on its sticky queue (the
    // SDK's 10 s, not a policy field), hence a test of about a minute.
    let mut kills = Vec::new();
    for _ in 0..10 {
        let more = u64::from(rng.random_bool(0.5));
        let committed = app.ledger().await.batches_committed;
        wait_for_batches_or_all(&app, committed + more, n).await;
        let pause = rng.random_range(0..1_500u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        worker.kill(); // SIGKILL, like a crashed host
        kills.push((app.ledger().await.batches_committed, pause));
        worker = Worker(app.spawn_worker_process()); // at once, like a supervisor
    }
    eprintln!(
        "kills (batches committed, ms after the wait): {kills:?}, the last at {:?}",
        started.elapsed()
    );
    let summary = app.result(&id).await;
    worker.kill();

    let t = assert_invariants(&app, &quarter(), n, &summary).await;
    assert_eq!(t.synced, n, "every record synced");
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    let mut moments: Vec<u64> = kills.iter().map(|k| k.0).collect();
    moments.dedup();
    assert!(moments.len() >= 3, "kills between commits: {kills:?}");
    eprintln!("run took {:?}", started.elapsed());
}

/// The result of a run, asking again when the server was unreachable meanwhile.
async fn result_across_outages(app: &TestApp, id: &str) -> (SyncSummary, Vec<String>) {
    let handle = app
        .client
        .get_workflow_handle::<QuarterlySync>(id.to_string());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut errors = Vec::new();
    while Instant::now() < deadline {
        match tokio::time::timeout(
            Duration::from_secs(60),
            handle.get_result(Default::default()),
        )
        .await
        {
            Ok(Ok(summary)) => return (summary, errors),
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(_) => errors.push("get_result: no answer within 60 s".into()),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("no result within 120 s; errors: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_server_restarted_mid_run_and_the_run_completes() {
    // A server of our own, with its state in a file, so it can be killed and restarted.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("temporal.db");
    let port = free_port();
    let mut server = devserver::start(port, None, &db).await.unwrap();
    let config = SimConfig {
        faults: Faults {
            latency_ms: 200,
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let app = TestApp::spawn_with("tserver", config, Some(server.address.clone()))
        .await
        .with_worker()
        .await;
    let n = app.seed_grades(2, 300).await;
    let id = app.start_sync(crash_policy()).await;
    app.wait_for_batches(2).await;
    // A client call in flight across the outage: the long poll for the run's result.
    let handle = app.client.get_workflow_handle::<QuarterlySync>(id.clone());
    let waiting = tokio::spawn(async move { handle.get_result(Default::default()).await });

    server.child.kill().await.unwrap();
    let at_kill = app.ledger().await.batches_committed;
    // Longer than the SDK retries an activity's completion (10 s): answers are lost.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let during = app.ledger().await.batches_committed - at_kill;
    let restarted = Instant::now();
    let server = devserver::start(port, None, &db).await.unwrap();
    eprintln!(
        "server killed after {at_kill} batches, {during} committed while it was down, \
         back in {:?}",
        restarted.elapsed()
    );
    // The worker reconnects by itself (its polls retry without limit). A client call in
    // flight gives up once the SDK's retry budget is spent (RetryOptions::default():
    // 10 attempts within 10 s) with `Unavailable`; the same client then answers again.
    let in_flight = tokio::time::timeout(Duration::from_secs(120), waiting)
        .await
        .expect("the result call ends")
        .unwrap();
    let summary = match in_flight {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("the result call in flight across the outage failed: {e}");
            let (summary, errors) = result_across_outages(&app, &id).await;
            assert!(errors.is_empty(), "the client reconnects: {errors:?}");
            summary
        }
    };
    let t = assert_invariants(&app, &quarter(), n, &summary).await;
    assert_eq!(t.synced, n);
    assert_ledger_clean(&app.ledger().await);
    app.stop().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_then_drop_and_hang_past_the_timeout_apply_each_batch_once() {
    let seed = test_seed();
    let app = TestApp::spawn(
        "dropnhang",
        Faults {
            p_commit_drop: 1.0,
            seed,
            ..Faults::default()
        },
    )
    .await;
    let n = app.seed_grades(4, 200).await;
    let id = app.start_sync(fast_policy()).await;

    // Every commit loses its answer until two connections were closed on it...
    for _ in 0..600 {
        if app.ledger().await.connections_dropped >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(app.ledger().await.connections_dropped >= 2);
    // ...then every commit answers only after 5 s, past the client's 2 s timeout...
    let hang_from = app.ledger().await.batches_committed;
    app.sim
        .set_faults(Faults {
            p_hang: 1.0,
            hang_ms: 5_000,
            seed,
            ..Faults::default()
        })
        .await;
    app.wait_for_batches(hang_from + 2).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // ...then the API behaves.
    app.sim.set_faults(Faults::default()).await;
    let hung = app.ledger().await.batches_committed - hang_from;
    let summary = app.result(&id).await;

    let t = assert_invariants(&app, &quarter(), n, &summary).await;
    assert_eq!(t.synced, n);
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert!(ledger.connections_dropped >= 2, "{ledger:?}");
    assert!(hung >= 2, "{hung} batches hung");
    assert!(ledger.records.values().all(|r| r.applied == 1));
    // A lost answer is settled by looking the receipt up, not by sending again.
    assert_eq!(summary.totals.retries, 0, "{summary:?}");
    assert!(ledger.replays.is_empty(), "{:?}", ledger.replays);
    eprintln!(
        "{} connections dropped after commit, {hung} commits hung",
        ledger.connections_dropped
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_is_waited_out_without_loss_or_doubles() {
    // The API allows one request per second, half our pace: about every other request is
    // refused with 429 and Retry-After.
    let faults = Faults {
        rate_limit: 1,
        ..Faults::default()
    };
    let app = TestApp::spawn("storm429", faults).await;
    let n = app.seed_grades(2, 200).await;
    let summary = app.sync_and_wait(fast_policy()).await;

    let t = assert_invariants(&app, &quarter(), n, &summary).await;
    assert_eq!(t.synced, n);
    let ledger = app.ledger().await;
    assert_applied_once(&ledger, n);
    let refused = ledger.status_counts.get(&429).copied().unwrap_or(0);
    assert!(
        refused > 0,
        "the storm happened: {:?}",
        ledger.status_counts
    );
    assert!(summary.totals.throttled > 0, "{summary:?}");
    assert_eq!(summary.totals.retries, 0, "a 429 is not a failed attempt");
    assert_eq!(summary.totals.batches_dead, 0);
    // The client waited as told instead of hammering: a handful of 429s per batch at most,
    // and never more than half of all requests.
    let batches = summary.totals.batches_sent;
    assert!(
        summary.totals.throttled <= 4 * batches,
        "{} throttled waits for {batches} batches",
        summary.totals.throttled
    );
    let admitted = ledger.requests_total - refused;
    assert!(
        refused <= 4 * admitted,
        "{refused} refused for {admitted} admitted requests"
    );
    eprintln!(
        "{refused} 429s of {} requests; {} throttled waits for {batches} batches",
        ledger.requests_total, summary.totals.throttled
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_revoked_tokens_are_renewed_without_failed_attempts() {
    let config = SimConfig {
        token_ttl: Duration::from_secs(3),
        faults: Faults {
            latency_ms: 100,
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let app = TestApp::spawn_with("tokens", config, None)
        .await
        .with_worker()
        .await;
    let n = app.seed_grades(2, 600).await;
    let policy = Policy {
        lanes_per_school: 1,
        ..fast_policy()
    };
    let id = app.start_sync(policy).await;
    // Two revocations 3 s apart, then a few seconds of tokens living out their 3 s.
    app.wait_for_batches(1).await;
    app.sim.revoke_tokens().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.sim.revoke_tokens().await;
    let summary = app.result(&id).await;

    let t = assert_invariants(&app, &quarter(), n, &summary).await;
    assert_eq!(t.synced, n);
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    // The first token, one after each revocation, and at least one renewed on expiry.
    assert!(ledger.tokens_issued >= 4, "{} tokens", ledger.tokens_issued);
    assert!(
        ledger.status_counts.get(&401).copied().unwrap_or(0) > 0,
        "some request met a dead token: {:?}",
        ledger.status_counts
    );
    assert_eq!(summary.totals.retries, 0, "{summary:?}");
    assert_eq!(summary.totals.batches_dead, 0, "{summary:?}");
    eprintln!(
        "{} tokens issued, {} 401s",
        ledger.tokens_issued, ledger.status_counts[&401]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_while_the_first_send_is_in_flight_gets_409_and_waits() {
    // The API takes 6 s over the batch: the POST times out (2 s), so does the receipt
    // lookup, and the resend finds the key still claimed by the first request: 409.
    let faults = Faults {
        latency_ms: 6_000,
        ..Faults::default()
    };
    let app = TestApp::spawn("inflight409", faults).await;
    let n = app.seed_grades(1, 100).await;
    let id = app.start_sync(fast_policy()).await;
    app.wait_for_status(409).await;
    // The slow request keeps its 6 s; later ones (the reconciliation) are fast again.
    app.sim.set_faults(Faults::default()).await;
    let summary = app.result(&id).await;

    let t = assert_invariants(&app, &quarter(), n, &summary).await;
    assert_eq!(t.synced, n);
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert_eq!(ledger.batches_committed, 1);
    let conflicts = ledger.status_counts[&409];
    assert!(conflicts >= 1);
    assert!(summary.totals.throttled >= conflicts, "{summary:?}");
    assert_eq!(
        summary.totals.retries, 1,
        "only the timeout is a failed attempt"
    );
    let batch = *ledger
        .records
        .values()
        .next()
        .unwrap()
        .batches
        .first()
        .unwrap();
    assert_eq!(
        ledger.replays.get(&batch).copied(),
        Some(1),
        "the send after the 409s was answered as a replay"
    );
    eprintln!(
        "{conflicts} 409s, {} throttled waits",
        summary.totals.throttled
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_resends_never_produce_a_422() {
    // 503s before the key is claimed, and answers slower than the client waits (2 to 4 s
    // against 2 s) with every receipt lookup refused, so that no lost answer is settled by
    // a lookup: every batch is sent again after the API committed it (replays).
    let seed = test_seed();
    let faults = Faults {
        p_503: 0.3,
        latency_ms: 3_000,
        latency_jitter_ms: 1_000,
        p_lookup_503: 1.0,
        seed,
        ..Faults::default()
    };
    let app = TestApp::spawn("no422", faults).await;
    let n = app.seed_grades(3, 200).await;
    let policy = Policy {
        // 0.3 per attempt: a long ladder keeps a batch from dead-lettering on bad luck.
        backoff_ms: vec![100, 200, 400, 400, 400, 400, 400, 400],
        ..fast_policy()
    };
    let id = app.start_sync(policy).await;
    wait_for_records(&app, n).await;
    app.sim.set_faults(Faults::default()).await; // a fast API for the reconciliation
    let summary = app.result(&id).await;

    let t = assert_invariants(&app, &quarter(), n, &summary).await;
    assert_eq!(t.synced, n);
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert_eq!(
        ledger.status_counts.get(&422),
        None,
        "{:?}",
        ledger.status_counts
    );
    // Resends happened (after 503s, or after timeouts: with this latency, most POSTs).
    assert!(summary.totals.retries >= 2, "{summary:?}");
    assert!(
        !ledger.replays.is_empty(),
        "some batch was resent after its commit"
    );
    // A replay is the API's word that the same key came with the same bytes (else 422);
    // each replayed key is one of our batches, and its records were applied by it once.
    for key in ledger.replays.keys() {
        let (status, records, attempts) = app.batch_row(*key).await.expect("a batch of ours");
        assert_eq!(status, "synced");
        assert!(attempts >= 2, "{key} was sent again ({attempts} attempts)");
        let applied_by: Vec<_> = ledger
            .records
            .values()
            .filter(|r| r.batches.contains(key))
            .collect();
        assert_eq!(
            applied_by.len() as i64,
            records,
            "{key} applied all its records"
        );
        assert!(applied_by.iter().all(|r| r.batches == [*key]));
    }
    eprintln!(
        "{} replays of {} keys; {} retries; statuses {:?}",
        ledger.replays.values().sum::<u32>(),
        ledger.replays.len(),
        summary.totals.retries,
        ledger.status_counts
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_alone_are_rejected_and_their_batches_resent_without_them() {
    let poisoned = ["stu-001-000003", "stu-002-000017"];
    let message = "the registry holds a court order for this student";
    let faults = Faults {
        reject_rules: poisoned
            .iter()
            .map(|s| RejectRule {
                field: "student_id".into(),
                equals: (*s).into(),
                message: message.into(),
            })
            .collect(),
        ..Faults::default()
    };
    let app = TestApp::spawn("poison", faults).await;
    let n = app.seed_grades(2, 200).await;
    let summary = app.sync_and_wait(fast_policy()).await;

    let t = assert_invariants(&app, &quarter(), n, &summary).await;
    // The data has 10 records per student (one per course).
    let expected: Vec<String> = (0..2)
        .flat_map(|s| {
            let student = [3, 17][s];
            (student * 10..student * 10 + 10)
                .map(move |r| format!("rec-school-{:03}-{r:07}", s + 1))
        })
        .collect();
    let rejected = app.rejections(&quarter()).await;
    let ids: Vec<&str> = rejected.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, expected, "exactly the poisoned records are rejected");
    for (id, reason) in &rejected {
        assert!(
            reason.as_deref().unwrap().contains(message),
            "{id}: {reason:?}"
        );
    }
    assert_eq!(t.rejected, 20);
    assert_eq!(t.synced, n - 20, "nothing valid held back");
    assert_eq!(summary.totals.records_rejected, 20);
    assert_eq!(summary.totals.batches_rejected, 2, "{summary:?}");
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    assert!(expected.iter().all(|id| !ledger.records.contains_key(id)));
    eprintln!(
        "{} rejected, {} synced in {} batches ({} rejected whole)",
        t.rejected, t.synced, summary.totals.batches_sent, summary.totals.batches_rejected
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cli_starts_of_one_quarter_one_runs_the_other_exits_4() {
    let app = TestApp::spawn("twostarts", Faults::default()).await;
    let q = unique_quarter();
    let n = app.seed_grades_in(&q, 2, 100).await;
    let quarter_text = q.to_string();
    let policy = serde_json::to_string(&fast_policy()).unwrap();
    let args = [
        "sync",
        "start",
        "--quarter",
        &quarter_text,
        "--policy",
        &policy,
    ];
    let spawn = || {
        app.gradesync_command()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let codes: Vec<_> = outs.iter().map(|o| o.status.code()).collect();
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    eprintln!("exit codes {codes:?}");
    let winner = outs.iter().find(|o| o.status.code() == Some(0));
    let loser = outs.iter().find(|o| o.status.code() == Some(4));
    let (Some(winner), Some(loser)) = (winner, loser) else {
        panic!(
            "one start succeeds, the other exits 4: {codes:?}\n{}\n{}",
            text(&outs[0]),
            text(&outs[1])
        );
    };
    let id = gradesync::commands::sync::workflow_id(&q, app.task_queue());
    assert!(
        text(winner).contains(&format!("started {id}")),
        "{}",
        text(winner)
    );
    let refusal = String::from_utf8_lossy(&loser.stderr);
    assert!(refusal.contains("already running"), "{refusal}");
    assert!(refusal.contains(&quarter_text) && !refusal.contains("panicked"));

    let summary = app.result(&id).await;
    let t = assert_invariants(&app, &q, n, &summary).await;
    assert_eq!(t.synced, n);
    assert_ledger_clean(&app.ledger().await);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_past_the_ladder_then_dlq_replay_via_the_cli_completes_the_quarter() {
    let app = TestApp::spawn("dlqcli", outage()).await;
    let q = unique_quarter();
    let quarter_text = q.to_string();
    let n = app.seed_grades_in(&q, 2, 60).await;
    // No redrive waves: the dead letters stay for `dlq replay` to send.
    let policy = r#"{"backoff_ms":[200,400,800],"redrive_waves_ms":[],"redrive_every_ms":0}"#;
    let started = app.gradesync(&[
        "sync",
        "start",
        "--quarter",
        &quarter_text,
        "--policy",
        policy,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let id = gradesync::commands::sync::workflow_id(&q, app.task_queue());
    // Both schools' batches go through the whole ladder and are dead-lettered; the API
    // comes back only then.
    app.wait_for_alerts(2).await;
    app.sim.set_faults(Faults::default()).await;
    let first = app.result(&id).await;
    let letters = app.store.dead_letters(&q).await.unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(first.totals.records_dead, n);
    assert_eq!(first.totals.retries, 6, "three timers per batch");
    let t = assert_invariants(&app, &q, n, &first).await;
    assert_eq!(t.dead, n);
    assert!(app.ledger().await.records.is_empty());

    let out = app.gradesync(&[
        "dlq",
        "replay",
        "--quarter",
        &quarter_text,
        "--wait",
        "--policy",
        policy,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 dead-lettered batches"), "{stdout}");
    assert!(stdout.contains("complete"), "{stdout}");
    let replayed = app.result(&id).await; // the latest run of the quarter's id
    let t = assert_invariants(&app, &q, n, &replayed).await;
    assert_eq!(t.synced, n);
    assert!(app.store.dead_letters(&q).await.unwrap().is_empty());
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);
    for rec in ledger.records.values() {
        assert_eq!(rec.applied, 1);
        assert!(
            letters.iter().any(|d| rec.batches == [d.batch_id]),
            "applied by its original batch, under its original key"
        );
    }
    let alerts = app.alerts.texts();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    for d in &letters {
        assert!(alerts.iter().any(|a| a.contains(&d.batch_id.to_string())));
    }
    app.stop().await;
}

const CANARIES: [&str; 3] = ["CANARY-STU-7731", "Canary Person Zyx", "CANARY-GRADE-Q"];

/// The seeded data of `schools x per_school`, with canaries planted in three records:
/// a student id, a name in a comment and a teacher's name, a grade value.
fn canary_data(schools: usize, per_school: usize) -> Vec<u8> {
    let spec = gradesync::datagen::DataSpec {
        quarter: QUARTER.into(),
        schools,
        records_per_school: per_school,
        seed: 1,
        ..Default::default()
    };
    let mut buf = Vec::new();
    gradesync::datagen::write_jsonl(&spec, &mut buf).unwrap();
    let mut out = Vec::new();
    for (i, line) in buf
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let mut v: Value = serde_json::from_slice(line).unwrap();
        match i {
            5 => v["student_id"] = CANARIES[0].into(),
            20 => {
                v["evaluations"][0]["comments"] =
                    format!("talked with {} about the project", CANARIES[1]).into();
                v["teacher"]["name"] = CANARIES[1].into();
            }
            _ if i == per_school + 40 => v["grade"] = CANARIES[2].into(),
            _ => {}
        }
        out.extend(serde_json::to_vec(&v).unwrap());
        out.push(b'\n');
    }
    out
}

/// Where a canary was found: `(place, canary)`.
fn canary_hits(place: &str, text: &str) -> Vec<(String, &'static str)> {
    CANARIES
        .iter()
        .filter(|c| text.contains(*c))
        .map(|c| (place.to_string(), *c))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_records_never_leave_the_store_and_the_api() {
    let seed = test_seed();
    let reject = RejectRule {
        field: "record_id".into(),
        equals: "rec-school-002-0000077".into(),
        message: "the registry refuses this record".into(),
    };
    let faults = Faults {
        p_503: 0.15,
        p_silent_loss: 0.03,
        reject_rules: vec![reject.clone()],
        seed,
        ..Faults::default()
    };
    let app = TestApp::spawn_without_worker("canary", faults).await;
    let n = app.import_bytes(&canary_data(2, 200)).await;
    let log = app.dir.path().join("worker.log");
    let mut worker = Worker(app.spawn_logged_worker_process("debug", &log));
    // No redrive waves: the dead letters stay, for the replay below.
    let id = app.start_sync(no_redrive(fast_policy())).await;

    // An outage that outlasts the ladder of what is in flight, then a healthier API.
    app.wait_for_batches(2).await;
    app.sim
        .set_faults(Faults {
            reject_rules: vec![reject.clone()],
            ..outage()
        })
        .await;
    app.wait_for_alerts(1).await;
    app.sim
        .set_faults(Faults {
            p_503: 0.1,
            reject_rules: vec![reject],
            seed,
            ..Faults::default()
        })
        .await;
    let first = app.result(&id).await;
    let t = assert_invariants(&app, &quarter(), n, &first).await;
    // The outage dead-lettered what was in flight; the poisoned record is rejected unless
    // its batch was among those.
    assert!(t.dead > 0 && t.rejected <= 1, "{t:?}");
    assert_eq!(
        first.reconcile.repaired,
        app.ledger().await.silently_lost.len() as u64,
        "what the API lost was sent again"
    );
    // The dead letters replayed, so that every canary goes all the way to the API.
    app.store.requeue_dead_letters(&quarter()).await.unwrap();
    let replay = format!("{id}-replay");
    gradesync::commands::sync::start(
        &app.client,
        app.task_queue(),
        &replay,
        quarter(),
        fast_policy(),
    )
    .await
    .unwrap();
    let summary = app.result(&replay).await;
    worker.kill();
    let t = assert_quarter_invariants(&app, &quarter(), n, &summary).await;
    assert_eq!((t.synced, t.rejected, t.dead), (n - 1, 1, 0));
    let ledger = app.ledger().await;
    assert_ledger_clean(&ledger);

    let mut hits = Vec::new();
    let mut scanned = Vec::new();
    // Every history of the run: the parent and every child run, payloads decoded.
    let prefix = app.workflow_id();
    let runs = app.workflow_runs_starting_with(&prefix);
    assert!(runs.len() >= 3, "parent and children: {runs:?}");
    for (wf, run) in &runs {
        let out = app.temporal_cli(&[
            "workflow",
            "show",
            "--workflow-id",
            wf,
            "--run-id",
            run,
            "--output",
            "json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let history: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut texts = Vec::new();
        crate::history::strings_and_decoded(&history, &mut texts);
        assert!(
            texts
                .iter()
                .any(|t| t.contains("SendBatch") || t.contains("SchoolSync"))
        );
        for text in texts {
            hits.extend(canary_hits(&format!("history of {wf} ({run})"), &text));
        }
        scanned.push(format!("history {wf}"));
    }
    // The worker's own log, at debug level.
    let worker_log = std::fs::read_to_string(&log).unwrap();
    assert!(worker_log.contains("SendBatch"), "the log is the worker's");
    hits.extend(canary_hits("worker log", &worker_log));
    scanned.push(format!("worker log ({} bytes)", worker_log.len()));
    // Every webhook body, whole.
    for (name, hook) in [("alert", &app.alerts), ("compliance", &app.compliance)] {
        let bodies = hook.received.lock().unwrap().clone();
        assert!(!bodies.is_empty(), "{name} webhook received something");
        for body in &bodies {
            hits.extend(canary_hits(&format!("{name} webhook"), &body.to_string()));
        }
        scanned.push(format!("{} {name} webhook bodies", bodies.len()));
    }
    // Every report file, JSON and CSV, of every round.
    for entry in std::fs::read_dir(app.report_dir()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        hits.extend(canary_hits(&path.display().to_string(), &text));
        scanned.push(format!("report {}", path.display()));
    }
    // Every report the store keeps, JSON and CSV, of every round.
    let stored_reports = app.store.reports(&quarter()).await.unwrap();
    assert!(
        !stored_reports.is_empty(),
        "the store keeps the run's reports"
    );
    for info in stored_reports {
        let stored = app
            .store
            .report(&quarter(), &info.stamp)
            .await
            .unwrap()
            .unwrap();
        for (kind, text) in [("json", &stored.json), ("csv", &stored.csv)] {
            hits.extend(canary_hits(
                &format!("stored report {} ({kind})", info.stamp),
                text,
            ));
        }
        scanned.push(format!("stored report {}", info.stamp));
    }
    // Sanity: the canaries did go all the way.
    for id in [
        "rec-school-001-0000005",
        "rec-school-001-0000020",
        "rec-school-002-0000040",
    ] {
        assert_eq!(ledger.records[id].applied, 1, "{id} at the API");
    }
    eprintln!("scanned: {scanned:#?}");
    assert!(hits.is_empty(), "canaries leaked: {hits:#?}");
}

/// Maximal runs of exactly `len` hex digits: the simulator's access tokens are 48.
fn hex_runs(text: &str, len: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            if run.len() == len {
                out.push(run.clone());
            }
            run.clear();
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_secret_and_tokens_never_reach_the_logs() {
    let secret = "sEcReT-7f41-DoNotLog-9b2e";
    let config = SimConfig {
        client_secret: secret.into(),
        token_ttl: Duration::from_secs(4),
        faults: Faults {
            latency_ms: 100,
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let app = TestApp::spawn_with("secrets", config, None).await;
    let n = app.seed_grades(2, 200).await;
    let log = app.dir.path().join("worker.log");
    let mut worker = Worker(app.spawn_logged_worker_process("trace", &log));
    let id = app.start_sync(fast_policy()).await;
    app.wait_for_batches(1).await;
    for _ in 0..2 {
        app.sim.revoke_tokens().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let summary = app.result(&id).await;
    worker.kill();

    let t = assert_invariants(&app, &quarter(), n, &summary).await;
    assert_eq!(t.synced, n);
    let ledger = app.ledger().await;
    assert!(ledger.tokens_issued > 1, "{} tokens", ledger.tokens_issued);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("TRACE") && text.contains("access token issued"),
        "the log is at trace level and saw the tokens come"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("gradesync:{secret}"));
    assert!(!text.contains(secret), "the client secret is in the log");
    assert!(
        !text.contains(&basic),
        "the Basic credentials are in the log"
    );
    assert!(
        !text.contains("Bearer "),
        "an Authorization header is in the log"
    );
    let tokens = hex_runs(&text, 48);
    assert!(
        tokens.is_empty(),
        "token-like values in the log: {tokens:?}"
    );
    eprintln!(
        "{} tokens issued, {} 401s; {} bytes of trace log scanned",
        ledger.tokens_issued,
        ledger.status_counts.get(&401).copied().unwrap_or(0),
        text.len()
    );
}
