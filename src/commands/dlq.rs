//! `gradesync dlq list|replay --quarter Q`: the dead-letter table. Replay puts the
//! dead-lettered batches back (same batch ids, same bytes, same idempotency keys) and starts
//! a sync of the quarter to send them.

use clap::{Args, Subcommand};
use gradesync_activities::model::Policy;
use gradesync_govapi::Quarter;

use crate::commands::sync::{parse_quarter, print_summary, start, wait_with_progress, workflow_id};
use crate::errors::{CliError, CliResult};
use crate::settings::{StoreArgs, TemporalArgs};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List the dead-lettered batches of a quarter that were not replayed yet.
    List(DlqArgs),
    /// Re-queue them and start a sync of the quarter that sends them again.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct DlqArgs {
    /// Quarter, e.g. 2026-Q4.
    #[arg(long, value_parser = parse_quarter)]
    pub quarter: Quarter,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub dlq: DlqArgs,
    /// Wait for the replay's sync to finish, with a progress bar.
    #[arg(long)]
    pub wait: bool,
    /// Policy overrides as JSON (as for `sync start`).
    #[arg(long, value_name = "JSON")]
    pub policy: Option<String>,
    #[command(flatten)]
    pub temporal: TemporalArgs,
}

pub async fn run(cmd: DlqCommand) -> CliResult {
    match cmd {
        DlqCommand::List(a) => list(a).await,
        DlqCommand::Replay(a) => replay(a).await,
    }
}

async fn list(a: DlqArgs) -> CliResult {
    let store = crate::worker::open_store(&a.store).await?;
    let letters = store
        .dead_letters(&a.quarter)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))?;
    if letters.is_empty() {
        println!("no dead letters for {}", a.quarter);
        return Ok(());
    }
    println!(
        "{:<38} {:<16} {:>7} {:<8} error",
        "batch", "school", "records", "alerted"
    );
    for d in &letters {
        println!(
            "{:<38} {:<16} {:>7} {:<8} {}",
            d.batch_id, d.school_id, d.records, d.alerted, d.error
        );
    }
    println!(
        "{} dead-lettered batches; replay with `gradesync dlq replay --quarter {}`",
        letters.len(),
        a.quarter
    );
    Ok(())
}

async fn replay(a: ReplayArgs) -> CliResult {
    let policy: Policy = match &a.policy {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| CliError::Usage(format!("--policy is not a valid policy: {e}")))?,
        None => Policy::default(),
    };
    let store = crate::worker::open_store(&a.dlq.store).await?;
    let quarter = a.dlq.quarter;
    let client = crate::temporal::connect(&a.temporal).await?;
    let requeued = store
        .requeue_dead_letters(&quarter)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))?;
    println!("{requeued} dead-lettered batches of {quarter} re-queued with their original ids");
    let id = workflow_id(&quarter);
    start(&client, &a.temporal.task_queue, &id, quarter, policy).await?;
    println!("started {id}");
    if a.wait {
        let summary = wait_with_progress(&client, &id).await?;
        print_summary(&summary);
    }
    Ok(())
}
