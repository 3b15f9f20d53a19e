//! `gradesync dlq list|replay --quarter Q`: the dead-letter table. Replay runs a redrive
//! wave (dead batches back with the same ids, bytes and idempotency keys, or settled first
//! by a receipt lookup where an earlier attempt may have committed them) and starts a sync
//! of the quarter to send them.

use clap::{Args, Subcommand};
use gradesync_govapi::Quarter;
use gradesync_workflows::QuarterlySync;
use temporalio_client::{WorkflowDescribeOptions, WorkflowExecutionStatus};

use crate::commands::sync::{
    parse_policy, parse_quarter, print_summary, start, verdict_result, wait_with_progress,
    workflow_id,
};
use crate::errors::{CliError, CliResult};
use crate::settings::{GovArgs, StoreArgs, TemporalArgs};

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
    /// The API, for the receipt lookups that settle batches an earlier attempt may have
    /// committed (a 400 naming none of their records, a changed record in them).
    #[command(flatten)]
    pub gov: GovArgs,
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
    let gov = crate::worker::gov_client(&a.gov, &store)?;
    let wave = gradesync_activities::redrive::wave(&gov, &store, &quarter)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))?;
    let batches: u64 = wave.schools.iter().map(|s| s.batches).sum();
    println!(
        "{batches} dead-lettered batches of {quarter} taken up: {} records to send again \
         (same batch ids where they can be resent as they are), {} found already at the API",
        wave.records(),
        wave.synced()
    );
    if wave.stuck > 0 {
        println!(
            "{} dead-lettered batches stay dead: the API could not say whether an earlier \
             attempt committed them; replay again once it answers",
            wave.stuck
        );
    }
    start(&client, &a.temporal.task_queue, &id, quarter, policy).await?;
    println!("started {id}");
    if a.wait {
        let summary = wait_with_progress(&client, &id).await?;
        print_summary(&summary);
        return verdict_result(&summary);
    }
    Ok(())
}
