//! The worker process: one Temporal worker for the workflows and store activities on the
//! main task queue, one for SendBatch on `<queue>-send`, sharing one API client whose rate
//! gate lives in the store (so every worker process on the same database shares the API's
//! 2 requests/second).

use std::sync::Arc;

use anyhow::Context;
use gradesync_activities::acts::{SendActivities, SyncActivities};
use gradesync_activities::alert::Webhook;
use gradesync_activities::gov::GovClient;
use gradesync_activities::rate::StoreRateGate;
use gradesync_activities::store::Store;
use gradesync_workflows::{QuarterlySync, SchoolSync};
use temporalio_client::Client;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

use crate::errors::CliError;
use crate::settings::{GovArgs, OutputArgs, StoreArgs, TemporalArgs};

/// Everything a worker needs, already validated.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub temporal: TemporalArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub gov: GovArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn open_store(args: &StoreArgs) -> Result<Store, CliError> {
    Store::connect(&args.database_url)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))
}

/// Builds both workers; `run` drives them until the process is stopped.
pub struct Workers {
    main: Worker,
    send: Worker,
    // Dropped after the workers: it owns what they run on.
    _runtime: Runtime,
}

impl Workers {
    pub async fn build(args: &WorkerArgs, client: Client) -> Result<Self, CliError> {
        let store = open_store(&args.store).await?;
        let gate = Arc::new(StoreRateGate::new(
            store.clone(),
            args.gov.rate_per_sec,
            args.gov.rate_guard(),
        ));
        let gov = Arc::new(
            GovClient::new(args.gov.client_config()?, gate)
                .map_err(|e| CliError::Usage(e.to_string()))?,
        );
        let alert_url = args.output.alert_webhook()?;
        let compliance_url = args.output.compliance_webhook()?;
        let alerts = Webhook::new(alert_url.map(|u| u.expose().to_string()));
        let sync = SyncActivities {
            store: store.clone(),
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
        let runtime = Runtime::from_current_tokio(Default::default())
            .context("cannot start the Temporal runtime")?;
        let main_opts = WorkerOptions::new(args.temporal.task_queue.clone())
            .register_workflow::<QuarterlySync>()
            .context("cannot register QuarterlySync")?
            .register_workflow::<SchoolSync>()
            .context("cannot register SchoolSync")?
            .register_activities(sync)
            .build();
        let send_opts = WorkerOptions::new(args.temporal.send_queue())
            .register_activities(SendActivities { store, gov, alerts })
            .build();
        let main =
            Worker::new(&runtime, client.clone(), main_opts).context("cannot create the worker")?;
        let send =
            Worker::new(&runtime, client, send_opts).context("cannot create the send worker")?;
        Ok(Self {
            main,
            send,
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

/// `gradesync worker`: runs until Ctrl-C / SIGTERM, then drains.
pub async fn run(args: WorkerArgs) -> Result<(), CliError> {
    // Settings first: a missing secret or a bad certificate file is a usage error, before
    // any connection is tried.
    args.gov.client_config()?;
    args.output.alert_webhook()?;
    args.output.compliance_webhook()?;
    let client = crate::temporal::connect(&args.temporal).await?;
    let workers = Workers::build(&args, client).await?;
    let stop = workers.shutdown_handle();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping: finishing in-flight tasks");
        stop();
    });
    tracing::info!(
        task_queue = %args.temporal.task_queue,
        send_queue = %args.temporal.send_queue(),
        "gradesync worker started"
    );
    workers.run().await
}
