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
use temporalio_client::{Client, NamespacedClient, RpcOptions, tonic};
use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_common::protos::temporal::api::schedule::v1::schedule_action::Action;
use temporalio_common::protos::temporal::api::sdk::v1::UserMetadata;
use temporalio_common::protos::temporal::api::workflowservice::v1::{
    DescribeScheduleRequest, UpdateScheduleRequest,
};

use crate::errors::{CliError, CliResult};
use crate::settings::TemporalArgs;

mod cron_text;

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

fn action(task_queue: &str, search_attributes: bool) -> ScheduleAction {
    // No quarter in the input: each run syncs the quarter that ended before it started.
    let input = SyncInput {
        quarter: None,
        policy: Policy::default(),
        carried: None,
        search_attributes,
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
    // Decided now for every run of the schedule: re-run `schedule create` after `setup`.
    let search_attributes = crate::commands::setup::registered(client).await;
    let created = create_or_update_action(client, id, cron, task_queue, search_attributes).await?;
    summarize_action(client, id)
        .await
        .map_err(|e| CliError::Unreachable(format!("schedule {id}: {}", e.message())))?;
    Ok(created)
}

async fn create_or_update_action(
    client: &Client,
    id: &str,
    cron: &str,
    task_queue: &str,
    search_attributes: bool,
) -> Result<bool, CliError> {
    let opts = CreateScheduleOptions::builder()
        .action(action(task_queue, search_attributes))
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
                            .set_action(action(&queue, search_attributes))
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

/// The summary the Web UI shows above each run the schedule starts. The client's schedule
/// action has no field for it, so it goes into the stored action directly.
async fn summarize_action(client: &Client, id: &str) -> Result<(), tonic::Status> {
    let namespace = client.namespace();
    let mut service = client.connection().workflow_service();
    let described = service
        .describe_schedule(tonic::Request::new(DescribeScheduleRequest {
            namespace: namespace.clone(),
            schedule_id: id.to_string(),
        }))
        .await?
        .into_inner();
    let Some(mut schedule) = described.schedule else {
        return Ok(());
    };
    let Some(Action::StartWorkflow(start)) =
        schedule.action.as_mut().and_then(|a| a.action.as_mut())
    else {
        return Ok(());
    };
    let policy = Policy::default();
    let summary = format!(
        "quarterly sync of the quarter that ended before this start (schedule {id}); deadline \
         {} h after the start",
        policy.deadline_ms / 3_600_000
    );
    start.user_metadata = Some(UserMetadata {
        summary: Some(json_payload(&summary)),
        details: None,
    });
    service
        .update_schedule(tonic::Request::new(UpdateScheduleRequest {
            namespace,
            schedule_id: id.to_string(),
            schedule: Some(schedule),
            conflict_token: described.conflict_token,
            request_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        }))
        .await?;
    Ok(())
}

/// A string as Temporal's JSON payload converter encodes it, which the Web UI decodes.
fn json_payload(text: &str) -> Payload {
    Payload {
        metadata: [("encoding".to_string(), b"json/plain".to_vec())].into(),
        data: serde_json::to_vec(text).unwrap_or_default(),
        ..Default::default()
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
    // The server keeps a cron string as a structured calendar; read both back.
    let crons: Vec<String> = spec
        .map(|s| {
            let zone = match s.timezone_name.as_str() {
                "" => "UTC",
                zone => zone,
            };
            s.cron_string
                .iter()
                .cloned()
                .chain(s.structured_calendar.iter().map(cron_text::cron_text))
                .map(|cron| format!("{cron}  ({zone})"))
                .collect()
        })
        .unwrap_or_default();
    println!("schedule {}", a.schedule_id);
    match crons.as_slice() {
        [] => println!("  cron:      none (this schedule has no calendar)"),
        crons => {
            for cron in crons {
                println!("  cron:      {cron}");
            }
        }
    }
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
        let when = r
            .actual_time
            .or(r.schedule_time)
            .map_or_else(|| "-".to_string(), httpdate::fmt_http_date);
        println!(
            "  recent:    {when}  workflow {} (run {})",
            r.workflow_id, r.run_id
        );
    }
    Ok(())
}
