//! `gradesync demo`: the whole product on one machine. Finds or starts a Temporal dev server
//! (with the Web UI), creates a fresh SQLite store with realistic generated grades, starts
//! the government API simulator with moderate faults and a worker, runs one quarter with a
//! progress bar, then prints the summary, the report's path, the simulator's ledger check
//! and the Web UI link.

use std::path::PathBuf;

use clap::Args;
use gradesync_activities::model::Policy;
use gradesync_govapi::Quarter;
use gradesync_govapi::sim::{self, Faults, SimConfig};

use crate::commands::sync::{
    parse_quarter, pending_in, print_summary, start_counted, wait_with_progress, workflow_id,
};
use crate::datagen::{self, DataSpec};
use crate::devserver;
use crate::errors::{CliError, CliResult};
use crate::settings::{GovArgs, OutputArgs, StoreArgs, TemporalArgs};
use crate::worker::{BackgroundWorkers, WorkerArgs};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Schools to generate (the seed's operator has about 50).
    #[arg(long, default_value_t = 5)]
    pub schools: usize,
    /// Records per school (about 8 KB each).
    #[arg(long, default_value_t = 400)]
    pub records_per_school: usize,
    /// Quarter to generate and sync (default: the quarter that ended most recently).
    #[arg(long, value_parser = parse_quarter)]
    pub quarter: Option<Quarter>,
    /// Where the demo keeps its files (store, reports, Temporal state).
    #[arg(long, default_value = ".gradesync")]
    pub dir: PathBuf,
    /// Probability of a 503 per request at the simulator.
    #[arg(long, default_value_t = 0.03)]
    pub p_503: f64,
    /// Probability the simulator applies a batch then drops the connection.
    #[arg(long, default_value_t = 0.01)]
    pub p_commit_drop: f64,
    /// Simulated API latency, ms.
    #[arg(long, default_value_t = 150)]
    pub latency_ms: u64,
    /// Seed for the data and the fault schedule.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Keep the dev server (and its Web UI) running after the sync until Ctrl-C.
    #[arg(long)]
    pub keep_ui: bool,
    /// Grades database for the demo (e.g. an empty PostgreSQL database); unset: a fresh
    /// SQLite file in --dir. A database that already holds the quarter is refused.
    #[arg(long, env = "GRADESYNC_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Temporal address to use if a server answers there; otherwise one is started.
    #[arg(long, env = "TEMPORAL_ADDRESS", default_value = "127.0.0.1:7233")]
    pub temporal_address: String,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub async fn run(a: DemoArgs) -> CliResult {
    let quarter = a
        .quarter
        .unwrap_or_else(|| Quarter::last_ended_before(now_secs()));
    std::fs::create_dir_all(&a.dir)
        .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", a.dir.display())))?;

    // The store first: a refused database must not cost a dev server's start.
    let database_url = match &a.database_url {
        Some(url) => {
            refuse_a_used_quarter(url, &quarter).await?;
            url.clone()
        }
        None => {
            let db = a.dir.join("demo.db");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
            format!("sqlite://{}", db.display())
        }
    };

    let mut server = None;
    let address = if devserver::answers(&a.temporal_address).await {
        println!("using the Temporal server at {}", a.temporal_address);
        a.temporal_address.clone()
    } else {
        println!("starting a Temporal dev server (Web UI on http://localhost:8233)...");
        let port = a
            .temporal_address
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
            .unwrap_or(7233);
        let s = devserver::start(port, Some(8233), &a.dir.join("temporal.db")).await?;
        let addr = s.address.clone();
        server = Some(s);
        addr
    };

    let data = a.dir.join(format!("grades-{quarter}.jsonl"));
    let spec = DataSpec {
        quarter: quarter.to_string(),
        schools: a.schools,
        records_per_school: a.records_per_school,
        seed: a.seed,
        ..DataSpec::default()
    };
    let file = std::fs::File::create(&data)
        .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", data.display())))?;
    let bytes =
        datagen::write_jsonl(&spec, std::io::BufWriter::new(file)).map_err(anyhow::Error::from)?;
    println!(
        "generated {} records for {} schools ({:.1} MB) in {}",
        a.schools * a.records_per_school,
        a.schools,
        bytes as f64 / 1e6,
        data.display()
    );
    let store_args = StoreArgs { database_url };
    let report_store = store_args.clone();
    crate::commands::import::run(crate::commands::import::ImportArgs {
        file: Some(data.clone()),
        from: None,
        format: None,
        maps: Vec::new(),
        quarter: None,
        max_errors_shown: 10,
        store: store_args.clone(),
    })
    .await?;

    let faults = Faults {
        seed: a.seed,
        latency_ms: a.latency_ms,
        latency_jitter_ms: a.latency_ms / 2,
        p_503: a.p_503,
        p_commit_drop: a.p_commit_drop,
        ..Faults::default()
    };
    let sim = sim::spawn(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await
    .map_err(|e| CliError::Unreachable(format!("cannot start the API simulator: {e}")))?;
    println!(
        "government API simulator on {} (503 p={}, commit-then-drop p={})",
        sim.base_url(),
        a.p_503,
        a.p_commit_drop
    );

    let temporal = TemporalArgs::local(address.clone(), "gradesync-demo");
    let worker_args = WorkerArgs {
        temporal: temporal.clone(),
        store: store_args,
        source: crate::settings::SourceArgs::none(),
        // The simulator's own credentials: the one place with a built-in secret.
        gov: GovArgs::simulator(
            sim.base_url(),
            &SimConfig::default().client_id,
            &SimConfig::default().client_secret,
        ),
        output: OutputArgs {
            report_dir: Some(a.dir.join("reports")),
            ..OutputArgs::none()
        },
        ops: crate::ops::OpsArgs::none(),
    };
    let client = crate::temporal::connect(&temporal).await?;
    let pending = pending_in(&worker_args.store.database_url, &quarter).await?;
    let workers = BackgroundWorkers::start(worker_args).await?;

    let id = start_counted(
        &client,
        &temporal.task_queue,
        &workflow_id(&quarter, &temporal.task_queue),
        quarter,
        Policy::default(),
        Some(pending),
    )
    .await?;
    println!("QuarterlySync {id} started");
    let summary = wait_with_progress(&client, &id).await;
    workers.stop().await?;
    let summary = summary?;
    print_summary(&summary);
    let html = write_html_report(&report_store, &quarter, &a.dir.join("reports")).await?;
    println!("  HTML report: {}", html.display());

    let ledger = sim.ledger().await;
    let twice = ledger.records.values().filter(|r| r.applied > 1).count();
    println!(
        "API ledger: {} records applied, {} applied more than once, {} requests, busiest second {} requests",
        ledger.records.len(),
        twice,
        ledger.requests_total,
        ledger.max_requests_in_window
    );
    println!(
        "Web UI: http://localhost:8233/namespaces/default/workflows/{}",
        workflow_id(&quarter, &temporal.task_queue)
    );
    sim.shutdown().await;
    if let Some(mut s) = server {
        if a.keep_ui {
            println!("the dev server and its Web UI stay up; press Ctrl-C to stop");
            let _ = tokio::signal::ctrl_c().await;
        } else {
            println!(
                "(stopping the dev server; its history is kept in {}; rerun with --keep-ui to browse it)",
                a.dir.join("temporal.db").display()
            );
        }
        let _ = s.child.kill().await;
    }
    if twice > 0 {
        return Err(CliError::Attention(format!(
            "the API applied {twice} records more than once"
        )));
    }
    crate::commands::sync::verdict_result(&summary)
}

/// Writes the quarter's latest report as HTML beside its JSON and CSV files.
async fn write_html_report(
    store: &StoreArgs,
    quarter: &Quarter,
    dir: &std::path::Path,
) -> Result<PathBuf, CliError> {
    let store = crate::worker::open_store(store).await?;
    let report = store
        .latest_report(quarter)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))?
        .ok_or_else(|| {
            CliError::Other(anyhow::anyhow!(
                "the run left no report for quarter {quarter}"
            ))
        })?;
    let page = crate::commands::report::html_page(&store, &report).await?;
    let path = dir.join(format!("reconcile-{quarter}-{}.html", report.stamp));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, page))
        .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

/// The demo syncs a quarter it generates against a fresh simulator: in a database that
/// already holds that quarter (a production store, an earlier demo) its verdict would
/// mean nothing, and it would add runs and reports to real ones.
async fn refuse_a_used_quarter(url: &str, quarter: &Quarter) -> Result<(), CliError> {
    let store = crate::worker::open_store(&StoreArgs {
        database_url: url.to_string(),
    })
    .await?;
    let held: u64 = store
        .status_counts(quarter)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))?
        .iter()
        .map(|c| c.pending + c.batched + c.synced + c.rejected + c.dead)
        .sum();
    if held > 0 || store.run(quarter).await.ok().flatten().is_some() {
        return Err(CliError::Usage(format!(
            "the database at {} already holds quarter {quarter}; the demo needs one that does \
             not: pass an empty database with --database-url, another --quarter, or unset \
             GRADESYNC_DATABASE_URL for a fresh SQLite file",
            store.location()
        )));
    }
    Ok(())
}
