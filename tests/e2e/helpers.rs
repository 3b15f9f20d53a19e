//! `TestApp`: everything one end-to-end test needs, isolated from every other test: its own
//! task queue, SQLite file, report directory, simulator port and webhook receiver, on the
//! shared Temporal dev server (TEMPORAL_ADDRESS, started by scripts/test.sh; started here if
//! none answers).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use gradesync::datagen::{self, DataSpec};
use gradesync::devserver;
use gradesync::settings::{GovArgs, OutputArgs, StoreArgs, TemporalArgs};
use gradesync::worker::{BackgroundWorkers, WorkerArgs};
use gradesync_activities::model::{Policy, SyncSummary};
use gradesync_activities::store::{Store, scratch};
use gradesync_govapi::Quarter;
use gradesync_govapi::sim::{self, Faults, Ledger, SimConfig, SimHandle};
use serde_json::Value;
use temporalio_client::Client;
use tokio::sync::OnceCell;

pub const QUARTER: &str = "2026-Q3";

pub fn quarter() -> Quarter {
    QUARTER.parse().unwrap()
}

/// Timers compressed so a test's whole retry ladder takes about a second; everything else
/// keeps the seed's defaults.
pub fn fast_policy() -> Policy {
    Policy {
        backoff_ms: vec![200, 400, 800],
        redrive_waves_ms: vec![1_000, 2_000],
        redrive_every_ms: 0,
        ..Policy::default()
    }
}

/// `policy` without dead-letter redrive waves: for tests of what is left dead after a run
/// (the DLQ, its alert, `dlq replay`).
pub fn no_redrive(policy: Policy) -> Policy {
    Policy {
        redrive_waves_ms: Vec::new(),
        redrive_every_ms: 0,
        ..policy
    }
}

/// An API outage that lasts until the test ends it.
pub fn outage() -> Faults {
    Faults {
        outage_ms: 600_000,
        ..Faults::default()
    }
}

static SERVER: OnceCell<String> = OnceCell::const_new();

/// The dev server's address: TEMPORAL_ADDRESS when it answers, else the one the test
/// processes of this machine share (started by the first that needs it). nextest runs each
/// test in a process of its own, so a server per process would leave one running per test.
pub async fn temporal_address() -> String {
    SERVER
        .get_or_init(|| async {
            if let Ok(addr) = std::env::var("TEMPORAL_ADDRESS")
                && devserver::answers(&addr).await
            {
                return addr;
            }
            shared_dev_server().await
        })
        .await
        .clone()
}

/// The address of the dev server the test processes share, starting it when none answers.
/// A lock file lets one process start it while the others wait for its address.
async fn shared_dev_server() -> String {
    let dir = std::env::temp_dir().join("gradesync-e2e-devserver");
    std::fs::create_dir_all(&dir).unwrap();
    let (address_file, lock) = (dir.join("address"), dir.join("lock"));
    loop {
        if let Ok(addr) = std::fs::read_to_string(&address_file)
            && devserver::answers(addr.trim()).await
        {
            return addr.trim().to_string();
        }
        // A lock left by a process that died while starting the server is taken over.
        let stale = std::fs::metadata(&lock)
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().unwrap_or_default() > Duration::from_secs(120));
        if stale {
            let _ = std::fs::remove_file(&lock);
        }
        if std::fs::File::create_new(&lock).is_ok() {
            let server = devserver::start(free_port(), None, &dir.join("temporal.db"))
                .await
                .unwrap();
            let addr = server.address.clone();
            std::fs::write(&address_file, &addr).unwrap();
            let _ = std::fs::remove_file(&lock);
            // Outlives this process: the next test processes use it.
            std::mem::forget(server);
            return addr;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Worker and client logs in the test's output (`GRADESYNC_LOG=debug` for more).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRADESYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The simulator stands in for an API on machines of its own, so its arrival times must
/// not wait for this host's CPU: a simulator thread that wakes late stamps an arrival
/// late, and two requests whose heads were in the socket 1,015 ms apart look closer than
/// the client kept them. On a loaded 2-core host that was tens of ms even at nice -10 (the
/// benchmark's setting), so its runtime's threads run first of all (SCHED_FIFO), falling
/// back to nice -10 and then to the default priority, saying so, without the privilege.
/// The workers under test keep the default priority.
fn sim_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        // Threads inherit their creator's scheduling, so build from a thread that raised its own.
        std::thread::spawn(|| {
            raise_priority();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("gov-sim")
                .enable_all()
                .build()
                .expect("the simulator's runtime starts")
        })
        .join()
        .expect("the simulator's runtime starts")
    })
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn raise_priority() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sched_setscheduler and setpriority only change the calling thread's
    // scheduling (on Linux, id 0 is the calling thread); `param` outlives the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
        return;
    }
    let realtime = std::io::Error::last_os_error();
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) } == 0 {
        eprintln!("note: the simulator runs at nice -10, not real-time ({realtime})");
        return;
    }
    eprintln!(
        "note: cannot raise the simulator's priority ({}); its arrival times share the CPU with the workers",
        std::io::Error::last_os_error()
    );
}

#[cfg(not(target_os = "linux"))]
fn raise_priority() {}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A local Slack-compatible webhook that keeps every JSON body it receives.
pub struct Webhook {
    pub url: String,
    pub received: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    pub async fn spawn() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route(
                "/",
                post(
                    |State(r): State<Arc<Mutex<Vec<Value>>>>, Json(v): Json<Value>| async move {
                        r.lock().unwrap().push(v);
                        "ok"
                    },
                ),
            )
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, received }
    }

    pub fn texts(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|v| v["text"].as_str().map(str::to_string))
            .collect()
    }
}

pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub sim: SimHandle,
    pub client: Client,
    pub worker_args: WorkerArgs,
    pub alerts: Webhook,
    pub compliance: Webhook,
    workers: Option<BackgroundWorkers>,
}

impl TestApp {
    /// Everything up, worker running in-process.
    pub async fn spawn(name: &str, faults: Faults) -> Self {
        let app = Self::spawn_without_worker(name, faults).await;
        app.with_worker().await
    }

    pub async fn spawn_without_worker(name: &str, faults: Faults) -> Self {
        let sim = SimConfig {
            faults,
            ..SimConfig::default()
        };
        Self::spawn_with(name, sim, None).await
    }

    /// Like [`TestApp::spawn_without_worker`], with the simulator's whole configuration
    /// (credentials, token lifetime) and, when given, another Temporal server than the
    /// shared one. The worker's credentials are the simulator's.
    pub async fn spawn_with(name: &str, config: SimConfig, temporal: Option<String>) -> Self {
        Self::spawn_with_sim_tls(name, config, temporal, None).await
    }

    /// Like [`TestApp::spawn_with`], the simulator serving HTTPS with `tls` when given
    /// (the worker's URL is then `https://`; its CA and client certificate are the test's
    /// to set).
    pub async fn spawn_with_sim_tls(
        name: &str,
        config: SimConfig,
        temporal: Option<String>,
        tls: Option<sim::SimTls>,
    ) -> Self {
        init_logs();
        let dir = tempfile::tempdir().unwrap();
        // SQLite in the test's dir, or a database of its own on the test PostgreSQL server.
        let database_url = scratch::url_for(dir.path()).await.unwrap();
        let store = Store::connect(&database_url).await.unwrap();
        let (client_id, client_secret) = (config.client_id.clone(), config.client_secret.clone());
        let sim = sim_runtime()
            .spawn(sim::spawn_tls(config, tls))
            .await
            .unwrap()
            .unwrap();
        let alerts = Webhook::spawn().await;
        let compliance = Webhook::spawn().await;
        // A fresh queue per run, so a test never meets another test's (or run's) tasks.
        let task_queue = format!("{name}-{}", uuid::Uuid::new_v4().simple());
        let temporal_address = match temporal {
            Some(address) => address,
            None => temporal_address().await,
        };
        let temporal = TemporalArgs::local(temporal_address, task_queue);
        let worker_args = WorkerArgs {
            temporal: temporal.clone(),
            store: StoreArgs { database_url },
            source: gradesync::settings::SourceArgs::none(),
            gov: GovArgs {
                http_timeout_secs: 2.0,
                ..GovArgs::simulator(sim.base_url(), &client_id, &client_secret)
            },
            output: OutputArgs {
                alert_webhook_url: Some(alerts.url.clone()),
                compliance_webhook_url: Some(compliance.url.clone()),
                report_dir: Some(dir.path().join("reports")),
                ..OutputArgs::none()
            },
            ops: gradesync::ops::OpsArgs::none(),
        };
        let client = gradesync::temporal::connect(&temporal).await.unwrap();
        Self {
            dir,
            store,
            sim,
            client,
            worker_args,
            alerts,
            compliance,
            workers: None,
        }
    }

    /// No report directory: reports are kept in the store only, as on a worker started
    /// without `GRADESYNC_REPORT_DIR`. Call before starting a worker.
    pub fn without_report_files(mut self) -> Self {
        self.worker_args.output.report_dir = None;
        self
    }

    pub async fn with_worker(mut self) -> Self {
        self.workers = Some(
            BackgroundWorkers::start(self.worker_args.clone())
                .await
                .unwrap(),
        );
        self
    }

    pub fn temporal_address(&self) -> &str {
        let address = &self.worker_args.temporal.temporal_address;
        address
            .as_deref()
            .expect("TestApp sets the Temporal address")
    }

    pub fn task_queue(&self) -> &str {
        &self.worker_args.temporal.task_queue
    }

    /// `gradesync worker` as a separate process with this test's settings, so a test can
    /// SIGKILL it like a crashed host.
    pub fn spawn_worker_process(&self) -> std::process::Child {
        self.worker_command()
            .env("GRADESYNC_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the gradesync binary starts")
    }

    /// `gradesync worker` with this test's settings, not started yet.
    pub fn worker_command(&self) -> std::process::Command {
        let mut cmd = self.gradesync_command();
        cmd.arg("worker");
        cmd
    }

    /// The `gradesync` binary with this test's whole configuration in its environment
    /// (Temporal, task queue, database, API, webhooks, reports), not started yet.
    pub fn gradesync_command(&self) -> std::process::Command {
        let a = &self.worker_args;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gradesync"));
        cmd.env("TEMPORAL_ADDRESS", self.temporal_address())
            .env("GRADESYNC_TASK_QUEUE", &a.temporal.task_queue)
            .env("GRADESYNC_DATABASE_URL", &a.store.database_url)
            .env("GRADESYNC_GOV_API_URL", &a.gov.gov_api_url)
            .env("GRADESYNC_GOV_CLIENT_ID", &a.gov.gov_client_id)
            .env(
                "GRADESYNC_GOV_CLIENT_SECRET",
                a.gov.gov_client_secret.as_deref().unwrap_or_default(),
            )
            .env(
                "GRADESYNC_HTTP_TIMEOUT_SECS",
                a.gov.http_timeout_secs.to_string(),
            )
            .env("GRADESYNC_ALERT_WEBHOOK_URL", &self.alerts.url)
            .env("GRADESYNC_COMPLIANCE_WEBHOOK_URL", &self.compliance.url)
            .stdin(std::process::Stdio::null());
        for (var, path) in [
            ("GRADESYNC_GOV_CA_CERT", &a.gov.gov_ca_cert),
            ("GRADESYNC_GOV_CLIENT_CERT", &a.gov.gov_client_cert),
            ("GRADESYNC_GOV_CLIENT_KEY", &a.gov.gov_client_key),
        ] {
            match path {
                Some(path) => cmd.env(var, path),
                None => cmd.env_remove(var),
            };
        }
        match &a.output.report_dir {
            Some(dir) => cmd.env("GRADESYNC_REPORT_DIR", dir),
            None => cmd.env_remove("GRADESYNC_REPORT_DIR"),
        };
        cmd
    }

    /// Waits until the simulator has committed at least `n` batches.
    pub async fn wait_for_batches(&self, n: u64) {
        for _ in 0..1200 {
            if self.ledger().await.batches_committed >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the simulator never committed {n} batches");
    }

    /// Waits until the alert webhook has received `n` messages.
    pub async fn wait_for_alerts(&self, n: usize) {
        for _ in 0..1200 {
            if self.alerts.texts().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the alert webhook never received {n} messages");
    }

    /// Generates `schools x per_school` records and imports them; returns the record count.
    pub async fn seed_grades(&self, schools: usize, per_school: usize) -> u64 {
        self.seed_grades_in(&quarter(), schools, per_school).await
    }

    pub async fn import_bytes(&self, bytes: &[u8]) -> u64 {
        let report = self
            .store
            .import_jsonl(tokio::io::BufReader::new(bytes), |_| {})
            .await
            .unwrap();
        assert!(report.bad_lines.is_empty(), "{:?}", report.bad_lines);
        report.inserted
    }

    /// The workflow id of this test's quarter run (unique per test on the shared server).
    pub fn workflow_id(&self) -> String {
        gradesync::commands::sync::workflow_id(&quarter(), self.task_queue())
    }

    pub async fn start_sync(&self, policy: Policy) -> String {
        gradesync::commands::sync::start(
            &self.client,
            self.task_queue(),
            &self.workflow_id(),
            quarter(),
            policy,
        )
        .await
        .unwrap()
    }

    /// `temporal workflow start --type QuarterlySync` on this test's task queue.
    pub fn start_with_temporal_cli(&self, id: &str, input: &str) {
        let out = self.temporal_cli(&[
            "workflow",
            "start",
            "--type",
            "QuarterlySync",
            "--task-queue",
            self.task_queue(),
            "--workflow-id",
            id,
            "--input",
            input,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Ends an [`outage`] as soon as the workflow has met it (one 503 answered).
    pub async fn end_outage_after_first_503(&self) {
        self.wait_for_status(503).await;
        self.sim.set_faults(Faults::default()).await;
    }

    /// Waits until the simulator has answered `status` at least once, e.g. to end an
    /// outage exactly when the workflow has met it.
    pub async fn wait_for_status(&self, status: u16) {
        for _ in 0..600 {
            if self
                .ledger()
                .await
                .status_counts
                .get(&status)
                .copied()
                .unwrap_or(0)
                > 0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the simulator never answered {status}");
    }

    pub async fn sync_and_wait(&self, policy: Policy) -> SyncSummary {
        let id = self.start_sync(policy).await;
        self.result(&id).await
    }

    pub async fn result(&self, id: &str) -> SyncSummary {
        let handle = self
            .client
            .get_workflow_handle::<gradesync_workflows::QuarterlySync>(id.to_string());
        tokio::time::timeout(
            Duration::from_secs(300),
            handle.get_result(Default::default()),
        )
        .await
        .expect("the sync finished within 300 s")
        .expect("the sync workflow completed")
    }

    pub async fn ledger(&self) -> Ledger {
        self.sim.ledger().await
    }

    /// Where the worker writes report files (none written without a report directory).
    pub fn report_dir(&self) -> PathBuf {
        self.dir.path().join("reports")
    }

    /// The `temporal` CLI against the test's server.
    pub fn temporal_cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("temporal")
            .args(args)
            .args(["--address", self.temporal_address()])
            .output()
            .expect("the temporal CLI runs")
    }

    pub async fn stop(mut self) {
        if let Some(w) = self.workers.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), w.stop()).await;
        }
    }
}

/// The quarter's own workflow id on this test's task queue: where `gradesync sync start`
/// runs it, and where any other start hands over to.
pub fn workflow_id_of(app: &TestApp, q: &Quarter) -> String {
    gradesync::commands::sync::workflow_id(q, app.task_queue())
}

/// The invariants every run must hold at the API: nothing applied twice, the rate window
/// never exceeded, no 429 provoked.
pub fn assert_ledger_clean(ledger: &Ledger) {
    eprintln!(
        "ledger: {} requests, at most {} in 1 s, tightest span of 3 arrivals {:?} ms",
        ledger.requests_total, ledger.max_requests_in_window, ledger.tightest_span_ms
    );
    let twice: Vec<_> = ledger
        .records
        .iter()
        .filter(|(_, r)| r.applied > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(
        twice.is_empty(),
        "records applied more than once: {twice:?}"
    );
    assert!(
        ledger.max_requests_in_window <= 2,
        "rate window exceeded: {} requests in 1 s (tightest span of 3 arrivals: {:?} ms)",
        ledger.max_requests_in_window,
        ledger.tightest_span_ms
    );
    assert_eq!(
        ledger.status_counts.get(&429).copied().unwrap_or(0),
        0,
        "429s received"
    );
}

/// The seed of a test's randomness: `GRADESYNC_TEST_SEED` to replay a failure, else a fresh
/// one. Printed, so that a failing run can be replayed.
pub fn test_seed() -> u64 {
    let seed = std::env::var("GRADESYNC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("seed = {seed}");
    seed
}

/// A quarter no other test (nor an earlier run of this one) uses, for tests that go through
/// the CLI, whose workflow id `gradesync-<quarter>` is shared by the whole dev server.
pub fn unique_quarter() -> Quarter {
    // Past years: a quarter that has not begun is refused by `sync start`.
    let year = 1100 + (rand::random::<u16>() % 800);
    Quarter::new(year, 1 + rand::random::<u8>() % 4).unwrap()
}

/// The data generator's `schools x per_school` records of `quarter` (seed 1), as JSON Lines:
/// what [`TestApp::seed_grades_in`] imports.
pub fn generated_jsonl(quarter: &str, schools: usize, per_school: usize) -> Vec<u8> {
    let spec = DataSpec {
        quarter: quarter.to_string(),
        schools,
        records_per_school: per_school,
        seed: 1,
        ..DataSpec::default()
    };
    let mut buf = Vec::new();
    datagen::write_jsonl(&spec, &mut buf).unwrap();
    buf
}

impl TestApp {
    /// Like [`TestApp::seed_grades`], for another quarter than [`QUARTER`].
    pub async fn seed_grades_in(
        &self,
        quarter: &Quarter,
        schools: usize,
        per_school: usize,
    ) -> u64 {
        let lines = generated_jsonl(&quarter.to_string(), schools, per_school);
        self.import_bytes(&lines).await
    }

    /// `gradesync worker` as a process whose stdout and stderr go to `log`, at log level
    /// `level` (`GRADESYNC_LOG`).
    pub fn spawn_logged_worker_process(
        &self,
        level: &str,
        log: &std::path::Path,
    ) -> std::process::Child {
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        self.worker_command()
            .env("GRADESYNC_LOG", level)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("the gradesync binary starts")
    }

    /// Runs `gradesync ARGS` with this test's settings and waits for it.
    pub fn gradesync(&self, args: &[&str]) -> std::process::Output {
        self.gradesync_command()
            .args(args)
            .output()
            .expect("the gradesync binary runs")
    }

    /// `(record_id, reason)` of every rejected record of the quarter, by record id.
    pub async fn rejections(&self, quarter: &Quarter) -> Vec<(String, Option<String>)> {
        let pool = raw_pool(&self.worker_args.store.database_url).await;
        let rows = sqlx::query_as(
            "SELECT record_id, reason FROM grades WHERE quarter = $1 AND status = 'rejected' \
             ORDER BY record_id",
        )
        .bind(quarter.to_string())
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows
    }

    /// `(status, records, attempts)` of one batch in the store, if the store has it.
    pub async fn batch_row(&self, batch_id: uuid::Uuid) -> Option<(String, i64, i64)> {
        let pool = raw_pool(&self.worker_args.store.database_url).await;
        let row =
            sqlx::query_as("SELECT status, records, attempts FROM batches WHERE batch_id = $1")
                .bind(batch_id.to_string())
                .fetch_optional(&pool)
                .await
                .unwrap();
        pool.close().await;
        row
    }

    /// `(workflow id, run id)` of every run whose workflow id starts with `prefix`: a
    /// quarter's run, its children and their continued-as-new runs.
    pub fn workflow_runs_starting_with(&self, prefix: &str) -> Vec<(String, String)> {
        let query = format!("WorkflowId STARTS_WITH '{prefix}'");
        let out = self.temporal_cli(&[
            "workflow", "list", "--query", &query, "--output", "json", "--limit", "1000",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let items: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
        let mut runs: Vec<(String, String)> = items
            .iter()
            .filter_map(|v| {
                let e = &v["execution"];
                Some((
                    e["workflowId"].as_str()?.to_string(),
                    e["runId"].as_str()?.to_string(),
                ))
            })
            .collect();
        runs.sort();
        runs
    }
}

/// A plain pool on the test's database, whichever backend it is.
async fn raw_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}

/// Every record applied exactly once and none missing: the exactly-once half of
/// [`assert_ledger_clean`], for runs where 429s are expected.
pub fn assert_applied_once(ledger: &Ledger, expected: u64) {
    let twice: Vec<_> = ledger
        .records
        .iter()
        .filter(|(_, r)| r.applied != 1)
        .map(|(id, r)| (id, r.applied))
        .collect();
    assert!(
        twice.is_empty(),
        "records not applied exactly once: {twice:?}"
    );
    assert_eq!(
        ledger.records.len() as u64,
        expected,
        "every record reached the API"
    );
}

impl TestApp {
    /// `(status, batches)` of the store's batches table, by status: what a dry run must
    /// leave untouched.
    pub async fn batch_statuses(&self) -> Vec<(String, i64)> {
        let pool = raw_pool(&self.worker_args.store.database_url).await;
        let rows =
            sqlx::query_as("SELECT status, COUNT(*) FROM batches GROUP BY status ORDER BY status")
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        rows
    }

    /// Batches a SendBatch has started sending (`in_flight_since` set) and that are not
    /// settled yet.
    pub async fn in_flight_batches(&self) -> i64 {
        let pool = raw_pool(&self.worker_args.store.database_url).await;
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM batches WHERE in_flight_since IS NOT NULL AND status = 'prepared'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        n
    }

    /// The running quarter workflow's `progress` query, if it answers.
    pub async fn progress(&self, id: &str) -> Option<gradesync_activities::model::Progress> {
        self.client
            .get_workflow_handle::<gradesync_workflows::QuarterlySync>(id.to_string())
            .query(
                gradesync_workflows::QuarterlySync::progress,
                (),
                Default::default(),
            )
            .await
            .ok()
    }
}
