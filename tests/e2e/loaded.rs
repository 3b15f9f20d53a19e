//! The API's window on a loaded host: worker processes whose clocks disagree, sending over
//! mutual TLS while a CPU-burning process runs on every core, so requests leave late (a
//! fresh TCP+TLS connection, a connection task waiting for a thread) and the gate must
//! hear when each really left. The PostgreSQL variant, with the database behind a proxy
//! that delays it 20 ms each way, is in `postgres.rs`; the helpers for both are here.
//!
//! On SQLite the store's clock is the host's real one, which the injected skew does not
//! move: a skewed worker is a process whose own clock is off (as under a faked clock),
//! and it must learn how far off from the store's, as it does from a database server's.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gradesync_activities::model::Policy;
use gradesync_govapi::sim::{Faults, Ledger, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::gov_tls::mtls_app_with;
use crate::helpers::{TestApp, assert_applied_once, assert_ledger_clean, fast_policy, quarter};
use crate::temporal_tls::Certs;

/// One busy process per core, for as long as this lives.
pub(crate) struct CpuBurners(Vec<Child>);

impl CpuBurners {
    pub(crate) fn start() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self(
            (0..cores)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .stdin(Stdio::null())
                        .spawn()
                        .expect("sh starts")
                })
                .collect(),
        )
    }
}

impl Drop for CpuBurners {
    fn drop(&mut self) {
        for b in &mut self.0 {
            let _ = b.kill();
            let _ = b.wait();
        }
    }
}

/// A TCP proxy that holds every byte `delay` before passing it on, both ways: a database
/// on another host, 2 x `delay` away.
pub(crate) struct DelayProxy {
    pub(crate) addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    pub(crate) async fn start(target: SocketAddr, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        delayed(client_read, server_write, delay),
                        delayed(server_read, client_write, delay)
                    );
                });
            }
        });
        Self { addr, task }
    }

    /// `url` (a PostgreSQL URL) through this proxy.
    pub(crate) fn url_for(&self, url: &str) -> String {
        let mut url = reqwest::Url::parse(url).unwrap();
        url.set_host(Some(&self.addr.ip().to_string())).unwrap();
        url.set_port(Some(self.addr.port())).unwrap();
        url.to_string()
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            if tx
                .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                break;
            }
        }
    };
    let write = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// The server's address in a PostgreSQL URL.
pub(crate) fn postgres_addr(url: &str) -> SocketAddr {
    let url = reqwest::Url::parse(url).unwrap();
    let host = url.host_str().expect("a host in the database URL");
    let port = url.port().unwrap_or(5432);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .unwrap()
        .next()
        .expect("the database host resolves")
}

/// The simulator over mutual TLS with the API's latency, as the rate tests use it.
pub(crate) async fn loaded_tls_app(name: &str, certs: &Certs) -> TestApp {
    let config = SimConfig {
        faults: Faults {
            latency_ms: 300,
            latency_jitter_ms: 150,
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    mtls_app_with(name, certs, config).await
}

/// Three worker processes with clocks 400 ms behind, right and 400 ms ahead, on the
/// store at `database_url`, sync a quarter in batches small enough that the budget binds
/// throughout, with a CPU-burning process on every core. The API's ledger must show at
/// most 2 requests in any 1 s and no 429, every record applied once; returns it.
pub(crate) async fn skewed_workers_sync_on_a_loaded_host(
    app: &TestApp,
    database_url: &str,
    label: &str,
) -> Ledger {
    let burners = CpuBurners::start();
    let n = app.seed_grades(3, 100).await;
    // `GRADESYNC_TEST_WORKER_LOG_DIR` keeps the workers' logs past the test.
    let logs = std::env::var_os("GRADESYNC_TEST_WORKER_LOG_DIR")
        .map_or_else(|| app.dir.path().to_path_buf(), std::path::PathBuf::from);
    let log = |skew: i64| logs.join(format!("worker{skew}.log"));
    let workers = Workers(
        [-400, 0, 400]
            .into_iter()
            .map(|skew| {
                app.worker_command()
                    .env("GRADESYNC_DATABASE_URL", database_url)
                    .env("GRADESYNC_FAULT_CLOCK_SKEW_MS", skew.to_string())
                    // `GRADESYNC_TEST_WORKER_LOG=gradesync_activities::rate=trace` shows
                    // each claim and departure.
                    .env(
                        "GRADESYNC_LOG",
                        std::env::var("GRADESYNC_TEST_WORKER_LOG").unwrap_or("warn".into()),
                    )
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(log(skew)).unwrap())
                    .spawn()
                    .expect("the gradesync binary starts")
            })
            .collect(),
    );
    let policy = Policy {
        max_batch_records: 5,
        parallel_schools: 3,
        lanes_per_school: 3,
        ..fast_policy()
    };
    let started = Instant::now();
    let summary = app.sync_and_wait(policy).await;
    let elapsed = started.elapsed().as_secs_f64();
    drop(workers);
    drop(burners);

    let ledger = app.ledger().await;
    eprintln!(
        "{label}: {} requests ({} batch POSTs) in {elapsed:.1} s, budget use {:.1}%, at most \
         {} in 1 s, tightest spans {:?} (from {} ms)",
        ledger.requests_total,
        ledger.batch_posts,
        100.0 * ledger.requests_total as f64 / (2.0 * elapsed),
        ledger.max_requests_in_window,
        ledger.tightest_spans,
        ledger.started_unix_ms
    );
    for skew in [-400, 0, 400] {
        let text = std::fs::read_to_string(log(skew)).unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        {
            eprintln!("worker {skew}: {line}");
        }
    }
    assert!(summary.complete, "{summary:?}");
    assert_ledger_clean(&ledger);
    assert_applied_once(&ledger, n);
    assert_eq!(ledger.tokens_issued, 3, "every worker sent");
    let counts = app.store.status_counts(&quarter()).await.unwrap();
    assert_eq!(counts.iter().map(|c| c.synced).sum::<u64>(), n);
    ledger
}

/// Worker processes, killed when the test ends however it ends.
pub(crate) struct Workers(pub(crate) Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.0 {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// On the pass's store (SQLite in the first pass of `scripts/test.sh`, PostgreSQL on the
/// same host in the second), over mTLS, with every core busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_skewed_workers_keep_the_window_over_tls_on_a_loaded_host() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let app = loaded_tls_app("loaded", &certs).await;
    let url = app.worker_args.store.database_url.clone();
    skewed_workers_sync_on_a_loaded_host(&app, &url, "loaded host").await;
    app.stop().await;
}
