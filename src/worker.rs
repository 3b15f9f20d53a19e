//! The worker process: one Temporal worker for the workflows and store activities on the
//! main task queue, one for SendBatch on `<queue>-send`, sharing one API client whose rate
//! gate lives in the store (so every worker process on the same database shares the API's
//! 2 requests/second). `gradesync worker` adds the operator's side ([`crate::ops`]):
//! metrics, probes, and a drain on SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gradesync_activities::acts::{SendActivities, SyncActivities};
use gradesync_activities::alert::Webhook;
use gradesync_activities::gov::GovClient;
use gradesync_activities::log_span::ActivitySpans;
use gradesync_activities::rate::StoreRateGate;
use gradesync_activities::store::Store;
use gradesync_workflows::{QuarterlySync, SchoolSync};
use temporalio_client::Client;
use temporalio_common::telemetry::TelemetryOptions;
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

use crate::errors::CliError;
use crate::ops::{OpsArgs, Probes, SdkMetrics};
use crate::settings::{GovArgs, OutputArgs, SourceArgs, StoreArgs, TemporalArgs};

/// Everything a worker needs, already validated.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub temporal: TemporalArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub gov: GovArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub ops: OpsArgs,
}

pub async fn open_store(args: &StoreArgs) -> Result<Store, CliError> {
    Store::connect(&args.database_url)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))
}

/// The API client every worker and command that sends uses: paced by the rate gate all
/// of them share through `store`.
pub fn gov_client(args: &GovArgs, store: &Store) -> Result<GovClient, CliError> {
    let gate = Arc::new(StoreRateGate::new(
        store.clone(),
        args.rate_per_sec,
        args.rate_guard(),
    ));
    GovClient::new(args.client_config()?, gate).map_err(|e| CliError::Usage(e.to_string()))
}

/// Builds both workers; `run` drives them until the process is stopped.
pub struct Workers {
    main: Worker,
    send: Worker,
    store: Store,
    probes: Arc<Probes>,
    /// Present when the SDK's series are exported (`--metrics-listen`).
    sdk_metrics: Option<SdkMetrics>,
    // Dropped after the workers: it owns what they run on.
    _runtime: Runtime,
}

impl Workers {
    pub async fn build(args: &WorkerArgs, client: Client) -> Result<Self, CliError> {
        let grace = args.ops.shutdown_grace()?;
        let store = open_store(&args.store).await?;
        let source = args.source.connect().await?;
        if let Some(source) = &source {
            tracing::info!(source = %source.target().url(), "grades are read from the DynamoDB table and marked synced there");
        }
        gradesync_activities::metrics::get()
            .rate_limit
            .set(args.gov.rate_per_sec);
        let gov = Arc::new(gov_client(&args.gov, &store)?);
        let alert_url = args.output.alert_webhook()?;
        let compliance_url = args.output.compliance_webhook()?;
        let alerts = Webhook::new(alert_url.map(|u| u.expose().to_string()));
        let probes = Arc::new(Probes::new(client.clone(), store.clone(), gov.clone()));
        let sync = SyncActivities {
            store: store.clone(),
            source,
            gov: gov.clone(),
            alerts: alerts.clone(),
            compliance: Webhook::new(compliance_url.map(|u| u.expose().to_string())),
            // `GRADESYNC_REPORT_DIR=` (set but empty) means no files, as unset does.
            report_dir: args
                .output
                .report_dir
                .clone()
                .filter(|dir| !dir.as_os_str().is_empty()),
        };
        let sdk_metrics = match args.ops.metrics_listen {
            Some(_) => Some(SdkMetrics::start()?),
            None => None,
        };
        let telemetry = TelemetryOptions::builder()
            .maybe_metrics(sdk_metrics.as_ref().map(SdkMetrics::meter))
            .build();
        let runtime_options = RuntimeOptions::builder()
            .telemetry_options(telemetry)
            .build()
            .map_err(|e| anyhow::anyhow!("invalid Temporal runtime options: {e}"))?;
        let runtime = Runtime::from_current_tokio(runtime_options)
            .context("cannot start the Temporal runtime")?;
        let cancel_after = sdk_grace(grace);
        let main_opts = WorkerOptions::new(args.temporal.task_queue.clone())
            .register_workflow::<QuarterlySync>()
            .context("cannot register QuarterlySync")?
            .register_workflow::<SchoolSync>()
            .context("cannot register SchoolSync")?
            .register_activities(sync)
            .activity_inbound_interceptor(ActivitySpans)
            .graceful_shutdown_period(cancel_after)
            .build();
        let send_opts = WorkerOptions::new(args.temporal.send_queue())
            .register_activities(SendActivities {
                store: store.clone(),
                gov,
                alerts,
            })
            .activity_inbound_interceptor(ActivitySpans)
            .graceful_shutdown_period(cancel_after)
            .build();
        let main =
            Worker::new(&runtime, client.clone(), main_opts).context("cannot create the worker")?;
        let send =
            Worker::new(&runtime, client, send_opts).context("cannot create the send worker")?;
        Ok(Self {
            main,
            send,
            store,
            probes,
            sdk_metrics,
            _runtime: runtime,
        })
    }

    /// Handles that stop both workers gracefully (finish in-flight tasks).
    pub fn shutdown_handle(&self) -> impl Fn() + Send + Sync + 'static {
        let (a, b) = (self.main.shutdown_handle(), self.send.shutdown_handle());
        move || {
            a();
            b();
        }
    }

    pub async fn run(mut self) -> Result<(), CliError> {
        let (main, send) = tokio::join!(self.main.run(), self.send.run());
        main.context("the workflow worker stopped")?;
        send.context("the send worker stopped")?;
        Ok(())
    }
}

/// Workers running on a thread of their own: `Worker::run` is not `Send`, so the demo and
/// the tests cannot `tokio::spawn` it next to their own work.
pub struct BackgroundWorkers {
    stop: Box<dyn Fn() + Send + Sync>,
    thread: Option<std::thread::JoinHandle<Result<(), CliError>>>,
}

impl BackgroundWorkers {
    /// Connects, builds and runs the workers on a new thread; returns once they poll.
    pub async fn start(args: WorkerArgs) -> Result<Self, CliError> {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("gradesync-worker".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .context("cannot start the worker's runtime")?;
                rt.block_on(async move {
                    let built = async {
                        let client = crate::temporal::connect(&args.temporal).await?;
                        Workers::build(&args, client).await
                    }
                    .await;
                    match built {
                        Ok(workers) => {
                            let _ = ready_tx
                                .send(Ok(Box::new(workers.shutdown_handle())
                                    as Box<dyn Fn() + Send + Sync>));
                            workers.run().await
                        }
                        Err(e) => {
                            let message = e.to_string();
                            let _ = ready_tx.send(Err(e));
                            Err(CliError::Other(anyhow::anyhow!(message)))
                        }
                    }
                })
            })
            .context("cannot start the worker thread")?;
        let stop = ready_rx
            .await
            .map_err(|_| CliError::Other(anyhow::anyhow!("the worker thread ended early")))??;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the workers to finish in-flight tasks and stop, and waits for the thread.
    pub async fn stop(mut self) -> Result<(), CliError> {
        (self.stop)();
        match self.thread.take() {
            Some(t) => tokio::task::spawn_blocking(move || t.join())
                .await
                .map_err(|e| CliError::Other(e.into()))?
                .map_err(|_| CliError::Other(anyhow::anyhow!("the worker thread panicked")))?,
            None => Ok(()),
        }
    }
}

/// When the SDK cancels what is still running after a stop: a little before the grace
/// period ends, so the cancelled attempts are reported (and handed to another worker at
/// once) before the process must be gone.
fn sdk_grace(grace: Duration) -> Duration {
    grace.saturating_sub((grace / 5).min(Duration::from_secs(2)))
}

/// Listens for SIGTERM (what orchestrators send) and SIGINT (Ctrl-C) from the moment it
/// is called, so a stop during start-up is not fatal; resolves naming the signal.
#[cfg(unix)]
fn stop_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
}

#[cfg(not(unix))]
fn stop_signal() -> impl std::future::Future<Output = &'static str> {
    async {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// `gradesync worker`: runs until SIGTERM or Ctrl-C, then drains: it stops polling, lets
/// in-flight work finish within the grace period, hands back what did not, and exits.
pub async fn run(args: WorkerArgs) -> Result<(), CliError> {
    let signal = stop_signal();
    let grace = args.ops.shutdown_grace()?;
    // Settings first: a missing secret or a bad certificate file is a usage error, before
    // any connection is tried.
    args.gov.client_config()?;
    args.output.alert_webhook()?;
    args.output.compliance_webhook()?;
    let client = crate::temporal::connect(&args.temporal).await?;
    let mut workers = Workers::build(&args, client.clone()).await?;
    if let Some(addr) = args.ops.metrics_listen {
        let sdk = workers
            .sdk_metrics
            .take()
            .ok_or_else(|| anyhow::anyhow!("the SDK's metrics exporter did not start"))?;
        let bound = crate::ops::serve(addr, workers.probes.clone(), sdk)
            .await
            .map_err(|e| CliError::Usage(format!("cannot listen on {addr} for metrics: {e}")))?;
        tracing::info!(%bound, "serving /metrics, /healthz and /readyz");
        tokio::spawn(crate::ops::watch_quarters(workers.store.clone(), client));
    }
    let stop = workers.shutdown_handle();
    let probes = workers.probes.clone();
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let signal = signal.await;
        tracing::info!(
            signal,
            grace_secs = grace.as_secs_f64(),
            "stopping: polling no more; in-flight work may finish within the grace period"
        );
        probes.drain();
        gradesync_activities::drain::start();
        stop();
        let _ = stopping_tx.send(tokio::time::Instant::now());
    });
    tracing::info!(
        task_queue = %args.temporal.task_queue,
        send_queue = %args.temporal.send_queue(),
        "gradesync worker started"
    );
    let run = workers.run();
    tokio::pin!(run);
    tokio::select! {
        ended = &mut run => ended,
        Ok(since) = stopping_rx => {
            match tokio::time::timeout_at(since + grace, run).await {
                Ok(ended) => {
                    tracing::info!("stopped: in-flight work finished or handed back");
                    ended
                }
                // The SDK's cancels went out before this; whatever still hangs is left to
                // Temporal's heartbeat timeout, which hands it to another worker.
                Err(_) => {
                    tracing::warn!("grace period over; exiting with work still in flight");
                    Ok(())
                }
            }
        }
    }
}
