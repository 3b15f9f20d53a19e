//! `gradesync schedule create|describe|delete`: the quarterly Temporal Schedule that replaces
//! the seed's EventBridge rule. `create` is idempotent: run it again (e.g. from a deploy
//! script) and it updates the schedule in place.

use clap::{Args, Subcommand};
use gradesync_activities::model::{Policy, SyncInput};
use gradesync_workflows::QuarterlySync;
use temporalio_client::schedules::{
    CreateScheduleOptions, DeleteScheduleOptions, ScheduleAction, ScheduleOverlapPolicy,
    ScheduleSpec,
};
use temporalio_client::{Client, RpcOptions, tonic};

use crate::errors::{CliError, CliResult};
use crate::settings::TemporalArgs;

/// The seed's trigger: 02:00 on the first day of each quarter, when the API is quietest.
pub const QUARTERLY_CRON: &str = "0 2 1 */3 *";
pub const DEFAULT_SCHEDULE_ID: &str = "gradesync-quarterly";

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create the quarterly schedule, or update it if it exists.
    Create(ScheduleArgs),
    /// Show the schedule: spec, action, recent and next runs.
    Describe(ScheduleArgs),
    /// Delete the schedule (running syncs are not affected).
    Delete(ScheduleArgs),
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// Schedule id.
    #[arg(long, default_value = DEFAULT_SCHEDULE_ID)]
    pub schedule_id: String,
    /// Cron expression (UTC).
    #[arg(long, default_value = QUARTERLY_CRON)]
    pub cron: String,
    #[command(flatten)]
    pub temporal: TemporalArgs,
}

pub async fn run(cmd: ScheduleCommand) -> CliResult {
    match cmd {
        ScheduleCommand::Create(a) => {
            let client = crate::temporal::connect(&a.temporal).await?;
            let created =
                create_or_update(&client, &a.schedule_id, &a.cron, &a.temporal.task_queue).await?;
            let verb = if created { "created" } else { "updated" };
            println!(
                "schedule {} {verb}: cron `{}`, overlap skip, QuarterlySync on {}",
                a.schedule_id, a.cron, a.temporal.task_queue
            );
            Ok(())
        }
        ScheduleCommand::Describe(a) => describe(&a).await,
        ScheduleCommand::Delete(a) => {
            let client = crate::temporal::connect(&a.temporal).await?;
            client
                .get_schedule_handle(a.schedule_id.clone())
                .delete(DeleteScheduleOptions::default())
                .await
                .map_err(|e| schedule_error(&a.schedule_id, e))?;
            println!("schedule {} deleted", a.schedule_id);
            Ok(())
        }
    }
}

fn action(task_queue: &str) -> ScheduleAction {
    // No quarter in the input: each run syncs the quarter that ended before it started.
    let input = SyncInput {
        quarter: None,
        policy: Policy::default(),
        carried: None,
    };
    ScheduleAction::start_workflow(QuarterlySync::run, input, task_queue, "gradesync-scheduled")
}

fn spec(cron: &str) -> ScheduleSpec {
    ScheduleSpec::builder()
        .cron_strings(vec![cron.to_string()])
        .build()
}

/// Returns true when the schedule was created, false when an existing one was updated.
pub async fn create_or_update(
    client: &Client,
    id: &str,
    cron: &str,
    task_queue: &str,
) -> Result<bool, CliError> {
    let opts = CreateScheduleOptions::builder()
        .action(action(task_queue))
        .spec(spec(cron))
        .overlap_policy(ScheduleOverlapPolicy::Skip)
        .note("gradesync quarterly sync (seed: EventBridge cron(0 2 1 */3 *))".to_string())
        .build();
    match client.create_schedule(id.to_string(), opts).await {
        Ok(_) => Ok(true),
        Err(temporalio_client::schedules::ScheduleError::Rpc(s))
            if s.code() == tonic::Code::AlreadyExists =>
        {
            let (cron, queue) = (cron.to_string(), task_queue.to_string());
            client
                .get_schedule_handle(id.to_string())
                .update(
                    move |u| {
                        u.set_spec(spec(&cron))
                            .set_action(action(&queue))
                            .set_overlap_policy(ScheduleOverlapPolicy::Skip);
                    },
                    RpcOptions::default(),
                )
                .await
                .map_err(|e| schedule_error(id, e))?;
            Ok(false)
        }
        Err(e) => Err(schedule_error(id, e)),
    }
}

fn schedule_error(id: &str, e: temporalio_client::schedules::ScheduleError) -> CliError {
    match &e {
        temporalio_client::schedules::ScheduleError::Rpc(s)
            if s.code() == tonic::Code::NotFound =>
        {
            CliError::Usage(format!(
                "schedule {id} does not exist; create it with `gradesync schedule create`"
            ))
        }
        _ => CliError::Unreachable(format!("schedule {id}: {e}")),
    }
}

async fn describe(a: &ScheduleArgs) -> CliResult {
    let client = crate::temporal::connect(&a.temporal).await?;
    let d = client
        .get_schedule_handle(a.schedule_id.clone())
        .describe(RpcOptions::default())
        .await
        .map_err(|e| schedule_error(&a.schedule_id, e))?;
    let spec = d.raw().schedule.as_ref().and_then(|s| s.spec.as_ref());
    let crons = spec.map(|s| s.cron_string.join(", ")).unwrap_or_default();
    println!("schedule {}", a.schedule_id);
    println!("  cron:      {crons}");
    println!("  paused:    {}", d.paused());
    println!(
        "  runs:      {} started, {} skipped (overlap)",
        d.action_count(),
        d.overlap_skipped()
    );
    for t in d.future_action_times().iter().take(4) {
        println!("  next:      {}", httpdate::fmt_http_date(*t));
    }
    for r in d.recent_actions() {
        println!("  recent:    {r:?}");
    }
    Ok(())
}
