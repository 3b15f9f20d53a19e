//! `QuarterlySync`: one quarter, every school, within the compliance deadline.
//!
//! QueryPending counts what is left per school; one `SchoolSync` child per school does the
//! sending (a few at a time, so the parent's history stays small whatever the quarter's
//! size); Reconcile compares the store with what the API holds. A watchdog races the work:
//! it raises the "deadline at risk" alert at the warning mark and ends the run at the
//! deadline, because a run started by a schedule or `temporal workflow start` may carry no
//! execution timeout of its own. An ETA watcher projects the finish from the measured rate
//! and raises the same alert early, once, when the projection crosses the deadline.
//!
//! A quarter of a thousand schools would outgrow one history, so once it passes
//! `parent_continue_as_new_after_events` the run starts no more schools, lets the running
//! ones finish and continues as new with a small [`Carried`]: the next run's QueryPending
//! sees only the schools left, and only the last run reconciles.

use std::collections::BTreeSet;
use std::pin::pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use gradesync_activities::acts::SyncActivities;
use gradesync_activities::model::{
    Carried, Counts, DeadlineAlert, Eta, PendingOverview, Policy, Progress, QuarterRef,
    ReconcileAheadRequest, ReconcileRequest, ReconcileSummary, RedriveRequest, Redriven,
    SchoolPending, SchoolProgress, SyncInput, SyncSummary, Verdict, quarter_workflow_id,
};
use gradesync_govapi::Quarter;
use temporalio_common::error::ApplicationFailure;
use temporalio_common::search_attributes::SearchAttributeUpdate;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::{join_all, select};
use temporalio_sdk::{
    CancellableFuture, ChildWorkflowOptions, ChildWorkflowStartError, ContinueAsNewOptions,
    ParentClosePolicy, StartChildWorkflowExecutionFailedCause, SyncWorkflowContext,
    WorkflowContext, WorkflowContextView, WorkflowResult, WorkflowTermination,
};

use crate::eta::{Judging, Meter, Sample};
use crate::options;
use crate::redrive;
use crate::school::{SchoolInput, SchoolSync};
use crate::search_attributes;
use crate::timers::wait_named;

/// Marks histories made with the ETA watcher. Histories recorded before it carry no such
/// marker and replay without its timers and alert.
const ETA_WATCH_PATCH: &str = "eta-watch";
/// Runs ReconcileAhead beside the first round's sending.
const RECONCILE_AHEAD_PATCH: &str = "reconcile-ahead";
/// A run whose id is not its quarter's own starts the quarter under that id instead, so
/// that the schedule, `temporal workflow start` and our CLI never send one quarter twice.
const ONE_RUN_PATCH: &str = "one-run-per-quarter";
/// Redrives the run's dead letters in waves before it reconciles.
const REDRIVE_PATCH: &str = "dlq-redrive";
/// Upserts gradesync's search attributes (quarter, phase, verdict, counts) at each phase
/// change, for the Web UI's list; only on runs whose starter found them registered.
const SEARCH_ATTRIBUTES_PATCH: &str = "web-ui-search-attributes";
/// Reconcile reads the source once more before its verdict, and what is still owed then
/// (corrections, late items) is sent in another round instead of being reported unsent.
const LAST_READ_PATCH: &str = "reconcile-last-read";
/// How long ReconcileAhead may go on once the sending is over: a page read in flight.
const AHEAD_GRACE: Duration = Duration::from_secs(10);

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
    /// What earlier runs of the quarter did; all zero on a first run.
    carried: Carried,
    /// Schools this run started, over all its rounds.
    schools_started: usize,
    /// The history is long enough: start no more schools in this run.
    stopping: bool,
    /// The fixed-mark and the early "deadline at risk" alerts were raised (by this run or
    /// an earlier one).
    warned: bool,
    alerted: bool,
    /// DeadlineAtRisk activities not yet finished: continuing as new would lose them.
    alerts_in_flight: usize,
    /// Phase changes upsert the search attributes (registered, and the patch is in).
    search_attributes: bool,
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
        if let Some(problem) = policy.problem() {
            return Err(fail("InvalidPolicy", problem));
        }
        let glance = input.search_attributes && ctx.patched(SEARCH_ATTRIBUTES_PATCH);
        ctx.state_mut(|s| s.search_attributes = glance);
        if input.carried.is_none() && ctx.patched(ONE_RUN_PATCH) && !is_quarters_own(ctx, quarter) {
            let own = quarter_workflow_id(&quarter.to_string(), ctx.task_queue());
            return delegate(ctx, quarter, &policy, own).await;
        }
        let started_ms = match &input.carried {
            Some(carried) => carried.started_ms,
            None => ctx
                .info()
                .start_time()
                .or_else(|| ctx.workflow_time())
                .map_or(0, unix_ms),
        };
        ctx.state_mut(|s| {
            if let Some(carried) = input.carried {
                s.resume(carried);
            }
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

    /// Counts per state and per school, live while the run goes on. After a continue-as-new
    /// the totals and `pending_at_start` cover the whole quarter, the rows only the schools
    /// of the current run.
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
        self.record_school(update);
        self.refresh_eta(now_ms(ctx.workflow_time()));
    }
}

impl QuarterlySync {
    /// Takes up what the run this one continues left: its totals stand for the schools it
    /// finished, whose rows stay behind.
    fn resume(&mut self, carried: Carried) {
        self.progress.pending_at_start = carried.pending_at_start;
        self.progress.totals = carried.totals;
        self.meter = Meter::resume(&carried.meter);
        self.warned = carried.warned;
        self.alerted = carried.alerted;
        self.carried = carried;
    }

    /// What the next run needs. `left_pending`: records of the schools this run left for
    /// it, which its QueryPending counts again.
    fn carry(&self, at: &RoundState, left_pending: u64) -> Carried {
        let finished = self.progress.schools.iter().filter(|s| s.done).count() as u64;
        Carried {
            runs: self.carried.runs + 1,
            started_ms: self.progress.started_ms,
            pending_at_start: self.progress.pending_at_start.saturating_sub(left_pending),
            totals: self.progress.totals,
            schools_done: self.carried.schools_done + finished,
            round: at.round,
            owed_rounds: at.owed_rounds,
            repaired: at.repaired,
            earlier_reports: at.earlier_reports.clone(),
            redrives: at.redrives,
            warned: self.warned,
            alerted: self.alerted,
            meter: self.meter.compact(),
        }
    }

    /// Counts what QueryPending found: a new row per school, or more to do for a school
    /// this run already had (a repair round).
    fn add_pending(&mut self, overview: &PendingOverview) {
        self.progress.pending_at_start += overview.schools.iter().map(|s| s.pending).sum::<u64>();
        for school in &overview.schools {
            match self
                .progress
                .schools
                .iter_mut()
                .find(|p| p.school_id == school.school_id)
            {
                Some(p) => {
                    p.pending_at_start += school.pending;
                    p.done = false;
                }
                None => self.record_school(school_row(school)),
            }
        }
    }

    /// Dead batches that a redrive wave put back are owed again: they leave the dead
    /// counts (of the school's row, or of the earlier runs' totals when this run has no
    /// row for it) and the pending counts, which the next QueryPending adds them back to.
    /// Those a receipt lookup found committed leave the dead counts for the synced ones.
    fn take_back(&mut self, redriven: &Redriven) {
        for school in &redriven.schools {
            let row = self
                .progress
                .schools
                .iter_mut()
                .find(|p| p.school_id == school.school_id);
            let counts = match row {
                Some(row) => {
                    let n = school.records.min(row.counts.records_dead);
                    row.pending_at_start = row.pending_at_start.saturating_sub(n);
                    &mut row.counts
                }
                None => &mut self.carried.totals,
            };
            let n = school.records.min(counts.records_dead);
            counts.records_dead -= n;
            counts.batches_dead = counts.batches_dead.saturating_sub(school.batches);
            self.progress.pending_at_start = self.progress.pending_at_start.saturating_sub(n);
            // Found committed by a receipt lookup: synced now, nothing to send again.
            let synced = school.synced.min(counts.records_dead);
            counts.records_dead -= synced;
            counts.records_synced += synced;
        }
        let mut totals = self.carried.totals;
        for school in &self.progress.schools {
            totals.add(&school.counts);
        }
        self.progress.totals = totals;
    }

    /// Records a school's report; the totals are the earlier runs' plus this run's rows.
    fn record_school(&mut self, update: SchoolProgress) {
        record_school(&mut self.progress, update, &self.carried.totals);
    }

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

fn record_school(progress: &mut Progress, update: SchoolProgress, earlier: &Counts) {
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
    let mut totals = *earlier;
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

/// Whether this run holds the quarter's own id (on whichever task queue): decided from
/// the id alone, so that a replay on another queue takes the same path.
fn is_quarters_own(ctx: &WorkflowContext<QuarterlySync>, quarter: Quarter) -> bool {
    let own = quarter_workflow_id(
        &quarter.to_string(),
        gradesync_activities::model::DEFAULT_TASK_QUEUE,
    );
    let id = ctx.workflow_id();
    id == own
        || id
            .strip_prefix(&own)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// A non-retryable failure of the run, with the message the user reads.
fn fail(type_name: &str, message: String) -> WorkflowTermination {
    WorkflowTermination::failed_application(
        ApplicationFailure::builder(message)
            .type_name(type_name.to_string())
            .non_retryable(true)
            .build(),
    )
}

/// This run was started under another id than the quarter's own (by the schedule, or by
/// `temporal workflow start` with an id of its own): it starts the quarter's run under its
/// own id and follows it, or, when that run is already going, says so and ends. The
/// quarter's run outlives this one (abandon), as a run started by our CLI would.
async fn delegate(
    ctx: &WorkflowContext<QuarterlySync>,
    quarter: Quarter,
    policy: &Policy,
    own: String,
) -> WorkflowResult<SyncSummary> {
    ctx.state_mut(|s| s.progress.quarter = quarter.to_string());
    set_phase(ctx, "Delegating");
    let input = SyncInput {
        quarter: Some(quarter.to_string()),
        policy: policy.clone(),
        carried: None,
        search_attributes: ctx.state(|s| s.search_attributes),
    };
    let options = ChildWorkflowOptions::builder()
        .workflow_id(own.clone())
        .parent_close_policy(ParentClosePolicy::Abandon)
        .execution_timeout(Duration::from_millis(policy.deadline_ms))
        .static_summary(format!(
            "quarter {quarter}, started through {}",
            ctx.workflow_id()
        ))
        .build();
    match ctx
        .start_child_workflow(QuarterlySync::run, input, options)
        .await
    {
        Ok(run) => {
            let summary = run.result().await?;
            // The schedule's list shows this run too: it ends with the quarter's verdict.
            set_phase_with(
                ctx,
                verdict_phase(summary.verdict),
                Some(&summary.reconcile),
            );
            Ok(summary)
        }
        Err(ChildWorkflowStartError::StartFailed {
            cause: StartChildWorkflowExecutionFailedCause::WorkflowAlreadyExists,
            ..
        }) => Err(fail(
            "QuarterAlreadyRunning",
            format!(
                "quarter {quarter} is already being synced by workflow {own}; this start \
                 sends nothing. Follow it with `gradesync sync status --quarter {quarter}`"
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

async fn sync_quarter(
    ctx: &WorkflowContext<QuarterlySync>,
    quarter: Quarter,
    policy: &Policy,
) -> WorkflowResult<SyncSummary> {
    let mut at = ctx.state(|s| RoundState {
        round: s.carried.round,
        owed_rounds: s.carried.owed_rounds,
        repaired: s.carried.repaired,
        earlier_reports: s.carried.earlier_reports.clone(),
        redrives: s.carried.redrives,
    });
    let redrive = ctx.patched(REDRIVE_PATCH);
    let last_read = ctx.patched(LAST_READ_PATCH);
    let mut sending = match at.owed_rounds {
        0 => Round::Pass(at.round),
        n => Round::Owed(n),
    };
    loop {
        let ahead = sending == Round::Pass(0)
            && policy.reconcile_ahead_poll_ms > 0
            && ctx.patched(RECONCILE_AHEAD_PATCH);
        let left = if ahead {
            send_reconciling_ahead(ctx, quarter, policy).await?
        } else {
            send_pending(ctx, quarter, policy, sending).await?
        };
        if left.schools > 0 {
            return continue_as_new(ctx, quarter, policy, &at, left.pending).await;
        }
        if redrive && let Some(left) = redrive_waves(ctx, quarter, policy, &mut at).await? {
            return continue_as_new(ctx, quarter, policy, &at, left.pending).await;
        }
        set_phase(ctx, "Reconcile");
        let totals = ctx.state(|s| s.progress.totals);
        let request = ReconcileRequest {
            quarter: quarter.to_string(),
            workflow_id: ctx.workflow_id().to_string(),
            totals,
            repair: at.round < policy.repair_rounds,
            repaired_before: at.repaired,
            earlier_reports: at.earlier_reports.clone(),
            pass: pass_of(ctx),
            page_size: policy.reconcile_page_size,
            started_ms: ctx.state(|s| s.progress.started_ms),
            deadline_at_ms: ctx.state(|s| s.progress.deadline_at_ms),
            resend_owed: last_read && may_send_owed(ctx, policy, &at),
        };
        let reconcile = ctx
            .execute_activity(
                SyncActivities::reconcile,
                request,
                // Heartbeats per page and while it waits: a killed worker's Reconcile
                // moves on within the heartbeat timeout.
                options::store(policy, "Reconcile"),
            )
            .await?;
        if reconcile.owed > 0 {
            // Corrections and late items the source still owed at Reconcile's last read:
            // sent first, then Reconcile reads again.
            at.owed_rounds += 1;
            sending = Round::Owed(at.owed_rounds);
            continue;
        }
        if reconcile.requeued == 0 {
            let verdict = reconcile.verdict;
            set_phase_with(ctx, verdict_phase(verdict), Some(&reconcile));
            return Ok(SyncSummary {
                quarter: quarter.to_string(),
                totals,
                reconcile,
                complete: verdict == Verdict::Complete,
                verdict,
                redrives: at.redrives,
            });
        }
        // The API lost records it had accepted: they are pending again; send them anew.
        at.repaired += reconcile.requeued;
        at.earlier_reports.push(reconcile.report_json);
        at.round += 1;
        sending = Round::Pass(at.round);
    }
}

/// Whether Reconcile may hand the round back to send what the source still owes: rounds
/// are left, and another one and Reconcile's reserve fit before the deadline.
fn may_send_owed(ctx: &WorkflowContext<QuarterlySync>, policy: &Policy, at: &RoundState) -> bool {
    let started_ms = ctx.state(|s| s.progress.started_ms);
    let end = started_ms.saturating_add(end_mark_ms(policy));
    let now = now_ms(ctx.workflow_time());
    at.owed_rounds < policy.owed_rounds && now.saturating_add(policy.redrive_reserve_ms) < end
}

/// The repair round a run is in, what the rounds before it repaired, and the redrive
/// waves made so far.
#[derive(Debug, Clone, Default)]
struct RoundState {
    round: u32,
    /// Rounds sent because Reconcile found records still owed.
    owed_rounds: u32,
    repaired: u64,
    earlier_reports: Vec<String>,
    redrives: u32,
}

/// Which sending a round of SchoolSync children is: the quarter's pass or a repair of what
/// the API lost (`Pass(n)`), a dead-letter redrive wave, or what the source still owed at
/// Reconcile's last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    Pass(u32),
    Redrive(u32),
    Owed(u32),
}

impl Round {
    /// Appended to a school's child workflow id, so each round's children are new.
    fn suffix(self) -> String {
        match self {
            Round::Pass(0) => String::new(),
            Round::Pass(n) => format!("/repair-{n}"),
            Round::Redrive(n) => format!("/redrive-{n}"),
            Round::Owed(n) => format!("/owed-{n}"),
        }
    }
}

/// While dead letters remain and the deadline allows a wave, waits for the wave, puts the
/// dead batches back (same ids, same bytes) and sends them again. Returns the schools left
/// when the run must continue as new.
async fn redrive_waves(
    ctx: &WorkflowContext<QuarterlySync>,
    quarter: Quarter,
    policy: &Policy,
    at: &mut RoundState,
) -> WorkflowResult<Option<Left>> {
    loop {
        let (dead, started_ms) =
            ctx.state(|s| (s.progress.totals.records_dead, s.progress.started_ms));
        if dead == 0 {
            return Ok(None);
        }
        let now = now_ms(ctx.workflow_time());
        let end = started_ms.saturating_add(end_mark_ms(policy));
        let Some(wait) = redrive::next_wave(policy, at.redrives, now, end, dead) else {
            return Ok(None);
        };
        set_phase(ctx, "WaitingToRedrive");
        wait_named(ctx, wait, redrive::wave_name(wait)).await;
        at.redrives += 1;
        let redriven = ctx
            .execute_activity(
                SyncActivities::redrive_dead_letters,
                RedriveRequest {
                    quarter: quarter.to_string(),
                    wave: at.redrives,
                },
                options::store(policy, "RedriveDeadLetters"),
            )
            .await?;
        ctx.state_mut(|s| s.take_back(&redriven));
        if redriven.records() == 0 {
            if redriven.stuck > 0 {
                // Their receipt lookups could not tell yet: the next wave asks again.
                continue;
            }
            return Ok(None);
        }
        let left = send_pending(ctx, quarter, policy, Round::Redrive(at.redrives)).await?;
        if left.schools > 0 {
            return Ok(Some(left));
        }
    }
}

/// Schools a run did not start (its history grew long enough), and their pending records.
#[derive(Debug, Clone, Copy, Default)]
struct Left {
    schools: usize,
    pending: u64,
}

/// Ends this run once the schools it started have finished and goes on in a fresh one,
/// which finds the schools left still pending in the store.
async fn continue_as_new(
    ctx: &WorkflowContext<QuarterlySync>,
    quarter: Quarter,
    policy: &Policy,
    at: &RoundState,
    left_pending: u64,
) -> WorkflowResult<SyncSummary> {
    // A DeadlineAtRisk still running would be lost with this run.
    ctx.wait_condition(|s| s.alerts_in_flight == 0).await?;
    let carried = ctx.state(|s| s.carry(at, left_pending));
    let next = SyncInput {
        quarter: Some(quarter.to_string()),
        policy: policy.clone(),
        carried: Some(carried),
        search_attributes: ctx.state(|s| s.search_attributes),
    };
    match ctx.continue_as_new(next, ContinueAsNewOptions::default())? {}
}

/// One sync of the quarter: the workflow id and its first start, both kept across
/// continue-as-new, so pages checked by an earlier sync under the same id are not trusted.
fn pass_of(ctx: &WorkflowContext<QuarterlySync>) -> String {
    let started = ctx.state(|s| s.progress.started_ms);
    format!("{}@{started}", ctx.workflow_id())
}

/// The first round's sending with ReconcileAhead beside it, comparing the API's listing
/// page by page as the sending settles each page's records, so that the final Reconcile
/// reads little more than the last page instead of every page after the last answer.
async fn send_reconciling_ahead(
    ctx: &WorkflowContext<QuarterlySync>,
    quarter: Quarter,
    policy: &Policy,
) -> WorkflowResult<Left> {
    let request = ReconcileAheadRequest {
        quarter: quarter.to_string(),
        pass: pass_of(ctx),
        poll_ms: policy.reconcile_ahead_poll_ms,
        page_size: policy.reconcile_page_size,
    };
    let mut ahead = pin!(ctx.execute_activity(
        SyncActivities::reconcile_ahead,
        request,
        options::reconcile_ahead(policy),
    ));
    let mut sending = pin!(send_pending(ctx, quarter, policy, Round::Pass(0)).fuse());
    // Whatever ReconcileAhead leaves undone (it failed, or this run continues as new) the
    // final Reconcile reads; its result only says how much it saved.
    let mut ahead_done = false;
    let left = select! {
        left = sending => left?,
        _ = ahead => {
            ahead_done = true;
            sending.await?
        }
    };
    if !ahead_done {
        // With schools left for the next run, records stay unsettled and it would wait on.
        // Otherwise it ends once it sees every record settled, or finishes the page it is
        // reading; a record left unsettled by a fault must not hold the quarter up, though.
        if left.schools == 0 {
            let mut grace = pin!(wait_named(ctx, AHEAD_GRACE, "ReconcileAheadGrace").fuse());
            select! {
                _ = ahead => ahead_done = true,
                () = grace => {}
            };
        }
        if !ahead_done {
            ahead.cancel();
            let _ = ahead.await;
        }
    }
    Ok(left)
}

/// QueryPending, then one SchoolSync per school with anything left. Round 0 is the
/// quarter's pass; later rounds resend what Reconcile found missing at the API.
async fn send_pending(
    ctx: &WorkflowContext<QuarterlySync>,
    quarter: Quarter,
    policy: &Policy,
    round: Round,
) -> WorkflowResult<Left> {
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
    ctx.state_mut(|s| s.add_pending(&overview));
    let now = now_ms(ctx.workflow_time());
    ctx.state_mut(|s| s.start_measuring(now));
    set_phase(
        ctx,
        match round {
            Round::Pass(0) => "Sending",
            Round::Pass(_) => "Repairing",
            Round::Redrive(_) => "Redriving",
            Round::Owed(_) => "SendingOwed",
        },
    );
    sync_schools(ctx, quarter, policy, overview.schools, round).await
}

fn school_row(school: &SchoolPending) -> SchoolProgress {
    SchoolProgress {
        school_id: school.school_id.clone(),
        pending_at_start: school.pending,
        ..SchoolProgress::default()
    }
}

/// The last phase of a run: its verdict.
fn verdict_phase(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Complete => "Complete",
        Verdict::Incomplete => "Incomplete",
        Verdict::NeedsCorrection => "NeedsCorrection",
        Verdict::Empty => "Empty",
    }
}

fn set_phase(ctx: &WorkflowContext<QuarterlySync>, phase: &str) {
    set_phase_with(ctx, phase, None);
}

/// Sets the phase the `progress` query and the Web UI show; with the search attributes
/// on, upserts them too (one history event per phase change, the verdict with the last).
fn set_phase_with(
    ctx: &WorkflowContext<QuarterlySync>,
    phase: &str,
    judged: Option<&ReconcileSummary>,
) {
    ctx.state_mut(|s| s.progress.phase = phase.to_string());
    ctx.set_current_details(format!("phase: {phase}"));
    if ctx.state(|s| s.search_attributes) {
        let glance = ctx.state(|s| Glance::of(&s.progress, phase, judged));
        ctx.upsert_search_attributes(glance.updates());
    }
}

/// What the search attributes say at a phase change: counts only.
#[derive(Debug, Clone, PartialEq)]
struct Glance {
    quarter: String,
    phase: String,
    /// `(synced, owed)`; none before QueryPending has counted the quarter.
    records: Option<(u64, u64)>,
    verdict: Option<Verdict>,
}

impl Glance {
    fn of(progress: &Progress, phase: &str, judged: Option<&ReconcileSummary>) -> Self {
        let counted = !matches!(phase, "QueryPending" | "Delegating");
        let records = match judged {
            // Reconcile's word: confirmed at the API, and every record that is not.
            Some(r) => Some((
                r.synced_in_store
                    .saturating_sub(r.missing_at_api + r.hash_mismatches),
                r.rejected
                    + r.dead_lettered
                    + r.unsent
                    + r.missing_at_api
                    + r.hash_mismatches
                    + r.unverified,
            )),
            None => counted.then(|| {
                let synced = progress.totals.records_synced;
                (synced, progress.pending_at_start.saturating_sub(synced))
            }),
        };
        Glance {
            quarter: progress.quarter.clone(),
            phase: phase.to_string(),
            records,
            verdict: judged.map(|r| r.verdict),
        }
    }

    fn updates(&self) -> Vec<SearchAttributeUpdate> {
        let mut updates = vec![
            search_attributes::QUARTER.value_set(self.quarter.clone()),
            search_attributes::PHASE.value_set(self.phase.clone()),
        ];
        if let Some((synced, owed)) = self.records {
            let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            updates.push(search_attributes::RECORDS_SYNCED.value_set(int(synced)));
            updates.push(search_attributes::RECORDS_OWED.value_set(int(owed)));
        }
        if let Some(verdict) = self.verdict {
            updates.push(search_attributes::VERDICT.value_set(verdict.to_string()));
        }
        updates
    }
}

/// Runs one SchoolSync child per school, `parallel_schools` at a time, until the history
/// is long enough; the schools not started by then are left to the next run.
async fn sync_schools(
    ctx: &WorkflowContext<QuarterlySync>,
    quarter: Quarter,
    policy: &Policy,
    schools: Vec<SchoolPending>,
    round: Round,
) -> WorkflowResult<Left> {
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
            if stop_starting(&ctx, policy) {
                return Ok(Some(school.pending));
            }
            ctx.state_mut(|s| {
                s.schools_preparing += 1;
                s.schools_started += 1;
            });
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
                s.record_school(done);
                s.refresh_eta(now);
            });
            Ok::<_, WorkflowTermination>(None)
        }
    });
    let mut left = Left::default();
    for task in join_all(tasks).await {
        if let Some(pending) = task? {
            left.schools += 1;
            left.pending += pending;
        }
    }
    Ok(left)
}

/// Whether this run starts no more schools: its history has passed the policy's mark.
/// Only after it started one, so that every run moves the quarter on; sticky once true.
fn stop_starting(ctx: &WorkflowContext<QuarterlySync>, policy: &Policy) -> bool {
    let long = ctx.history_length() > policy.parent_continue_as_new_after_events;
    ctx.state_mut(|s| {
        s.stopping |= long && s.schools_started > 0;
        s.stopping
    })
}

async fn run_school(
    ctx: &WorkflowContext<QuarterlySync>,
    input: SchoolInput,
    round: Round,
) -> WorkflowResult<Counts> {
    let id = format!(
        "{}/school/{}{}",
        ctx.workflow_id(),
        input.school_id,
        round.suffix()
    );
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
/// the server's execution timeout when our CLI set one. Both marks count from the first
/// run's start, and a warning an earlier run raised is not raised again.
async fn watchdog(
    ctx: &WorkflowContext<QuarterlySync>,
    quarter: Quarter,
    policy: &Policy,
) -> WorkflowResult<SyncSummary> {
    let end_ms = end_mark_ms(policy);
    let warn_ms = policy.deadline_warning_ms.min(end_ms);
    if !ctx.state(|s| s.warned) {
        let warn_in = until_mark(ctx, warn_ms).unwrap_or(warn_ms);
        wait_named(ctx, Duration::from_millis(warn_in), "DeadlineWarning").await;
        ctx.state_mut(|s| s.warned = true);
        let alert = DeadlineAlert {
            quarter: quarter.to_string(),
            workflow_id: ctx.workflow_id().to_string(),
            elapsed_ms: warn_ms,
            deadline_ms: policy.deadline_ms,
            progress: ctx.state(|s| s.progress.clone()),
            projected: false,
        };
        raise_deadline_alert(ctx, policy, alert).await;
    }
    let rest = until_mark(ctx, end_ms).unwrap_or(end_ms - warn_ms);
    wait_named(ctx, Duration::from_millis(rest), "Deadline").await;
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

/// When the watchdog ends the run, from its first start: a little before the deadline.
fn end_mark_ms(policy: &Policy) -> u64 {
    policy.deadline_ms - (policy.deadline_ms / 10).min(60_000)
}

/// On a continued run, the time from now to `mark_ms` after the first run's start (at
/// least 1 ms: a mark already passed fires at once). `None` on a first run, whose timers
/// start with it and keep the fixed lengths its recorded histories hold.
fn until_mark(ctx: &WorkflowContext<QuarterlySync>, mark_ms: u64) -> Option<u64> {
    let (continued, started_ms) = ctx.state(|s| (s.carried.runs > 0, s.progress.started_ms));
    let spent = now_ms(ctx.workflow_time()).saturating_sub(started_ms);
    continued.then(|| mark_ms.saturating_sub(spent).max(1))
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
    loop {
        wait_named(ctx, every, "EtaCheck").await;
        let now = now_ms(ctx.workflow_time());
        let eta = ctx.state_mut(|s| s.refresh_eta(now));
        if ctx.state(|s| s.alerted) || eta.and_then(|e| e.on_track) != Some(false) {
            continue;
        }
        ctx.state_mut(|s| s.alerted = true);
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
    ctx.state_mut(|s| s.alerts_in_flight += 1);
    let _ = ctx
        .execute_activity(
            SyncActivities::deadline_at_risk,
            alert,
            options::store(policy, "DeadlineAtRisk"),
        )
        .await;
    ctx.state_mut(|s| s.alerts_in_flight -= 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(schools: &[(&str, u64)]) -> PendingOverview {
        PendingOverview {
            schools: schools
                .iter()
                .map(|(id, pending)| SchoolPending {
                    school_id: id.to_string(),
                    pending: *pending,
                })
                .collect(),
        }
    }

    fn finished(id: &str, synced: u64) -> SchoolProgress {
        SchoolProgress {
            school_id: id.to_string(),
            pending_at_start: synced,
            counts: Counts {
                records_synced: synced,
                batches_sent: 1,
                ..Counts::default()
            },
            done: true,
            drained: true,
        }
    }

    #[test]
    fn carried_counts_cover_every_run_without_counting_twice() {
        let mut first = QuarterlySync::default();
        first.progress.started_ms = 1_000;
        first.add_pending(&pending(&[("a", 100), ("b", 50), ("c", 70)]));
        first.record_school(finished("a", 100));
        first.record_school(finished("b", 50));
        let at = RoundState::default();
        let carried = first.carry(&at, 70); // "c" was not started
        assert_eq!(carried.pending_at_start, 150);
        assert_eq!(carried.totals.records_synced, 150);
        assert_eq!((carried.runs, carried.schools_done), (1, 2));
        assert_eq!(carried.started_ms, 1_000);

        let mut next = QuarterlySync::default();
        next.resume(carried);
        assert_eq!(next.progress.totals.records_synced, 150);
        next.add_pending(&pending(&[("c", 70)])); // only what is left
        next.record_school(finished("c", 70));
        assert_eq!(next.progress.pending_at_start, 220);
        assert_eq!(next.progress.totals.records_synced, 220);
        assert_eq!(next.progress.totals.batches_sent, 3);
        assert_eq!(
            next.progress.schools.len(),
            1,
            "rows of the current run only"
        );
    }

    #[test]
    fn a_redrive_takes_back_what_it_resends_and_counts_what_a_lookup_found_synced() {
        let mut run = QuarterlySync::default();
        run.add_pending(&pending(&[("a", 100)]));
        run.record_school(SchoolProgress {
            school_id: "a".into(),
            pending_at_start: 100,
            counts: Counts {
                records_synced: 60,
                records_dead: 40,
                batches_dead: 4,
                ..Counts::default()
            },
            done: true,
            drained: true,
        });
        run.take_back(&Redriven {
            schools: vec![gradesync_activities::model::SchoolRedriven {
                school_id: "a".into(),
                batches: 3,
                records: 20,
                synced: 10,
            }],
            stuck: 1,
        });
        let t = run.progress.totals;
        assert_eq!(
            (t.records_synced, t.records_dead, t.batches_dead),
            (70, 10, 1)
        );
        assert_eq!(
            run.progress.pending_at_start, 80,
            "the 20 resent are counted again"
        );
    }

    #[test]
    fn carried_state_keeps_the_repair_round_and_the_alerts_raised() {
        let mut run = QuarterlySync {
            warned: true,
            alerted: true,
            ..QuarterlySync::default()
        };
        run.meter.start(Sample { at_ms: 5, done: 0 });
        let at = RoundState {
            round: 1,
            owed_rounds: 3,
            repaired: 7,
            earlier_reports: vec!["r0.json".into()],
            redrives: 2,
        };
        let carried = run.carry(&at, 0);
        assert_eq!((carried.round, carried.repaired), (1, 7));
        assert_eq!(carried.owed_rounds, 3);
        assert_eq!(carried.earlier_reports, ["r0.json"]);
        assert_eq!(carried.redrives, 2);
        assert!(carried.warned && carried.alerted);
        assert_eq!(carried.meter, [Sample { at_ms: 5, done: 0 }; 2]);
        let mut next = QuarterlySync::default();
        next.resume(carried);
        assert!(next.warned && next.alerted);
    }

    #[test]
    fn the_glance_counts_owed_records_until_the_verdict_settles_them() {
        let mut progress = Progress {
            quarter: "2026-Q4".into(),
            pending_at_start: 1_000,
            ..Progress::default()
        };
        progress.totals.records_synced = 400;
        let before = Glance::of(&progress, "QueryPending", None);
        assert_eq!(before.records, None, "nothing counted yet");
        let sending = Glance::of(&progress, "Sending", None);
        assert_eq!(sending.records, Some((400, 600)));
        assert_eq!(sending.updates().len(), 4);
        let judged = ReconcileSummary {
            synced_in_store: 990,
            missing_at_api: 2,
            rejected: 8,
            verdict: Verdict::Incomplete,
            ..ReconcileSummary::default()
        };
        let end = Glance::of(&progress, "Incomplete", Some(&judged));
        assert_eq!(end.records, Some((988, 10)));
        assert_eq!(end.verdict, Some(Verdict::Incomplete));
        let names: Vec<_> = end.updates().iter().map(|u| u.name().to_string()).collect();
        let mut expected = search_attributes::ALL.map(|(n, _)| n.to_string());
        let mut names = names;
        names.sort();
        expected.sort();
        assert_eq!(names, expected, "the verdict's upsert sets every attribute");
    }

    #[test]
    fn old_inputs_deserialize_without_the_new_fields() {
        let input: SyncInput =
            serde_json::from_str(r#"{"quarter":"2026-Q3","policy":{"parallel_schools":2}}"#)
                .unwrap();
        assert_eq!(input.carried, None);
        assert_eq!(input.policy.parent_continue_as_new_after_events, 8_000);
    }
}
