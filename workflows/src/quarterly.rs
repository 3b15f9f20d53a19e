//! `QuarterlySync`: one quarter, every school, within the compliance deadline.
//!
//! QueryPending counts what is left per school; one `SchoolSync` child per school does the
//! sending (a few at a time, so the parent's history stays small whatever the quarter's
//! size); Reconcile compares the store with what the API holds. A watchdog races the work:
//! it raises the "deadline at risk" alert at the warning mark and ends the run at the
//! deadline, because a run started by a schedule or `temporal workflow start` may carry no
//! execution timeout of its own. An ETA watcher projects the finish from the measured rate
//! and raises the same alert early, once, when the projection crosses the deadline.

use std::collections::BTreeSet;
use std::pin::pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use gradesync_activities::acts::SyncActivities;
use gradesync_activities::model::{
    Counts, DeadlineAlert, Eta, PendingOverview, Policy, Progress, QuarterRef, ReconcileRequest,
    SchoolPending, SchoolProgress, SyncInput, SyncSummary,
};
use gradesync_govapi::Quarter;
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::{join_all, select};
use temporalio_sdk::{
    ChildWorkflowOptions, SyncWorkflowContext, TimerOptions, WorkflowContext, WorkflowContextView,
    WorkflowResult, WorkflowTermination,
};

use crate::eta::{Judging, Meter, Sample};
use crate::options;
use crate::school::{SchoolInput, SchoolSync};

/// Marks histories made with the ETA watcher. Histories recorded before it carry no such
/// marker and replay without its timers and alert.
const ETA_WATCH_PATCH: &str = "eta-watch";

#[workflow]
#[derive(Default)]
pub struct QuarterlySync {
    progress: Progress,
    meter: Meter,
    judging: Judging,
    /// Schools of the current round holding a slot (still cutting batches).
    schools_preparing: usize,
    /// Schools of the current round with nothing left to cut.
    drained: BTreeSet<String>,
}

#[workflow_methods]
impl QuarterlySync {
    #[run(name = "QuarterlySync")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: SyncInput,
    ) -> WorkflowResult<SyncSummary> {
        let watch_eta = ctx.patched(ETA_WATCH_PATCH);
        let quarter = resolve_quarter(ctx, input.quarter.as_deref())?;
        let policy = input.policy;
        let started_ms = ctx
            .info()
            .start_time()
            .or_else(|| ctx.workflow_time())
            .map_or(0, unix_ms);
        ctx.state_mut(|s| {
            s.progress.quarter = quarter.to_string();
            s.progress.started_ms = started_ms;
            s.progress.deadline_at_ms = started_ms.saturating_add(policy.deadline_ms);
            s.judging = Judging {
                deadline_at_ms: s.progress.deadline_at_ms,
                window_ms: policy.eta_window_ms,
                min_measure_ms: policy.eta_min_measure_ms,
            };
        });
        let mut work = pin!(sync_quarter(ctx, quarter, &policy).fuse());
        let mut watchdog = pin!(watchdog(ctx, quarter, &policy).fuse());
        let mut eta = pin!(
            async {
                if watch_eta {
                    eta_watch(ctx, quarter, &policy).await
                } else {
                    std::future::pending().await
                }
            }
            .fuse()
        );
        select! {
            done = work => done,
            expired = watchdog => expired,
            never = eta => never,
        }
    }

    /// Counts per state and per school, live while the run goes on.
    #[query]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> Progress {
        self.progress.clone()
    }

    /// A SchoolSync reports its counts after each chunk of batches.
    #[signal]
    pub fn school_progress(&mut self, ctx: &mut SyncWorkflowContext<Self>, update: SchoolProgress) {
        if update.drained {
            self.drained.insert(update.school_id.clone());
        }
        record_school(&mut self.progress, update);
        self.refresh_eta(now_ms(ctx.workflow_time()));
    }
}

impl QuarterlySync {
    /// Starts measuring the rate (once per run; repair rounds keep the first start).
    fn start_measuring(&mut self, now_ms: u64) {
        self.meter.start(Sample {
            at_ms: now_ms,
            done: self.progress.done(),
        });
    }

    /// Re-projects the finish at workflow time `now_ms` into the `progress` query.
    fn refresh_eta(&mut self, now_ms: u64) -> Option<Eta> {
        let done = self.progress.done();
        let remaining = self.progress.pending_at_start.saturating_sub(done);
        let now = Sample {
            at_ms: now_ms,
            done,
        };
        let eta = self.meter.observe(now, remaining, self.judging)?;
        self.progress.eta = Some(eta);
        Some(eta)
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Workflow time (the current task's timestamp, the same on replay) in unix ms.
fn now_ms(workflow_time: Option<SystemTime>) -> u64 {
    workflow_time.map_or(0, unix_ms)
}

fn record_school(progress: &mut Progress, update: SchoolProgress) {
    match progress
        .schools
        .iter_mut()
        .find(|s| s.school_id == update.school_id)
    {
        // A late chunk report must not undo a finished school.
        Some(existing) if existing.done && !update.done => {}
        Some(existing) => {
            let drained = existing.drained || update.drained;
            *existing = update;
            existing.drained = drained;
        }
        None => progress.schools.push(update),
    }
    let mut totals = Counts::default();
    for school in &progress.schools {
        totals.add(&school.counts);
    }
    progress.totals = totals;
}

fn resolve_quarter(
    ctx: &WorkflowContext<QuarterlySync>,
    given: Option<&str>,
) -> WorkflowResult<Quarter> {
    match given {
        Some(text) => text.parse::<Quarter>().map_err(|e| {
            ApplicationFailure::builder(e)
                .type_name("InvalidQuarter".to_string())
                .non_retryable(true)
                .build()
                .into()
        }),
        None => {
            let started = ctx.workflow_time().unwrap_or(UNIX_EPOCH);
            let secs = started
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            Ok(Quarter::last_ended_before(secs as i64))
        }
    }
}

async fn sync_quarter(
    ctx: &WorkflowContext<QuarterlySync>,
    quarter: Quarter,
    policy: &Policy,
) -> WorkflowResult<SyncSummary> {
    let (mut repaired, mut earlier_reports, mut round) = (0, Vec::new(), 0);
    loop {
        send_pending(ctx, quarter, policy, round).await?;
        set_phase(ctx, "Reconcile");
        let totals = ctx.state(|s| s.progress.totals);
        let request = ReconcileRequest {
            quarter: quarter.to_string(),
            workflow_id: ctx.workflow_id().to_string(),
            totals,
            repair: round < policy.repair_rounds,
            repaired_before: repaired,
            earlier_reports: earlier_reports.clone(),
        };
        let reconcile = ctx
            .execute_activity(
                SyncActivities::reconcile,
                request,
                options::store(policy, "Reconcile"),
            )
            .await?;
        if reconcile.requeued == 0 {
            let complete = reconcile.clean;
            set_phase(
                ctx,
                if complete {
                    "Complete"
                } else {
                    "Discrepancies"
                },
            );
            return Ok(SyncSummary {
                quarter: quarter.to_string(),
                totals,
                reconcile,
                complete,
            });
        }
        // The API lost records it had accepted: they are pending again; send them anew.
        repaired += reconcile.requeued;
        earlier_reports.push(reconcile.report_json);
        round += 1;
    }
}

/// QueryPending, then one SchoolSync per school with anything left. Round 0 is the
/// quarter's pass; later rounds resend what Reconcile found missing at the API.
async fn send_pending(
    ctx: &WorkflowContext<QuarterlySync>,
    quarter: Quarter,
    policy: &Policy,
    round: u32,
) -> WorkflowResult<()> {
    set_phase(ctx, "QueryPending");
    let overview: PendingOverview = ctx
        .execute_activity(
            SyncActivities::query_pending,
            QuarterRef {
                quarter: quarter.to_string(),
                workflow_id: ctx.workflow_id().to_string(),
            },
            options::query_pending(policy),
        )
        .await?;
    ctx.state_mut(|s| {
        s.progress.pending_at_start += overview.schools.iter().map(|s| s.pending).sum::<u64>();
        for school in &overview.schools {
            match s
                .progress
                .schools
                .iter_mut()
                .find(|p| p.school_id == school.school_id)
            {
                Some(p) => {
                    p.pending_at_start += school.pending;
                    p.done = false;
                }
                None => record_school(&mut s.progress, school_row(school)),
            }
        }
    });
    let now = now_ms(ctx.workflow_time());
    ctx.state_mut(|s| s.start_measuring(now));
    set_phase(ctx, if round == 0 { "Sending" } else { "Repairing" });
    sync_schools(ctx, quarter, policy, overview.schools, round).await
}

fn school_row(school: &SchoolPending) -> SchoolProgress {
    SchoolProgress {
        school_id: school.school_id.clone(),
        pending_at_start: school.pending,
        ..SchoolProgress::default()
    }
}

fn set_phase(ctx: &WorkflowContext<QuarterlySync>, phase: &str) {
    ctx.state_mut(|s| s.progress.phase = phase.to_string());
    ctx.set_current_details(format!("phase: {phase}"));
}

/// Runs one SchoolSync child per school, `parallel_schools` at a time.
async fn sync_schools(
    ctx: &WorkflowContext<QuarterlySync>,
    quarter: Quarter,
    policy: &Policy,
    schools: Vec<SchoolPending>,
    round: u32,
) -> WorkflowResult<()> {
    let send_queue = if policy.send_task_queue.is_empty() {
        format!("{}-send", ctx.task_queue())
    } else {
        policy.send_task_queue.clone()
    };
    let parallel = policy.parallel_schools.max(1);
    ctx.state_mut(|s| s.drained.clear());
    // One task per school, all in one deterministic join. A school holds one of the
    // `parallel` slots while it still has records to cut; once it reports "drained" its
    // last batches finish beside the next school's first ones, so the rate budget does not
    // idle while one school winds down and the next starts up.
    let tasks = schools.iter().map(|school| {
        let (ctx, send_queue) = (ctx.clone(), send_queue.clone());
        async move {
            ctx.wait_condition(|s| s.schools_preparing < parallel)
                .await?;
            ctx.state_mut(|s| s.schools_preparing += 1);
            // Later rounds continue the school's counts rather than restart them.
            let (pending_at_start, counts) = ctx.state(|s| {
                s.progress
                    .schools
                    .iter()
                    .find(|p| p.school_id == school.school_id)
                    .map_or((school.pending, Counts::default()), |p| {
                        (p.pending_at_start, p.counts)
                    })
            });
            let input = SchoolInput {
                quarter: quarter.to_string(),
                school_id: school.school_id.clone(),
                parent_workflow_id: ctx.workflow_id().to_string(),
                send_task_queue: send_queue,
                pending_at_start,
                policy: policy.clone(),
                counts,
            };
            let mut child = pin!(run_school(&ctx, input, round).fuse());
            let school_id = school.school_id.as_str();
            let counts = select! {
                done = child => {
                    ctx.state_mut(|s| s.schools_preparing -= 1);
                    done
                }
                _ = ctx.wait_condition(|s| s.drained.contains(school_id)) => {
                    ctx.state_mut(|s| s.schools_preparing -= 1);
                    child.await
                }
            }?;
            let done = SchoolProgress {
                school_id: school.school_id.clone(),
                pending_at_start,
                counts,
                done: true,
                drained: true,
            };
            let now = now_ms(ctx.workflow_time());
            ctx.state_mut(|s| {
                record_school(&mut s.progress, done);
                s.refresh_eta(now);
            });
            Ok::<(), WorkflowTermination>(())
        }
    });
    for task in join_all(tasks).await {
        task?;
    }
    Ok(())
}

async fn run_school(
    ctx: &WorkflowContext<QuarterlySync>,
    input: SchoolInput,
    round: u32,
) -> WorkflowResult<Counts> {
    let mut id = format!("{}/school/{}", ctx.workflow_id(), input.school_id);
    if round > 0 {
        id.push_str(&format!("/repair-{round}"));
    }
    let child = ctx
        .start_child_workflow(
            SchoolSync::run,
            input,
            ChildWorkflowOptions::workflow_id(id),
        )
        .await?;
    Ok(child.result().await?)
}

/// Alerts at the warning mark, then ends the run just before the deadline: a little
/// before, so that this explicit failure (which says how to resume) wins the race against
/// the server's execution timeout when our CLI set one.
async fn watchdog(
    ctx: &WorkflowContext<QuarterlySync>,
    quarter: Quarter,
    policy: &Policy,
) -> WorkflowResult<SyncSummary> {
    let end_ms = policy.deadline_ms - (policy.deadline_ms / 10).min(60_000);
    let warn_at = Duration::from_millis(policy.deadline_warning_ms.min(end_ms));
    let rest = Duration::from_millis(end_ms) - warn_at;
    ctx.timer(
        TimerOptions::builder(warn_at)
            .summary("DeadlineWarning".to_string())
            .build(),
    )
    .await;
    let alert = DeadlineAlert {
        quarter: quarter.to_string(),
        workflow_id: ctx.workflow_id().to_string(),
        elapsed_ms: warn_at.as_millis() as u64,
        deadline_ms: policy.deadline_ms,
        progress: ctx.state(|s| s.progress.clone()),
        projected: false,
    };
    raise_deadline_alert(ctx, policy, alert).await;
    ctx.timer(
        TimerOptions::builder(rest)
            .summary("Deadline".to_string())
            .build(),
    )
    .await;
    Err(WorkflowTermination::failed_application(
        ApplicationFailure::builder(format!(
            "quarter {quarter} missed its {} h deadline; pending work remains in the store, \
             run `gradesync sync start --quarter {quarter}` to resume",
            policy.deadline_ms / 3_600_000
        ))
        .type_name("DeadlineExceeded".to_string())
        .non_retryable(true)
        .build(),
    ))
}

/// Re-projects the finish every `eta_check_interval_ms` (reports stop during an outage,
/// which is when the projection matters most) and raises the "deadline at risk" alert the
/// first time a judged projection misses the deadline. Never ends by itself.
async fn eta_watch(
    ctx: &WorkflowContext<QuarterlySync>,
    quarter: Quarter,
    policy: &Policy,
) -> WorkflowResult<SyncSummary> {
    let every = Duration::from_millis(policy.eta_check_interval_ms.max(100));
    let mut alerted = false;
    loop {
        ctx.timer(
            TimerOptions::builder(every)
                .summary("EtaCheck".to_string())
                .build(),
        )
        .await;
        let now = now_ms(ctx.workflow_time());
        let eta = ctx.state_mut(|s| s.refresh_eta(now));
        if alerted || eta.and_then(|e| e.on_track) != Some(false) {
            continue;
        }
        alerted = true;
        // Ids and counts only: the progress carries no record content.
        let progress = ctx.state(|s| s.progress.clone());
        let alert = DeadlineAlert {
            quarter: quarter.to_string(),
            workflow_id: ctx.workflow_id().to_string(),
            elapsed_ms: now.saturating_sub(progress.started_ms),
            deadline_ms: policy.deadline_ms,
            progress,
            projected: true,
        };
        raise_deadline_alert(ctx, policy, alert).await;
    }
}

/// DeadlineAtRisk. The alert must not be able to sink the run: its failure is only logged
/// by Temporal.
async fn raise_deadline_alert(
    ctx: &WorkflowContext<QuarterlySync>,
    policy: &Policy,
    alert: DeadlineAlert,
) {
    let _ = ctx
        .execute_activity(
            SyncActivities::deadline_at_risk,
            alert,
            options::store(policy, "DeadlineAtRisk"),
        )
        .await;
}
