//! `SchoolSync`: every pending grade of one school, batch by batch.
//!
//! The loop is the seed's PrepBatch -> SendBatch -> (WaitRate) -> MarkSynced, with ClientError
//! and DeadLetter branches. A few lanes share one cursor over each prepared chunk so slow
//! answers don't idle the rate budget (the pace itself is enforced by the SendBatch activity's
//! cross-process rate gate, not here). Once the history grows past the policy's threshold the
//! school continues as new with its counts carried over.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use gradesync_activities::acts::{SendActivities, SyncActivities};
use gradesync_activities::model::{
    BatchEvent, BatchRef, Counts, Policy, PrepRequest, SchoolProgress, SendRequest, SendResult,
};
use serde::{Deserialize, Serialize};
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::{join, join_all};
use temporalio_sdk::{
    ActivityExecutionError, ContinueAsNewOptions, SignalWorkflowOptions, TimeoutType,
    WorkflowContext, WorkflowContextView, WorkflowResult, WorkflowTermination,
};

use crate::backoff;
use crate::options;
use crate::quarterly::QuarterlySync;
use crate::timers::wait_named;

/// Input of `SchoolSync`; `counts` carries totals across continue-as-new.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SchoolInput {
    pub quarter: String,
    pub school_id: String,
    pub parent_workflow_id: String,
    pub send_task_queue: String,
    pub pending_at_start: u64,
    pub policy: Policy,
    #[serde(default)]
    pub counts: Counts,
}

#[workflow]
#[derive(Default)]
pub struct SchoolSync {
    counts: Counts,
    /// The parent was told this school has nothing left to cut.
    drained: bool,
}

#[workflow_methods]
impl SchoolSync {
    #[run(name = "SchoolSync")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: SchoolInput,
    ) -> WorkflowResult<Counts> {
        ctx.state_mut(|s| s.counts = input.counts);
        loop {
            if ctx.history_length() > input.policy.continue_as_new_after_events {
                let mut next = input.clone();
                next.counts = ctx.state(|s| s.counts);
                ctx.continue_as_new(next, ContinueAsNewOptions::default())?;
            }
            let prepared = ctx
                .execute_activity(
                    SyncActivities::prep_batch,
                    prep_request(&input),
                    options::prep_batch(&input.policy, &input.school_id),
                )
                .await?;
            ctx.state_mut(|s| s.counts.records_rejected += prepared.oversize_rejected);
            if prepared.batches.is_empty() {
                break;
            }
            send_chunk(ctx, &input, prepared.batches, prepared.drained).await?;
            report(ctx, &input).await;
        }
        Ok(ctx.state(|s| s.counts))
    }

    #[query]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> Counts {
        self.counts
    }
}

fn prep_request(input: &SchoolInput) -> PrepRequest {
    PrepRequest {
        quarter: input.quarter.clone(),
        school_id: input.school_id.clone(),
        max_batches: input.policy.batches_per_chunk.max(1),
        max_records: input.policy.max_batch_records,
        max_bytes: input.policy.max_batch_bytes,
    }
}

/// Sends a chunk of batches over `lanes_per_school` lanes sharing one cursor. When the
/// chunk is the school's last (`drained`), the lane that takes its last batch tells the
/// parent at once: only in-flight batches remain, so the parent starts the next school
/// while they finish and the rate budget never idles between schools.
async fn send_chunk(
    ctx: &WorkflowContext<SchoolSync>,
    input: &SchoolInput,
    batches: Vec<BatchRef>,
    drained: bool,
) -> WorkflowResult<()> {
    let cursor = Rc::new(Cell::new(0usize));
    let batches = Rc::new(batches);
    let lanes = (0..input.policy.lanes_per_school.max(1)).map(|_| {
        let (ctx, cursor, batches) = (ctx.clone(), cursor.clone(), batches.clone());
        async move {
            loop {
                let i = cursor.get();
                let Some(batch) = batches.get(i).copied() else {
                    return Ok::<(), WorkflowTermination>(());
                };
                cursor.set(i + 1);
                if drained && i + 1 == batches.len() && !ctx.state(|s| s.drained) {
                    ctx.state_mut(|s| s.drained = true);
                    let (_, delivered) = join!(report(&ctx, input), deliver(&ctx, input, batch));
                    delivered?;
                } else {
                    deliver(&ctx, input, batch).await?;
                }
            }
        }
    });
    for lane in join_all(lanes).await {
        lane?;
    }
    Ok(())
}

/// Failure types of an activity that no retry can fix (bad credentials at the token
/// endpoint, a corrupt store, a configuration error): the school's run fails at once with
/// the activity's message, which says what to fix, instead of dead-lettering every batch.
const FATAL: [&str; 3] = ["CredentialsRefused", "StoreCorrupt", "InvalidConfiguration"];

/// Times one batch may be resent because the worker holding it stopped heartbeating
/// (killed or cut off) before it counts as a failed attempt.
const MAX_LOST_WORKERS: u32 = 10;

/// Marks runs that resend a batch handed back by a draining worker at once, as they do
/// one whose worker went silent, instead of counting it as a failed attempt.
const HANDED_BACK_PATCH: &str = "drain-hand-back";

/// The failure type the SDK reports for an attempt a stopping worker cancelled when its
/// grace period ran out.
const WORKER_SHUTDOWN: &str = "WorkerShutdown";

/// What a SendBatch that did not complete means for the batch.
enum Incomplete {
    /// The worker holding it went silent: send it again at once, elsewhere.
    WorkerLost,
    /// The worker holding it was stopped and handed it back unfinished.
    HandedBack,
    /// A non-retryable failure no resend can fix: the run must stop.
    Fatal(Box<ApplicationFailure>),
    /// Counts as a failed attempt on the retry ladder.
    Failed(String),
}

fn classify(e: &ActivityExecutionError) -> Incomplete {
    if e.as_timeout()
        .is_some_and(|t| t.timeout_type() == TimeoutType::Heartbeat)
    {
        return Incomplete::WorkerLost;
    }
    if let Some(cause @ temporalio_common::error::IncomingError::Application(app)) = e.cause()
        && app.is_non_retryable()
        && app.type_name().is_some_and(|t| FATAL.contains(&t))
    {
        // The activity's own message: it says what to fix.
        let failure = ApplicationFailure::builder(cause.failure().message.clone())
            .type_name(app.type_name().unwrap_or_default().to_string())
            .non_retryable(true)
            .build();
        return Incomplete::Fatal(Box::new(failure));
    }
    if let Some(temporalio_common::error::IncomingError::Application(app)) = e.cause()
        && app.type_name() == Some(WORKER_SHUTDOWN)
    {
        return Incomplete::HandedBack;
    }
    Incomplete::Failed(format!("SendBatch did not complete: {e}"))
}

/// One batch from first attempt to a final state: synced, rejected or dead-lettered.
async fn deliver(
    ctx: &WorkflowContext<SchoolSync>,
    input: &SchoolInput,
    batch: BatchRef,
) -> WorkflowResult<()> {
    let policy = &input.policy;
    let (mut attempt, mut failures, mut throttles, mut lost) = (0u32, 0usize, 0u32, 0u32);
    loop {
        attempt += 1;
        let request = SendRequest {
            batch_id: batch.batch_id,
            attempt,
        };
        let summary = format!("SendBatch {} #{attempt}", batch.batch_id);
        let sent = ctx
            .execute_activity(
                SendActivities::send_batch,
                request,
                options::send_batch(policy, &input.send_task_queue, summary),
            )
            .await;
        let (reason, retry_after_ms) = match sent {
            Ok(SendResult::Sent { receipt_id, .. }) => {
                return mark_synced(ctx, input, batch, receipt_id).await;
            }
            Ok(SendResult::Rejected {
                status: 413, title, ..
            }) => {
                return split(ctx, input, batch, format!("413 {title}")).await;
            }
            Ok(SendResult::Rejected { status, title, .. }) => {
                let detail = format!("{status} {title}");
                return client_error(ctx, input, batch, detail).await;
            }
            // Withdrawn before it left (a record changed): the school's next PrepBatch
            // cuts its records anew. Or settled by an earlier attempt: nothing to count.
            Ok(SendResult::Withdrawn { .. }) => return Ok(()),
            Ok(SendResult::Throttled {
                reason,
                retry_after_ms,
            }) if throttles < policy.max_throttle_waits => {
                throttles += 1;
                ctx.state_mut(|s| s.counts.throttled += 1);
                let wait =
                    retry_after_ms.unwrap_or(policy.backoff_ms.first().copied().unwrap_or(1_000));
                let wait = Duration::from_millis(wait.min(policy.max_retry_after_ms).max(1));
                wait_named(ctx, wait, format!("RateLimited {reason}")).await;
                continue;
            }
            Ok(SendResult::Throttled {
                reason,
                retry_after_ms,
            })
            | Ok(SendResult::Failed {
                reason,
                retry_after_ms,
            }) => (reason, retry_after_ms),
            Err(e) => match classify(&e) {
                Incomplete::WorkerLost if lost < MAX_LOST_WORKERS => {
                    lost += 1;
                    continue;
                }
                Incomplete::HandedBack
                    if lost < MAX_LOST_WORKERS && ctx.patched(HANDED_BACK_PATCH) =>
                {
                    lost += 1;
                    continue;
                }
                Incomplete::WorkerLost | Incomplete::HandedBack => {
                    (format!("SendBatch did not complete: {e}"), None)
                }
                Incomplete::Fatal(failure) => {
                    return Err(WorkflowTermination::failed_application(*failure));
                }
                Incomplete::Failed(reason) => (reason, None),
            },
        };
        match backoff::next_wait(
            &policy.backoff_ms,
            failures,
            retry_after_ms,
            policy.max_retry_after_ms,
        ) {
            Some(wait) => {
                let name = backoff::step_name(policy.backoff_ms[failures], wait);
                failures += 1;
                ctx.state_mut(|s| s.counts.retries += 1);
                wait_named(ctx, wait, name).await;
            }
            None => return dead_letter(ctx, input, batch, reason).await,
        }
    }
}

fn event(input: &SchoolInput, batch: BatchRef, detail: String) -> BatchEvent {
    BatchEvent {
        quarter: input.quarter.clone(),
        school_id: input.school_id.clone(),
        batch_id: batch.batch_id,
        detail,
        max_cuts: input.policy.max_cuts_per_record,
    }
}

async fn mark_synced(
    ctx: &WorkflowContext<SchoolSync>,
    input: &SchoolInput,
    batch: BatchRef,
    receipt_id: String,
) -> WorkflowResult<()> {
    let changed = ctx
        .execute_activity(
            SyncActivities::mark_synced,
            event(input, batch, receipt_id),
            options::store(&input.policy, "MarkSynced"),
        )
        .await?;
    ctx.state_mut(|s| {
        s.counts.batches_sent += 1;
        s.counts.records_synced += changed;
    });
    Ok(())
}

async fn client_error(
    ctx: &WorkflowContext<SchoolSync>,
    input: &SchoolInput,
    batch: BatchRef,
    detail: String,
) -> WorkflowResult<()> {
    let counts = ctx
        .execute_activity(
            SyncActivities::client_error,
            event(input, batch, detail),
            options::store(&input.policy, "ClientError"),
        )
        .await?;
    ctx.state_mut(|s| {
        s.counts.records_rejected += counts.rejected;
        if counts.synced > 0 {
            // The 400 named none of the batch, and a receipt showed an earlier attempt
            // had committed it.
            s.counts.batches_sent += 1;
            s.counts.records_synced += counts.synced;
        } else if counts.dead > 0 {
            // The API named nothing of the batch, or its records were cut too often: the
            // batch is a dead letter, redriven or replayed like any other.
            s.counts.batches_dead += 1;
            s.counts.records_dead += counts.dead;
        } else {
            s.counts.batches_rejected += 1;
        }
    });
    Ok(())
}

/// A 413: send the two halves instead (each may split again), or count the lone record
/// that can never fit as rejected.
async fn split(
    ctx: &WorkflowContext<SchoolSync>,
    input: &SchoolInput,
    batch: BatchRef,
    detail: String,
) -> WorkflowResult<()> {
    let split = ctx
        .execute_activity(
            SyncActivities::split_batch,
            event(input, batch, detail),
            options::store(&input.policy, "SplitBatch"),
        )
        .await?;
    ctx.state_mut(|s| {
        s.counts.records_rejected += split.rejected;
        if split.synced > 0 {
            // An earlier attempt had committed it: nothing to split.
            s.counts.batches_sent += 1;
            s.counts.records_synced += split.synced;
        }
    });
    for half in split.batches {
        Box::pin(deliver(ctx, input, half)).await?;
    }
    Ok(())
}

async fn dead_letter(
    ctx: &WorkflowContext<SchoolSync>,
    input: &SchoolInput,
    batch: BatchRef,
    reason: String,
) -> WorkflowResult<()> {
    ctx.execute_activity(
        SyncActivities::dead_letter,
        event(input, batch, reason),
        options::store(&input.policy, "DeadLetter"),
    )
    .await?;
    ctx.state_mut(|s| {
        s.counts.batches_dead += 1;
        s.counts.records_dead += batch.records;
    });
    Ok(())
}

/// Tells the parent how far this school is, for the `progress` query. Best effort: a lost
/// signal only delays the numbers until the child's result arrives.
async fn report(ctx: &WorkflowContext<SchoolSync>, input: &SchoolInput) {
    let progress = SchoolProgress {
        school_id: input.school_id.clone(),
        pending_at_start: input.pending_at_start,
        counts: ctx.state(|s| s.counts),
        done: false,
        drained: ctx.state(|s| s.drained),
    };
    let parent = ctx.external_workflow(input.parent_workflow_id.clone(), None);
    let _ = parent
        .signal(
            QuarterlySync::school_progress,
            progress,
            SignalWorkflowOptions::default(),
        )
        .await;
}
