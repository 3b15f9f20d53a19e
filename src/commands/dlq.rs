//! `gradesync dlq list|replay --quarter Q`: the dead-letter table. Replay puts the
//! dead-lettered batches back (same batch ids, same bytes, same idempotency keys) and starts
//! a sync of the quarter to send them.

use clap::{Args, Subcommand};
use gradesync_govapi::Quarter;
use gradesync_workflows::QuarterlySync;
use temporalio_client::{WorkflowDescribeOptions, WorkflowExecutionStatus};

use crate::commands::sync::{
    parse_policy, parse_quarter, print_summary, start, verdict_result, wait_with_progress,
    workflow_id,
};
use crate::errors::{CliError, CliResult};
use crate::settings::{StoreArgs, TemporalArgs};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List the dead-lettered batches of a quarter that were not replayed yet.
    List(DlqArgs),
    /// Re-queue them and start a sync of the quarter that sends them again.
    Replay(Box<ReplayArgs>),
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
        DlqCommand::Replay(a) => replay(*a).await,
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
    let policy = parse_policy(a.policy.as_deref())?;
    let store = crate::worker::open_store(&a.dlq.store).await?;
    let quarter = a.dlq.quarter;
    let client = crate::temporal::connect(&a.temporal).await?;
    let id = workflow_id(&quarter, &a.temporal.task_queue);
    // A running sync redrives its dead letters itself; requeueing under it would hand
    // its batches to a second sender.
    let running = client
        .get_workflow_handle::<QuarterlySync>(id.clone())
        .describe(WorkflowDescribeOptions::default())
        .await
        .is_ok_and(|d| d.status() == WorkflowExecutionStatus::Running);
    if running {
        return Err(CliError::Attention(format!(
            "a sync of {quarter} is running as workflow {id}; it redrives its dead letters by \
             itself while the deadline allows. Follow it with `gradesync sync status --quarter \
             {quarter}` and replay after it ends"
        )));
    }
    let requeued = store
        .requeue_dead_letters(&quarter)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))?;
    println!("{requeued} dead-lettered batches of {quarter} re-queued with their original ids");
    start(&client, &a.temporal.task_queue, &id, quarter, policy).await?;
    println!("started {id}");
    if a.wait {
        let summary = wait_with_progress(&client, &id).await?;
        print_summary(&summary);
        return verdict_result(&summary);
    }
    Ok(())
}
