//! The Temporal activities: one per seed state, each a thin step over the store, the
//! government client and the webhooks. Inputs and outputs are ids and counts
//! ([`crate::model`]); record content is read from the store inside the activity and never
//! returned.
//!
//! `SendActivities` (SendBatch alone) runs on its own task queue so its concurrency can be
//! sized apart from the store work in `SyncActivities`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gradesync_govapi::Quarter;
use gradesync_govapi::contract::Problem;
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::alert::Webhook;
use crate::answer_class::AnswerClass;
use crate::gov::{GovClient, RetryReason, SendOutcome};
use crate::metrics;
use crate::model::{
    BatchEvent, BatchRef, DeadlineAlert, PendingOverview, Policy, PrepRequest, PreparedBatches,
    QuarterRef, ReconcileAheadRequest, ReconcileAheadSummary, ReconcileRequest, ReconcileSummary,
    RedriveRequest, Redriven, RejectionCounts, SchoolPending, SendRequest, SendResult,
};
use crate::model::{RECORDS_PAGE, SplitBatches};
use crate::read_ahead::{self, ReadAhead};
use crate::redrive;
use crate::rejection;
use crate::report::{self, Discrepancy, DiscrepancyKind, RecordState, Report, ReportRow};
use crate::settle::{self, Lookup};
use crate::source::{Source, SourceError};
use crate::store::{BatchLimits, Store, StoreError, StoredReport, TakeOff, UnsentState};

/// Reconcile attempts that meet an unreadable listing before the report says so (the
/// API is down or refuses the reads): the records synced are then unverified, and the
/// verdict is `incomplete` rather than a run held until the deadline.
const LISTING_ATTEMPTS: u32 = 3;
/// Rows of unsent records read from the store per query while the report is built.
const UNSENT_PAGE: usize = 5_000;

/// A store error as an activity failure: retried when the store is busy or down, but
/// non-retryable (type `StoreCorrupt`) when no retry can fix it, so the run fails at once
/// with the message that says what to do.
fn store_error(e: StoreError) -> ActivityError {
    if e.is_fatal() {
        tracing::error!(error = %e, "the grades store cannot be used");
        return ActivityError::application(
            ApplicationFailure::builder(e.to_string())
                .type_name("StoreCorrupt".to_string())
                .non_retryable(true)
                .build(),
        );
    }
    e.into()
}

/// A source error as an activity failure: retried when the table is throttled or
/// unreachable, non-retryable (type `InvalidConfiguration`, which stops the run with the
/// message) when the table, index or credentials are wrong.
fn source_error(e: SourceError) -> ActivityError {
    match e {
        SourceError::Store(e) => store_error(e),
        e if e.is_retryable() => e.into(),
        e => {
            tracing::error!(error = %e, "the grades source cannot be used");
            ActivityError::application(
                ApplicationFailure::builder(e.to_string())
                    .type_name("InvalidConfiguration".to_string())
                    .non_retryable(true)
                    .build(),
            )
        }
    }
}

/// Runs `work` while heartbeating, so a worker killed in the middle (while it waits for
/// the rate gate, for an answer, or on the store) is noticed within the heartbeat timeout
/// and the work is handed to another worker. The SDK throttles the beats it sends.
///
/// A cancel ends the work at once: a draining worker's grace period is over (the SDK then
/// reports the attempt failed, so another worker takes it up at once, with the same batch
/// bytes and idempotency key), or the workflow no longer needs it.
async fn heartbeating<T>(
    ctx: &ActivityContext,
    work: impl Future<Output = Result<T, ActivityError>>,
) -> Result<T, ActivityError> {
    let every = ctx
        .info()
        .heartbeat_timeout
        .map_or(Duration::from_secs(5), |t| t / 4)
        .max(Duration::from_millis(100));
    let beat = async {
        loop {
            let _ = ctx.record_heartbeat(0u64).await;
            tokio::time::sleep(every).await;
        }
    };
    tokio::select! {
        out = work => out,
        never = beat => never,
        () = ctx.cancelled() => {
            tracing::warn!(
                activity = %ctx.info().activity_type,
                attempt = ctx.info().attempt,
                "activity cancelled (worker draining or workflow no longer waiting); handed back"
            );
            Err(ActivityError::cancelled())
        }
    }
}

/// QueryPending's read of the table's pending items into the store. Bad items are named
/// by key in the log (never their content), left pending in the table, and kept as
/// rejected records of the quarter: the report lists them, the verdict needs correction.
async fn pull_pending(source: &Source, store: &Store, q: &Quarter) -> Result<(), ActivityError> {
    let pulled = source
        .pull_pending(store, Some(q), true, |_| {})
        .await
        .map_err(source_error)?;
    let r = &pulled.import;
    tracing::info!(
        quarter = %q, source = %source.target().url(), items = r.lines, new = r.inserted,
        changed = r.updated, unchanged = r.unchanged, bad = r.bad_line_count,
        rejected = pulled.rejected, marked_synced = pulled.marked,
        "QueryPending: pending items read from the table"
    );
    for bad in &r.bad_lines {
        tracing::warn!(quarter = %q, item = %bad, "item skipped: not a valid grade record");
    }
    Ok(())
}

fn quarter(text: &str) -> Result<Quarter, ActivityError> {
    text.parse::<Quarter>().map_err(|e| {
        ActivityError::application(
            ApplicationFailure::builder(e)
                .type_name("InvalidQuarter".to_string())
                .non_retryable(true)
                .build(),
        )
    })
}

/// A request's listing page size; 0 (inputs from before it was a setting) is the maximum.
fn page_size(asked: usize) -> usize {
    if asked == 0 { RECORDS_PAGE } else { asked }
}

/// Store, alert and report work of a quarterly sync.
pub struct SyncActivities {
    pub store: Store,
    /// The DynamoDB table grades are read from and marked synced in, when there is one.
    pub source: Option<Arc<Source>>,
    pub gov: Arc<GovClient>,
    pub alerts: Webhook,
    pub compliance: Webhook,
    /// Where each report is also written as JSON and CSV files; the store always keeps it.
    pub report_dir: Option<PathBuf>,
}

#[activities]
impl SyncActivities {
    /// Counts what is left to send per school (pending plus prepared-but-unconfirmed).
    #[activity(name = "QueryPending")]
    pub async fn query_pending(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: QuarterRef,
    ) -> Result<PendingOverview, ActivityError> {
        heartbeating(&ctx, async move {
            let q = quarter(&req.quarter)?;
            // The token round trip overlaps the counting and the children's start instead of
            // delaying the first sends (a second at the API's 1 s latency).
            let gov = self.gov.clone();
            tokio::spawn(async move { gov.warm_up().await });
            self.store
                .start_run(&q, &req.workflow_id)
                .await
                .map_err(store_error)?;
            if let Some(source) = &self.source {
                pull_pending(source, &self.store, &q).await?;
            }
            let schools = self
                .store
                .pending_counts(&q)
                .await
                .map_err(store_error)?
                .into_iter()
                .map(|c| SchoolPending {
                    school_id: c.school_id,
                    pending: c.pending + c.batched,
                })
                .collect();
            Ok(PendingOverview { schools })
        })
        .await
    }

    /// Cuts (or resumes) up to `max_batches` batches of one school.
    #[activity(name = "PrepBatch")]
    pub async fn prep_batch(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: PrepRequest,
    ) -> Result<PreparedBatches, ActivityError> {
        let q = quarter(&req.quarter)?;
        ctx.record_heartbeat(0u64).await?;
        let limits = BatchLimits {
            max_records: req.max_records,
            max_bytes: req.max_bytes,
        };
        let chunk = self
            .store
            .prepare_batches(&q, &req.school_id, req.max_batches, limits)
            .await
            .map_err(store_error)?;
        ctx.record_heartbeat(chunk.batches.len() as u64).await?;
        tracing::info!(
            quarter = %q, school_id = %req.school_id, batches = chunk.batches.len(),
            oversize_rejected = chunk.oversize_rejected, "PrepBatch"
        );
        Ok(PreparedBatches {
            batches: chunk
                .batches
                .iter()
                .map(|b| BatchRef {
                    batch_id: b.batch_id,
                    records: b.records,
                })
                .collect(),
            oversize_rejected: chunk.oversize_rejected,
            drained: chunk.remaining_pending == 0,
        })
    }

    /// Conditional update: only rows still in flight for this batch become synced.
    #[activity(name = "MarkSynced")]
    pub async fn mark_synced(
        self: Arc<Self>,
        ctx: ActivityContext,
        ev: BatchEvent,
    ) -> Result<u64, ActivityError> {
        heartbeating(&ctx, async move {
            let mut changed = self
                .store
                .mark_synced(ev.batch_id, &ev.detail)
                .await
                .map_err(store_error)?;
            if let Some(source) = &self.source {
                // On every attempt: an earlier one may have stopped between the store and
                // the table. Items changed in the table since they were sent go back to
                // pending, so the batch's count is what stays synced.
                let sent = self
                    .store
                    .synced_records_of_batch(ev.batch_id)
                    .await
                    .map_err(store_error)?;
                let marked = source
                    .mark_synced(&self.store, &sent)
                    .await
                    .map_err(source_error)?;
                tracing::info!(
                    batch_id = %ev.batch_id, marked = marked.marked, already = marked.already,
                    requeued = marked.requeued, missing = marked.missing, left = marked.left,
                    "MarkSynced: table updated"
                );
                changed = changed.saturating_sub(marked.requeued);
            }
            metrics::get()
                .records
                .with_label_values(&[ev.quarter.as_str(), "synced"])
                .inc_by(changed);
            if changed == 0 {
                // A retry whose first attempt did the update but whose answer never reached
                // Temporal (worker killed, server unreachable): the run must still count the
                // batch's records, once; only the answer of one attempt reaches the workflow.
                changed = self.store.records_in_batch(ev.batch_id, "synced").await?;
            }
            tracing::info!(
                quarter = %ev.quarter, school_id = %ev.school_id, batch_id = %ev.batch_id,
                records = changed, "MarkSynced"
            );
            Ok(changed)
        })
        .await
    }

    /// A 400 naming records of the batch: those records are rejected with the API's
    /// reasons, the rest of the batch goes back to pending to be re-batched; the run
    /// continues. A 400 that names nothing of the batch, or records cut into too many
    /// batches already, make the batch a dead letter instead (alerted at once): resending
    /// without end is no answer.
    #[activity(name = "ClientError")]
    pub async fn client_error(
        self: Arc<Self>,
        ctx: ActivityContext,
        ev: BatchEvent,
    ) -> Result<RejectionCounts, ActivityError> {
        heartbeating(&ctx, async move {
            let problem = self
                .store
                .last_outcome(ev.batch_id)
                .await?
                .and_then(|text| serde_json::from_str::<Problem>(&text).ok())
                .unwrap_or_default();
            let named = rejection::named(&problem);
            let ids: Vec<String> = named.iter().map(|(id, _)| id.clone()).collect();
            // Naming none of the batch, the 400 came before the API's idempotency check: an
            // earlier attempt under this key may have committed the batch.
            if self.store.named_in_batch(ev.batch_id, &ids).await? == 0
                && let Lookup::Committed { synced, .. } =
                    settle::look_up(&self.gov, &self.store, ev.batch_id)
                        .await
                        .map_err(store_error)?
            {
                metrics::get()
                    .records
                    .with_label_values(&[ev.quarter.as_str(), "synced"])
                    .inc_by(synced);
                tracing::info!(
                    quarter = %ev.quarter, school_id = %ev.school_id, batch_id = %ev.batch_id,
                    status = problem.status, synced,
                    "ClientError: the 400 named none of the batch, which an earlier attempt had committed"
                );
                return Ok(RejectionCounts {
                    synced,
                    ..RejectionCounts::default()
                });
            }
            let reason = rejection_reason(&ev.detail, &problem);
            let max_cuts = if ev.max_cuts == 0 {
                Policy::default().max_cuts_per_record
            } else {
                ev.max_cuts
            };
            let mut done = self
                .store
                .reject_batch(ev.batch_id, problem.status, &reason, &named, max_cuts)
                .await
                .map_err(store_error)?;
            let m = metrics::get();
            for (outcome, n) in [
                ("rejected", done.rejected),
                ("requeued", done.requeued),
                ("dead", done.dead),
            ] {
                m.records
                    .with_label_values(&[ev.quarter.as_str(), outcome])
                    .inc_by(n);
            }
            if done.rejected == 0 && done.requeued == 0 && done.dead == 0 {
                // A retry after a lost answer, as in MarkSynced: count what the first attempt
                // rejected or dead-lettered (the requeued records have left the batch and are
                // counted later).
                done.rejected = self.store.records_in_batch(ev.batch_id, "rejected").await?;
                done.dead = self.store.records_in_batch(ev.batch_id, "dead").await?;
            }
            if done.dead > 0 {
                self.alert_dead_letter(&ev, "the API's 400 could not be applied to the batch")
                    .await?;
            }
            let fields: Vec<&str> = problem.errors.iter().map(|e| e.field.as_str()).collect();
            tracing::warn!(
                quarter = %ev.quarter, school_id = %ev.school_id, batch_id = %ev.batch_id,
                status = problem.status, problem_type = %problem.type_uri, title = %problem.title,
                fields = ?fields, rejected = done.rejected, requeued = done.requeued,
                "ClientError: batch rejected by the API"
            );
            Ok(RejectionCounts {
                rejected: done.rejected,
                requeued: done.requeued,
                dead: done.dead,
                synced: 0,
            })
        })
        .await
    }

    /// A 413: the API takes less per request than our limits allowed. The batch is
    /// replaced by two halves with new ids (a lone record too large is rejected).
    #[activity(name = "SplitBatch")]
    pub async fn split_batch(
        self: Arc<Self>,
        ctx: ActivityContext,
        ev: BatchEvent,
    ) -> Result<SplitBatches, ActivityError> {
        heartbeating(&ctx, async move {
            let reason = format!(
                "the API refused this record as too large even alone ({}); it cannot be sent",
                ev.detail
            );
            // A 413 comes before the API's idempotency check: an earlier attempt under this
            // key may have committed the batch, and then there is nothing to split.
            match settle::look_up(&self.gov, &self.store, ev.batch_id)
                .await
                .map_err(store_error)?
            {
                Lookup::Committed { synced, .. } => {
                    metrics::get()
                        .records
                        .with_label_values(&[ev.quarter.as_str(), "synced"])
                        .inc_by(synced);
                    return Ok(SplitBatches {
                        synced,
                        ..SplitBatches::default()
                    });
                }
                Lookup::NotCommitted => {}
                Lookup::Unknown(e) => {
                    // Retried by Temporal: the batch keeps its key until the API can tell.
                    return Err(ActivityError::application(
                        ApplicationFailure::builder(format!(
                            "cannot tell whether the API committed batch {} before its 413, \
                             so it is not split yet: {e}",
                            ev.batch_id
                        ))
                        .type_name("OutcomeUnknown".to_string())
                        .build(),
                    ));
                }
            }
            let split = self.store.split_batch(ev.batch_id, &reason).await?;
            let m = metrics::get();
            m.batches
                .with_label_values(&[ev.quarter.as_str(), "split"])
                .inc();
            m.records
                .with_label_values(&[ev.quarter.as_str(), "rejected"])
                .inc_by(split.rejected);
            tracing::warn!(
                quarter = %ev.quarter, school_id = %ev.school_id, batch_id = %ev.batch_id,
                halves = split.halves.len(), rejected = split.rejected, requeued = split.requeued,
                "SplitBatch: the API refused the batch as too large"
            );
            Ok(SplitBatches {
                batches: split
                    .halves
                    .iter()
                    .map(|b| BatchRef {
                        batch_id: b.batch_id,
                        records: b.records,
                    })
                    .collect(),
                rejected: split.rejected,
                synced: 0,
            })
        })
        .await
    }

    /// After the last retry: the batch goes to the dead-letter table and an alert goes out
    /// at once. Idempotent: a retry of this activity does not alert twice.
    #[activity(name = "DeadLetter")]
    pub async fn dead_letter(
        self: Arc<Self>,
        ctx: ActivityContext,
        ev: BatchEvent,
    ) -> Result<(), ActivityError> {
        heartbeating(&ctx, async move {
            quarter(&ev.quarter)?;
            self.store
                .dead_letter(ev.batch_id, &ev.detail)
                .await
                .map_err(store_error)?;
            metrics::get()
                .batches
                .with_label_values(&[ev.quarter.as_str(), "dead"])
                .inc();
            tracing::error!(
                quarter = %ev.quarter, school_id = %ev.school_id, batch_id = %ev.batch_id,
                error = %ev.detail, "DeadLetter: batch dead-lettered"
            );
            self.alert_dead_letter(&ev, &ev.detail).await
        })
        .await
    }

    /// A redrive wave: every dead letter of the quarter goes back to be sent (same batch
    /// ids, same bytes, same idempotency keys); says how much, per school.
    #[activity(name = "RedriveDeadLetters")]
    pub async fn redrive_dead_letters(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: RedriveRequest,
    ) -> Result<Redriven, ActivityError> {
        heartbeating(&ctx, async move {
            let q = quarter(&req.quarter)?;
            let redriven = redrive::wave(&self.gov, &self.store, &q)
                .await
                .map_err(store_error)?;
            let batches: u64 = redriven.schools.iter().map(|s| s.batches).sum();
            let m = metrics::get();
            m.redrives
                .with_label_values(&[req.quarter.as_str()])
                .inc_by(batches);
            m.batches
                .with_label_values(&[req.quarter.as_str(), "redriven"])
                .inc_by(batches);
            tracing::warn!(
                quarter = %q, wave = req.wave, batches, records = redriven.records(),
                synced = redriven.synced(), stuck = redriven.stuck,
                "RedriveDeadLetters: dead letters sent again"
            );
            Ok(redriven)
        })
        .await
    }

    /// Runs beside the sending: reads the API's listing page by page as the sending settles
    /// each page's records, and keeps the clean pages for Reconcile (see [`read_ahead`]).
    #[activity(name = "ReconcileAhead")]
    pub async fn reconcile_ahead(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: ReconcileAheadRequest,
    ) -> Result<ReconcileAheadSummary, ActivityError> {
        let q = quarter(&req.quarter)?;
        let ahead = ReadAhead {
            store: &self.store,
            gov: &self.gov,
            quarter: &q,
            pass: &req.pass,
            page_size: page_size(req.page_size),
            poll: Duration::from_millis(req.poll_ms.max(10)),
        };
        let summary = tokio::select! {
            summary = heartbeating(&ctx, ahead.run(&ctx)) => summary?,
            // Another worker takes it up from the pages already checked; the final
            // Reconcile reads whatever is left if none does.
            () = crate::drain::started() => {
                return Err(ActivityError::application(
                    ApplicationFailure::builder("this worker is stopping; ReconcileAhead goes on elsewhere")
                        .type_name("WorkerDraining".to_string())
                        .build(),
                ));
            }
        };
        tracing::info!(quarter = %q, pages_read = summary.pages_read,
            pages_checked = summary.pages_checked, "ReconcileAhead");
        Ok(summary)
    }

    /// Compares the store's synced records with the API's receipts, writes the report and
    /// sends it to compliance; the quarter is complete only when nothing differs.
    #[activity(name = "Reconcile")]
    pub async fn reconcile(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: ReconcileRequest,
    ) -> Result<ReconcileSummary, ActivityError> {
        let q = quarter(&req.quarter)?;
        heartbeating(&ctx, self.reconcile_heartbeating(&ctx, q, req)).await
    }

    /// The deadline-at-risk alert, raised by the workflow's watchdog before the limit.
    /// A webhook that stays down is recorded and never holds the run.
    #[activity(name = "DeadlineAtRisk")]
    pub async fn deadline_at_risk(
        self: Arc<Self>,
        ctx: ActivityContext,
        alert: DeadlineAlert,
    ) -> Result<(), ActivityError> {
        heartbeating(&ctx, async move {
            let text = deadline_text(&alert);
            tracing::error!(
                quarter = %alert.quarter, workflow_id = %alert.workflow_id,
                projected = alert.projected, "deadline at risk"
            );
            if let Ok(q) = alert.quarter.parse::<Quarter>() {
                self.post_or_record(&self.alerts, "alert", &q, &text, None)
                    .await?;
            }
            Ok(())
        })
        .await
    }
}

impl SyncActivities {
    async fn reconcile_heartbeating(
        &self,
        ctx: &ActivityContext,
        q: Quarter,
        req: ReconcileRequest,
    ) -> Result<ReconcileSummary, ActivityError> {
        let q = &q;
        let mut summary = ReconcileSummary::default();
        // What the source owes is sent before any verdict: no need to read the listing yet.
        if let Some(owed) = self.owed_to_resend(q, &req).await? {
            return Ok(owed);
        }
        let listing = self.compare_listing(ctx, q, &req, &mut summary).await?;
        // The verdict's last read of the source: a grade corrected or a late item that
        // arrived while the listing was read goes out too, in another round.
        let (owed, read_at) = self.last_read(q).await?;
        if owed > 0 && req.resend_owed {
            return Ok(owed_summary(owed, read_at));
        }
        summary.source_read_at_ms = read_at;
        (summary.rejected, summary.dead_lettered) =
            self.store.unsent_counts(q).await.map_err(store_error)?;
        let listing_read = listing.is_some();
        let mut discrepancies = listing.unwrap_or_default();
        for d in discrepancies.iter_mut().filter(|d| d.school_id.is_empty()) {
            d.school_id = self
                .store
                .school_of(&d.record_id)
                .await
                .map_err(store_error)?
                .unwrap_or_else(|| "(unknown)".to_string());
        }
        for d in &discrepancies {
            match d.kind {
                DiscrepancyKind::MissingAtApi => summary.missing_at_api += 1,
                DiscrepancyKind::HashMismatch => summary.hash_mismatches += 1,
                DiscrepancyKind::UnexpectedAtApi => summary.unexpected_at_api += 1,
            }
        }
        summary.clean = listing_read && discrepancies.is_empty();
        summary.repaired = req.repaired_before;
        let repairable: Vec<String> = discrepancies
            .iter()
            .filter(|d| d.kind != DiscrepancyKind::UnexpectedAtApi)
            .map(|d| d.record_id.clone())
            .collect();
        let rows = self.report_rows(q, &discrepancies).await?;
        if !listing_read {
            summary.unverified = summary.synced_in_store;
        }
        summary.unsent = rows
            .iter()
            .filter(|r| r.state == RecordState::Unsent)
            .count() as u64;
        let unconfirmed = summary.dead_lettered
            + summary.unsent
            + summary.unverified
            + summary.missing_at_api
            + summary.hash_mismatches;
        let records = summary.synced_in_store
            + summary.rejected
            + unconfirmed
            + summary.received_by_api
            + summary.unexpected_at_api;
        summary.verdict = report::verdict(summary.rejected, unconfirmed, listing_read, records);
        let stamp = report_stamp(ctx);
        let findings = Findings {
            rows: &rows,
            discrepancies: &discrepancies,
            listing_read,
        };
        if req.repair && !repairable.is_empty() {
            summary.requeued = self
                .store
                .requeue_records(q, &repairable)
                .await
                .map_err(store_error)?;
            self.write_report(q, &req, &stamp, &mut summary, &findings)
                .await?;
            tracing::warn!(
                quarter = %q, requeued = summary.requeued, report = %summary.report_json,
                "Reconcile: the API lost records; sending them again"
            );
            return Ok(summary);
        }
        self.publish(q, &req, &stamp, &mut summary, &findings)
            .await?;
        Ok(summary)
    }

    /// Reconcile's read of the source: the source table's pending items of the quarter go
    /// into the store (when there is a table), then what the store still owes the API is
    /// counted (pending records, and records of batches not answered yet). Returns that
    /// count and when the read began (unix ms).
    async fn last_read(&self, q: &Quarter) -> Result<(u64, u64), ActivityError> {
        let at = u64::try_from(unix_ms(SystemTime::now())).unwrap_or(0);
        if let Some(source) = &self.source {
            pull_pending(source, &self.store, q).await?;
        }
        let owed = self
            .store
            .pending_counts(q)
            .await
            .map_err(store_error)?
            .iter()
            .map(|c| c.pending + c.batched)
            .sum();
        Ok((owed, at))
    }

    /// The round handed back, when the source owes records and the run may send them.
    async fn owed_to_resend(
        &self,
        q: &Quarter,
        req: &ReconcileRequest,
    ) -> Result<Option<ReconcileSummary>, ActivityError> {
        if !req.resend_owed {
            return Ok(None);
        }
        let (owed, read_at) = self.last_read(q).await?;
        Ok((owed > 0).then(|| owed_summary(owed, read_at)))
    }

    /// Every record not confirmed at the API: the store's rejected, dead and unsent
    /// records (with their batch and reason), then what the comparison found.
    async fn report_rows(
        &self,
        q: &Quarter,
        discrepancies: &[Discrepancy],
    ) -> Result<Vec<ReportRow>, ActivityError> {
        let mut rows = Vec::new();
        for owed in [false, true] {
            let mut after: Option<String> = None;
            loop {
                let page = if owed {
                    self.store
                        .owed_records(q, after.as_deref(), UNSENT_PAGE)
                        .await
                } else {
                    self.store
                        .unsent_records(q, after.as_deref(), UNSENT_PAGE)
                        .await
                }
                .map_err(store_error)?;
                let Some(last) = page.last() else { break };
                after = Some(last.record_id.clone());
                let full = page.len() == UNSENT_PAGE;
                rows.extend(page.into_iter().map(|u| ReportRow {
                    school_id: u.school_id,
                    record_id: u.record_id,
                    state: match u.state {
                        UnsentState::Rejected => RecordState::Rejected,
                        UnsentState::Dead => RecordState::Dead,
                        UnsentState::Unsent => RecordState::Unsent,
                    },
                    batch_id: u.batch_id,
                    reason: u.reason,
                }));
                if !full {
                    break;
                }
            }
        }
        for d in discrepancies {
            let mut row = ReportRow::from(d);
            row.batch_id = self
                .store
                .batch_of(&d.record_id)
                .await
                .map_err(store_error)?;
            rows.push(row);
        }
        Ok(rows)
    }

    /// Posts to a webhook; a post that fails for good (after the webhook's own bounded
    /// retries) is logged and recorded for `sync status` and the report, and never fails
    /// the activity: side effects do not hold the sync.
    async fn post_or_record(
        &self,
        hook: &Webhook,
        name: &str,
        q: &Quarter,
        text: &str,
        extra: Option<serde_json::Value>,
    ) -> Result<bool, ActivityError> {
        match hook.post(text, extra).await {
            Ok(sent) => Ok(sent),
            Err(e) => {
                tracing::error!(quarter = %q, hook = name, error = %e, "webhook post failed; going on without it");
                self.store
                    .record_webhook_failure(q, name, &e.to_string())
                    .await
                    .map_err(store_error)?;
                Ok(false)
            }
        }
    }

    /// The dead-letter alert, once per dead letter.
    async fn alert_dead_letter(&self, ev: &BatchEvent, detail: &str) -> Result<(), ActivityError> {
        let q = quarter(&ev.quarter)?;
        let already = self
            .store
            .dead_letters(&q)
            .await
            .map_err(store_error)?
            .iter()
            .any(|d| d.batch_id == ev.batch_id && d.alerted);
        if already {
            return Ok(());
        }
        let text = format!(
            ":rotating_light: gradesync dead letter: quarter {}, school {}, batch {}: {}. \
             The run redrives it by itself while the deadline allows; after the run, replay \
             it with `gradesync dlq replay --quarter {}`.",
            ev.quarter, ev.school_id, ev.batch_id, detail, ev.quarter
        );
        if self
            .post_or_record(&self.alerts, "alert", &q, &text, None)
            .await?
        {
            self.store
                .mark_alerted(ev.batch_id)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }
}

/// The alert's text: the warning mark's, or the projection's when the measured rate says
/// the run will not make it. Ids and counts only.
fn deadline_text(alert: &DeadlineAlert) -> String {
    let p = &alert.progress;
    let counts = format!(
        "{} of {} records synced, {} dead-lettered",
        p.totals.records_synced, p.pending_at_start, p.totals.records_dead
    );
    let hours = |ms: u64| ms as f64 / 3.6e6;
    match p.eta.filter(|_| alert.projected) {
        Some(eta) => {
            let finish = match eta.projected_finish_ms {
                Some(at) => format!(
                    "projected to finish {:.1} h after its start",
                    hours(at.saturating_sub(p.started_ms))
                ),
                None => "projected never to finish at the current rate".to_string(),
            };
            format!(
                ":warning: gradesync deadline at risk: quarter {} (workflow {}) is {finish}, \
                 past its {:.1} h limit; measured {:.1} records/s after {:.1} h; {counts}.",
                alert.quarter,
                alert.workflow_id,
                hours(alert.deadline_ms),
                eta.rate_per_sec,
                hours(alert.elapsed_ms),
            )
        }
        None => format!(
            ":warning: gradesync deadline at risk: quarter {} (workflow {}) has run {:.1} h of \
             its {:.1} h limit; {counts}.",
            alert.quarter,
            alert.workflow_id,
            hours(alert.elapsed_ms),
            hours(alert.deadline_ms),
        ),
    }
}

impl SyncActivities {
    /// The API's listing of the whole quarter, page by page (ceil(N / 10,000) requests of
    /// the rate budget), each page compared with the store's synced records of the same
    /// record-id range: memory stays at one page whatever the quarter's size. The pages
    /// ReconcileAhead found clean while sending went on, and that still hold, are taken as
    /// read.
    async fn compare_listing(
        &self,
        ctx: &ActivityContext,
        q: &Quarter,
        req: &ReconcileRequest,
        summary: &mut ReconcileSummary,
    ) -> Result<Option<Vec<Discrepancy>>, ActivityError> {
        let size = page_size(req.page_size);
        let resumed = read_ahead::resume(&self.store, q, &req.pass).await?;
        if resumed.page_no > 0 {
            tracing::info!(quarter = %q, pages = resumed.page_no, records = resumed.records,
                "Reconcile: pages checked while sending still hold");
        }
        summary.synced_in_store = resumed.records;
        summary.received_by_api = resumed.records;
        summary.pages_checked_ahead = resumed.page_no;
        if resumed.at_end() {
            return Ok(Some(Vec::new()));
        }
        let mut discrepancies = Vec::new();
        let mut from_stored_token = resumed.token.is_some();
        let mut after = resumed.after;
        let mut page_token = resumed.token;
        let mut page_no = resumed.page_no;
        loop {
            ctx.record_heartbeat(page_no).await?;
            let page = match self
                .gov
                .records_page(q, None, size, page_token.as_deref())
                .await
            {
                Ok(page) => page,
                // A real API's page tokens may expire: read the listing from its start.
                Err(e) if from_stored_token => {
                    tracing::warn!(error = %e, "Reconcile: a page token kept from earlier was refused; reading the listing from its start");
                    from_stored_token = false;
                    (after, page_token, page_no) = (None, None, 0);
                    summary.synced_in_store = 0;
                    summary.received_by_api = 0;
                    summary.pages_checked_ahead = 0;
                    continue;
                }
                // Down or refusing reads for several attempts: report what cannot be
                // confirmed instead of holding the quarter up until the deadline.
                Err(e) if e.is_retryable() && ctx.info().attempt >= LISTING_ATTEMPTS => {
                    tracing::error!(quarter = %q, error = %e, attempt = ctx.info().attempt,
                        "Reconcile: the API's listing cannot be read; synced records stay unverified");
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            };
            from_stored_token = false;
            page_no += 1;
            let next = page.next_page_token.filter(|t| !t.is_empty());
            if page.records.is_empty()
                && let Some(token) = next
            {
                page_token = Some(token);
                continue;
            }
            // The last page's range is open above, to catch what the store has beyond it.
            let upto = match &next {
                Some(_) => page.records.last().map(|r| r.record_id.clone()),
                None => None,
            };
            summary.received_by_api += page.records.len() as u64;
            let (ours, differences) = read_ahead::compare_page(
                &self.store,
                q,
                after.as_deref(),
                upto.as_deref(),
                page.records,
            )
            .await?;
            summary.synced_in_store += ours.len() as u64;
            discrepancies.extend(differences);
            match next {
                Some(token) => {
                    after = upto;
                    page_token = Some(token);
                }
                None => return Ok(Some(discrepancies)),
            }
        }
    }

    /// Builds this round's report, keeps it in the store and, when a report directory is
    /// set, writes it there too; records where it is in `summary`.
    async fn write_report(
        &self,
        q: &Quarter,
        req: &ReconcileRequest,
        stamp: &str,
        summary: &mut ReconcileSummary,
        findings: &Findings<'_>,
    ) -> Result<serde_json::Value, ActivityError> {
        let failures = self.store.webhook_failures(q).await.map_err(store_error)?;
        summary.webhook_failures = failures.len() as u64;
        let failures: Vec<_> = failures
            .iter()
            .map(|f| serde_json::json!({ "hook": f.hook, "error": f.error, "at_ms": f.created_at }))
            .collect();
        let now = SystemTime::now();
        let quarter_text = q.to_string();
        let report = Report {
            quarter: &quarter_text,
            workflow_id: &req.workflow_id,
            generated_at: httpdate::fmt_http_date(now),
            started_at_ms: (req.started_ms > 0).then_some(req.started_ms),
            deadline_at_ms: (req.deadline_at_ms > 0).then_some(req.deadline_at_ms),
            source_read_at_ms: (summary.source_read_at_ms > 0).then_some(summary.source_read_at_ms),
            verdict: summary.verdict,
            listing_read: findings.listing_read,
            clean: summary.clean,
            counts: serde_json::json!({ "store": &*summary, "run": req.totals }),
            webhook_failures: serde_json::Value::Array(failures),
            earlier_reports: &req.earlier_reports,
            records: findings.rows,
            discrepancies: findings.discrepancies,
        };
        let (json, csv) = report::render(&report)?;
        let files = self.report_dir.as_deref().and_then(|dir| {
            report::write(dir, &quarter_text, stamp, &json, &csv)
                .inspect_err(|e| {
                    tracing::warn!(quarter = %q, dir = %dir.display(), error = %e,
                        "Reconcile: cannot write the report files; the report is kept in the store")
                })
                .ok()
        });
        self.store
            .save_report(&StoredReport {
                quarter: *q,
                stamp: stamp.to_string(),
                workflow_id: req.workflow_id.clone(),
                verdict: summary.verdict.as_str().to_string(),
                generated_at: unix_ms(now),
                json,
                csv,
            })
            .await
            .map_err(store_error)?;
        (summary.report_json, summary.report_csv) = match files {
            Some((json, csv)) => (json.display().to_string(), csv.display().to_string()),
            None => {
                let stored = report::db_reference(&quarter_text, stamp);
                (stored.clone(), stored)
            }
        };
        Ok(serde_json::to_value(&report)?)
    }

    /// The final round: the report, the compliance webhook, the quarter's run row.
    async fn publish(
        &self,
        q: &Quarter,
        req: &ReconcileRequest,
        stamp: &str,
        summary: &mut ReconcileSummary,
        findings: &Findings<'_>,
    ) -> Result<(), ActivityError> {
        let report = self.write_report(q, req, stamp, summary, findings).await?;
        let status = summary.verdict.as_str();
        let text = format!(
            "gradesync reconciliation for {q}: {status}; {} synced, {} at the API, {} missing, \
             {} mismatched, {} unexpected, {} rejected, {} dead-lettered, {} not sent, {} \
             unverified, {} repaired. Report: {}",
            summary.synced_in_store,
            summary.received_by_api,
            summary.missing_at_api,
            summary.hash_mismatches,
            summary.unexpected_at_api,
            summary.rejected,
            summary.dead_lettered,
            summary.unsent,
            summary.unverified,
            summary.repaired,
            report_location(&summary.report_json)
        );
        let extra = serde_json::json!({ "verdict": status, "report": report });
        self.post_or_record(&self.compliance, "compliance", q, &text, Some(extra))
            .await?;
        summary.webhook_failures = self
            .store
            .webhook_failures(q)
            .await
            .map_err(store_error)?
            .len() as u64;
        let counts = serde_json::to_string(&*summary)?;
        self.store
            .finish_run(q, status, Some(&summary.report_json), &counts)
            .await
            .map_err(store_error)?;
        // A later sync reads the listing anew; kept pages would only slow its imports.
        self.store.forget_checked_pages(q, None).await?;
        tracing::info!(quarter = %q, verdict = status, report = %summary.report_json, "Reconcile");
        Ok(())
    }
}

/// A round that gives no verdict: the source still owes `owed` records, which the run
/// sends before it reconciles again.
fn owed_summary(owed: u64, read_at: u64) -> ReconcileSummary {
    tracing::info!(
        owed,
        "Reconcile: the source still owes records; sending them before the verdict"
    );
    ReconcileSummary {
        owed,
        source_read_at_ms: read_at,
        ..ReconcileSummary::default()
    }
}

/// What one Reconcile round found, for its report.
struct Findings<'a> {
    /// Every record not confirmed at the API.
    rows: &'a [ReportRow],
    /// The store-versus-API comparison alone.
    discrepancies: &'a [Discrepancy],
    /// Whether the API's listing could be read.
    listing_read: bool,
}

/// A report's stamp: the time its Reconcile round was first scheduled, in Unix ms. Every
/// attempt of the round has the same one, so a retried round rewrites its report (row and
/// files) instead of adding a second.
fn report_stamp(ctx: &ActivityContext) -> String {
    unix_ms(ctx.info().scheduled_time.unwrap_or_else(SystemTime::now)).to_string()
}

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Where the compliance team finds a report: its files, or the command that reads it from
/// the store.
fn report_location(reference: &str) -> String {
    match report::parse_db_reference(reference) {
        Some((quarter, stamp)) => format!(
            "in the grades database (`gradesync report show --quarter {quarter}`, \
             `gradesync report export --quarter {quarter} --stamp {stamp} --format csv`)"
        ),
        None => reference.to_string(),
    }
}

fn rejection_reason(detail: &str, problem: &Problem) -> String {
    match &problem.detail {
        Some(d) if !d.is_empty() => format!("{detail}: {d}"),
        _ => detail.to_string(),
    }
}

/// SendBatch alone, on its own task queue.
pub struct SendActivities {
    pub store: Store,
    pub gov: Arc<GovClient>,
    /// Where the "credentials refused" alert goes when the token endpoint refuses us.
    pub alerts: Webhook,
}

#[activities]
impl SendActivities {
    /// POSTs one batch (same bytes, same `Idempotency-Key` on every attempt) and says what
    /// the answer means. Does not retry: the workflow's named timers do.
    ///
    /// It heartbeats all along (rate gate, request, store), so a killed worker's batch
    /// is sent again by another within the heartbeat timeout. Credentials refused by the
    /// token endpoint fail it for good (`CredentialsRefused`), with an alert: no resend
    /// can fix them.
    #[activity(name = "SendBatch")]
    pub async fn send_batch(
        self: Arc<Self>,
        ctx: ActivityContext,
        req: SendRequest,
    ) -> Result<SendResult, ActivityError> {
        heartbeating(&ctx, self.send(req)).await
    }
}

impl SendActivities {
    async fn send(&self, req: SendRequest) -> Result<SendResult, ActivityError> {
        let mut batch = match self
            .store
            .take_off(req.batch_id)
            .await
            .map_err(store_error)?
        {
            TakeOff::Send(batch) => batch,
            TakeOff::Settled { status, receipt_id } => {
                tracing::info!(batch_id = %req.batch_id, attempt = req.attempt, %status,
                    "SendBatch: nothing to send, the batch is settled or was withdrawn before it left");
                return Ok(match receipt_id {
                    Some(receipt_id) if status == "synced" => SendResult::Sent {
                        receipt_id,
                        replayed: true,
                    },
                    _ => SendResult::Withdrawn { status },
                });
            }
        };
        // The span (see log_span) knows the batch only; the rest of its lines name where
        // it belongs too.
        let span = tracing::Span::current();
        span.record("quarter", tracing::field::display(&batch.quarter));
        span.record("school_id", batch.school_id.as_str());
        let record_ids = std::mem::take(&mut batch.record_ids);
        let outcome = self.gov.send_batch(req.batch_id, batch.body.into()).await;
        if let SendOutcome::TokenRefused { status, excerpt } = &outcome {
            let message = format!(
                "the API's token endpoint refused our client credentials ({status}{}): fix \
                 GRADESYNC_GOV_CLIENT_ID / GRADESYNC_GOV_CLIENT_SECRET, then start the sync again",
                excerpt
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
            self.store
                .record_attempt(req.batch_id, "credentials refused by the token endpoint")
                .await
                .map_err(store_error)?;
            // The failure also says when the alert did not go out, so whoever reads it in
            // the Web UI knows nobody was told (the webhook shown as scheme and host only).
            let message = match self.alert_once(&batch.quarter, &message).await {
                Some(e) => format!("{message} (and the alert about it was not delivered: {e})"),
                None => message,
            };
            return Err(ActivityError::application(
                ApplicationFailure::builder(message)
                    .type_name("CredentialsRefused".to_string())
                    .non_retryable(true)
                    .build(),
            ));
        }
        let class = AnswerClass::of_outcome(&outcome);
        let (note, result) = decide(outcome, &record_ids);
        metrics::get()
            .batches
            .with_label_values(&[batch.quarter.to_string().as_str(), outcome_label(&result)])
            .inc();
        self.store
            .record_attempt(req.batch_id, &note)
            .await
            .map_err(store_error)?;
        // For the report's plot only: a failed count must not resend the batch.
        if let Err(e) = self
            .store
            .count_api_answer(&batch.quarter, class.as_str())
            .await
        {
            tracing::warn!(batch_id = %req.batch_id, error = %e, "SendBatch: answer not counted");
        }
        tracing::info!(
            batch_id = %req.batch_id, school_id = %batch.school_id, attempt = req.attempt,
            records = batch.records, outcome = label(&result), "SendBatch"
        );
        Ok(result)
    }

    /// One alert per process and quarter for a failure that stops the run: every batch in
    /// flight meets it, the team needs to hear it once. Returns why the alert failed, if
    /// it did.
    async fn alert_once(&self, quarter: &Quarter, message: &str) -> Option<String> {
        static ALERTED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        {
            let mut seen = ALERTED.lock().unwrap_or_else(|e| e.into_inner());
            let q = quarter.to_string();
            if seen.contains(&q) {
                return None;
            }
            seen.push(q);
        }
        let text = format!(":no_entry: gradesync stopped the sync of {quarter}: {message}");
        let e = self.alerts.post(&text, None).await.err()?;
        tracing::error!(quarter = %quarter, error = %e, "alert webhook failed");
        let _ = self
            .store
            .record_webhook_failure(quarter, "alert", &e.to_string())
            .await;
        Some(e.to_string())
    }
}

/// The `outcome` label of a SendBatch result.
fn outcome_label(result: &SendResult) -> &'static str {
    match result {
        SendResult::Sent { .. } => "sent",
        SendResult::Failed { .. } => "failed",
        SendResult::Throttled { .. } => "throttled",
        SendResult::Rejected { .. } => "rejected",
        SendResult::Withdrawn { .. } => "withdrawn",
    }
}

fn label(result: &SendResult) -> String {
    match result {
        SendResult::Sent { replayed, .. } => format!("sent (replayed: {replayed})"),
        SendResult::Failed { reason, .. } | SendResult::Throttled { reason, .. } => reason.clone(),
        SendResult::Rejected { status, title, .. } => format!("rejected {status} {title}"),
        SendResult::Withdrawn { status } => format!("nothing sent: the batch is {status}"),
    }
}

/// Maps the client's decision to the workflow's, plus the note kept in the store (for a
/// rejection: the problem JSON, kept to the errors naming `record_ids`, the batch's, that
/// ClientError turns into per-record reasons).
fn decide(outcome: SendOutcome, record_ids: &[String]) -> (String, SendResult) {
    match outcome {
        SendOutcome::Sent {
            receipt, replayed, ..
        } => (
            format!("sent {}", receipt.receipt_id),
            SendResult::Sent {
                receipt_id: receipt.receipt_id,
                replayed,
            },
        ),
        SendOutcome::Retry {
            reason,
            after,
            excerpt,
        } => {
            let retry_after_ms = after.map(|d| d.as_millis() as u64);
            // The status and a short, personal-data-free excerpt of the answer: what the
            // dead-letter alert tells the team.
            let text = match excerpt {
                Some(excerpt) => format!("{reason}; the answer said: {excerpt}"),
                None => reason.to_string(),
            };
            let result = match reason {
                RetryReason::RateLimited | RetryReason::InFlight => SendResult::Throttled {
                    reason: text.clone(),
                    retry_after_ms,
                },
                _ => SendResult::Failed {
                    reason: text.clone(),
                    retry_after_ms,
                },
            };
            (text, result)
        }
        SendOutcome::Rejected {
            status, problem, ..
        } => rejected(status, rejection::keep(problem, record_ids)),
        SendOutcome::TooLarge { problem } => rejected(413, rejection::keep(problem, &[])),
        SendOutcome::AuthFailed { problem } => (
            "credentials refused".to_string(),
            SendResult::Failed {
                reason: format!(
                    "the API refused our credentials even with a fresh token ({} {}); check \
                     GRADESYNC_GOV_CLIENT_ID / GRADESYNC_GOV_CLIENT_SECRET and the client's \
                     permissions at the API",
                    problem.status, problem.title
                ),
                retry_after_ms: None,
            },
        ),
        // Handled before: the run stops.
        SendOutcome::TokenRefused { status, .. } => (
            "credentials refused by the token endpoint".to_string(),
            SendResult::Failed {
                reason: format!("the token endpoint refused our credentials ({status})"),
                retry_after_ms: None,
            },
        ),
    }
}

/// `problem` as kept by [`rejection::keep`]: `named_records` counts the batch's records it
/// names.
fn rejected(status: u16, mut problem: Problem) -> (String, SendResult) {
    problem.status = status;
    let title = problem.title.clone();
    let named = rejection::named(&problem).len();
    let note = serde_json::to_string(&problem).unwrap_or_default();
    (
        note,
        SendResult::Rejected {
            status,
            title,
            named_records: named as u64,
        },
    )
}
