//! Production on many hosts: several worker processes on one PostgreSQL store. These run
//! only in the PostgreSQL pass of `scripts/test.sh` (which starts the server and sets
//! `GRADESYNC_TEST_POSTGRES_URL`); the SQLite pass leaves them out by name.

use std::time::Duration;

use gradesync_activities::model::Policy;
use gradesync_activities::store::scratch;
use gradesync_govapi::sim::Faults;

use crate::helpers::{TestApp, assert_ledger_clean, fast_policy, quarter};
use crate::loaded::{
    DelayProxy, Workers, loaded_tls_app, postgres_addr, skewed_workers_sync_on_a_loaded_host,
};
use crate::temporal_tls::Certs;

fn require_postgres(app: &TestApp) {
    assert!(
        scratch::test_server().is_some(),
        "this test needs PostgreSQL: run scripts/test.sh, or set GRADESYNC_TEST_POSTGRES_URL \
         to a server's admin URL"
    );
    assert!(
        app.worker_args
            .store
            .database_url
            .starts_with("postgres://"),
        "the test store is not on PostgreSQL: {}",
        app.worker_args.store.database_url
    );
}

/// Three hosts whose clocks are 400 ms behind, right, and 400 ms ahead share one store and
/// one API budget of 2 requests per second. Cut on each host's clock, two starts from
/// different hosts could land in one window of the API; cut on the database server's,
/// none does. One worker is killed mid-run; the others finish it, nothing lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_with_skewed_clocks_keep_one_budget_and_survive_a_kill() {
    let faults = Faults {
        latency_ms: 300,
        latency_jitter_ms: 150,
        ..Faults::default()
    };
    let app = TestApp::spawn_without_worker("pg-skew", faults).await;
    require_postgres(&app);
    let n = app.seed_grades(3, 200).await;
    let mut workers = Workers(
        [-400, 0, 400]
            .iter()
            .map(|skew| {
                app.worker_command()
                    .env("GRADESYNC_FAULT_CLOCK_SKEW_MS", skew.to_string())
                    .spawn()
                    .expect("the gradesync binary starts")
            })
            .collect(),
    );
    let policy = Policy {
        // Small batches and nine sends at once: the run is paced by the budget throughout.
        max_batch_records: 10,
        parallel_schools: 3,
        lanes_per_school: 3,
        // A killed worker's tasks time out in seconds.
        send_start_to_close_ms: 5_000,
        send_schedule_to_close_ms: 10_000,
        query_timeout_ms: 5_000,
        heartbeat_timeout_ms: 3_000,
        ..fast_policy()
    };
    let id = app.start_sync(policy).await;
    // Every process has sent (each fetched its own token) before one of them dies.
    for _ in 0..1200 {
        if app.ledger().await.tokens_issued >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ledger = app.ledger().await;
    assert_eq!(
        ledger.tokens_issued, 3,
        "all three workers sent ({} batches committed)",
        ledger.batches_committed
    );
    let killed = &mut workers.0[2];
    killed.kill().expect("SIGKILL the worker ahead of time");
    killed.wait().unwrap();
    let summary = app.result(&id).await;
    drop(workers);

    assert!(summary.complete, "{summary:?}");
    let ledger = app.ledger().await;
    eprintln!(
        "3 skewed workers: {} batches, at most {} requests in 1 s, tightest span {:?} ms",
        ledger.batches_committed, ledger.max_requests_in_window, ledger.tightest_span_ms
    );
    assert_ledger_clean(&ledger);
    assert_eq!(ledger.records.len() as u64, n);
    let counts = app.store.status_counts(&quarter()).await.unwrap();
    assert_eq!(counts.iter().map(|c| c.synced).sum::<u64>(), n);
}

/// The acceptance test of the shared budget: the database on "another host", 20 ms away
/// each way through a delaying proxy, so every claim, report and clock reading takes
/// tens of ms and the gates learn the server's clock only to within half a round trip;
/// three workers with skewed clocks; the API over mutual TLS; every core busy. At most 2
/// requests in any 1 s at the API, no 429, nothing lost or applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loaded_tls_workers_keep_the_window_with_the_database_20ms_away() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let app = loaded_tls_app("pg-far", &certs).await;
    require_postgres(&app);
    let direct = app.worker_args.store.database_url.clone();
    let proxy = DelayProxy::start(postgres_addr(&direct), Duration::from_millis(20)).await;
    let far = proxy.url_for(&direct);
    skewed_workers_sync_on_a_loaded_host(&app, &far, "database 20 ms away").await;
    drop(proxy);
    app.stop().await;
}
