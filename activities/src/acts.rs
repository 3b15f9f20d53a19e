//! The Temporal activities: one per seed state, each a thin step over the store, the
//! government client and the webhooks. Inputs and outputs are ids and counts
//! ([`crate::model`]); record content is read from the store inside the activity and never
//! returned.
//!
//! `SendActivities` (SendBatch alone) runs on its own task queue so its concurrency can be
//! sized apart from the store work in `SyncActivities`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use gradesync_govapi::Quarter;
use gradesync_govapi::contract::Problem;
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::alert::Webhook;
use crate::gov::{GovClient, RetryReason, SendOutcome};
use crate::model::{
    BatchEvent, BatchRef, DeadlineAlert, PendingOverview, PrepRequest, PreparedBatches, QuarterRef,
    ReconcileAheadRequest, ReconcileAheadSummary, ReconcileRequest, ReconcileSummary,
    RejectionCounts, SchoolPending, SendRequest, SendResult,
};
use crate::model::{RECORDS_PAGE, SplitBatches};
use crate::read_ahead::{self, ReadAhead};
use crate::report::{self, Discrepancy, DiscrepancyKind, Report};
use crate::store::{BatchLimits, Store};

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
    pub gov: Arc<GovClient>,
    pub alerts: Webhook,
    pub compliance: Webhook,
    pub report_dir: PathBuf,
}

#[activities]
impl SyncActivities {
    /// Counts what is left to send per school (pending plus prepared-but-unconfirmed).
    #[activity(name = "QueryPending")]
    pub async fn query_pending(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: QuarterRef,
    ) -> Result<PendingOverview, ActivityError> {
        let q = quarter(&req.quarter)?;
        // The token round trip overlaps the counting and the children's start instead of
        // delaying the first sends (a second at the API's 1 s latency).
        let gov = self.gov.clone();
        tokio::spawn(async move { gov.warm_up().await });
        self.store.start_run(&q, &req.workflow_id).await?;
        let schools = self
            .store
            .pending_counts(&q)
            .await?
            .into_iter()
            .map(|c| SchoolPending {
                school_id: c.school_id,
                pending: c.pending + c.batched,
            })
            .collect();
        Ok(PendingOverview { schools })
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
            .await?;
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
        _ctx: ActivityContext,
        ev: BatchEvent,
    ) -> Result<u64, ActivityError> {
        let mut changed = self.store.mark_synced(ev.batch_id, &ev.detail).await?;
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
    }

    /// A permanent 4xx: the named records are rejected with their reasons, the rest of the
    /// batch goes back to pending to be re-batched; the run continues.
    #[activity(name = "ClientError")]
    pub async fn client_error(
        self: Arc<Self>,
        _ctx: ActivityContext,
        ev: BatchEvent,
    ) -> Result<RejectionCounts, ActivityError> {
        let problem = self
            .store
            .last_outcome(ev.batch_id)
            .await?
            .and_then(|text| serde_json::from_str::<Problem>(&text).ok())
            .unwrap_or_default();
        let named: Vec<(String, String)> = problem
            .errors
            .iter()
            .map(|e| (e.record_id.clone(), format!("{}: {}", e.field, e.message)))
            .collect();
        let reason = rejection_reason(&ev.detail, &problem);
        let mut done = self
            .store
            .reject_batch(ev.batch_id, problem.status, &reason, &named, u32::MAX)
            .await?;
        if done.rejected == 0 && done.requeued == 0 {
            // A retry after a lost answer, as in MarkSynced: count what the first attempt
            // rejected (the requeued records have left the batch and are counted later).
            done.rejected = self.store.records_in_batch(ev.batch_id, "rejected").await?;
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
        })
    }

    /// A 413: the API takes less per request than our limits allowed. The batch is
    /// replaced by two halves with new ids (a lone record too large is rejected).
    #[activity(name = "SplitBatch")]
    pub async fn split_batch(
        self: Arc<Self>,
        _ctx: ActivityContext,
        ev: BatchEvent,
    ) -> Result<SplitBatches, ActivityError> {
        let reason = format!(
            "the API refused this record as too large even alone ({}); it cannot be sent",
            ev.detail
        );
        let split = self.store.split_batch(ev.batch_id, &reason).await?;
        tracing::warn!(
            quarter = %ev.quarter, school_id = %ev.school_id, batch_id = %ev.batch_id,
            halves = split.halves.len(), rejected = split.rejected,
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
        })
    }

    /// After the last retry: the batch goes to the dead-letter table and an alert goes out
    /// at once. Idempotent: a retry of this activity does not alert twice.
    #[activity(name = "DeadLetter")]
    pub async fn dead_letter(
        self: Arc<Self>,
        _ctx: ActivityContext,
        ev: BatchEvent,
    ) -> Result<(), ActivityError> {
        let q = quarter(&ev.quarter)?;
        self.store.dead_letter(ev.batch_id, &ev.detail).await?;
        let already = self
            .store
            .dead_letters(&q)
            .await?
            .iter()
            .any(|d| d.batch_id == ev.batch_id && d.alerted);
        tracing::error!(
            quarter = %ev.quarter, school_id = %ev.school_id, batch_id = %ev.batch_id,
            error = %ev.detail, "DeadLetter: batch dead-lettered"
        );
        if !already {
            let text = format!(
                ":rotating_light: gradesync dead letter: quarter {}, school {}, batch {}: {}. \
                 Replay with `gradesync dlq replay --quarter {}` once the API is healthy.",
                ev.quarter, ev.school_id, ev.batch_id, ev.detail, ev.quarter
            );
            if self.alerts.post(&text, None).await? {
                self.store.mark_alerted(ev.batch_id).await?;
            }
        }
        Ok(())
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
        let summary = ReadAhead {
            store: &self.store,
            gov: &self.gov,
            quarter: &q,
            pass: &req.pass,
            page_size: page_size(req.page_size),
            poll: std::time::Duration::from_millis(req.poll_ms.max(10)),
        }
        .run(&ctx)
        .await?;
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
        let mut summary = ReconcileSummary::default();
        (summary.rejected, summary.dead_lettered) = self.store.unsent_counts(&q).await?;
        let mut discrepancies = self.compare_listing(&ctx, &q, &req, &mut summary).await?;
        for d in discrepancies.iter_mut().filter(|d| d.school_id.is_empty()) {
            d.school_id = self
                .store
                .school_of(&d.record_id)
                .await?
                .unwrap_or_else(|| "(unknown)".to_string());
        }
        for d in &discrepancies {
            match d.kind {
                DiscrepancyKind::MissingAtApi => summary.missing_at_api += 1,
                DiscrepancyKind::HashMismatch => summary.hash_mismatches += 1,
                DiscrepancyKind::UnexpectedAtApi => summary.unexpected_at_api += 1,
            }
        }
        summary.clean = discrepancies.is_empty();
        summary.repaired = req.repaired_before;
        let repairable: Vec<String> = discrepancies
            .iter()
            .filter(|d| d.kind != DiscrepancyKind::UnexpectedAtApi)
            .map(|d| d.record_id.clone())
            .collect();
        if req.repair && !repairable.is_empty() {
            summary.requeued = self.store.requeue_records(&q, &repairable).await?;
            self.write_report(&q, &req, &mut summary, &discrepancies)?;
            tracing::warn!(
                quarter = %q, requeued = summary.requeued, report = %summary.report_json,
                "Reconcile: the API lost records; sending them again"
            );
            return Ok(summary);
        }
        self.publish(&q, &req, &mut summary, &discrepancies).await?;
        Ok(summary)
    }

    /// The deadline-at-risk alert, raised by the workflow's watchdog before the limit.
    #[activity(name = "DeadlineAtRisk")]
    pub async fn deadline_at_risk(
        self: Arc<Self>,
        _ctx: ActivityContext,
        alert: DeadlineAlert,
    ) -> Result<(), ActivityError> {
        let text = deadline_text(&alert);
        tracing::error!(
            quarter = %alert.quarter, workflow_id = %alert.workflow_id,
            projected = alert.projected, "deadline at risk"
        );
        self.alerts.post(&text, None).await?;
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
    ) -> Result<Vec<Discrepancy>, ActivityError> {
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
            return Ok(Vec::new());
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
                None => return Ok(discrepancies),
            }
        }
    }

    /// Writes this round's report files and records their paths in `summary`.
    fn write_report(
        &self,
        q: &Quarter,
        req: &ReconcileRequest,
        summary: &mut ReconcileSummary,
        discrepancies: &[Discrepancy],
    ) -> Result<serde_json::Value, ActivityError> {
        let now = SystemTime::now();
        let stamp = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
            .to_string();
        let quarter_text = q.to_string();
        let report = Report {
            quarter: &quarter_text,
            workflow_id: &req.workflow_id,
            generated_at: httpdate::fmt_http_date(now),
            clean: summary.clean,
            counts: serde_json::json!({ "store": &*summary, "run": req.totals }),
            earlier_reports: &req.earlier_reports,
            discrepancies,
        };
        let (json, csv) = report::write(&self.report_dir, &stamp, &report)?;
        summary.report_json = json.display().to_string();
        summary.report_csv = csv.display().to_string();
        Ok(serde_json::to_value(&report)?)
    }

    /// The final round: report files, the compliance webhook, the quarter's run row.
    async fn publish(
        &self,
        q: &Quarter,
        req: &ReconcileRequest,
        summary: &mut ReconcileSummary,
        discrepancies: &[Discrepancy],
    ) -> Result<(), ActivityError> {
        let report = self.write_report(q, req, summary, discrepancies)?;
        let status = if summary.clean {
            "complete"
        } else {
            "discrepancies"
        };
        let text = format!(
            "gradesync reconciliation for {q}: {status}; {} synced, {} at the API, {} missing, \
             {} mismatched, {} unexpected, {} rejected, {} dead-lettered, {} repaired. Report: {}",
            summary.synced_in_store,
            summary.received_by_api,
            summary.missing_at_api,
            summary.hash_mismatches,
            summary.unexpected_at_api,
            summary.rejected,
            summary.dead_lettered,
            summary.repaired,
            summary.report_json
        );
        self.compliance
            .post(&text, Some(serde_json::json!({ "report": report })))
            .await?;
        let counts = serde_json::to_string(&*summary)?;
        self.store
            .finish_run(q, status, Some(&summary.report_json), &counts)
            .await?;
        // A later sync reads the listing anew; kept pages would only slow its imports.
        self.store.forget_checked_pages(q, None).await?;
        tracing::info!(quarter = %q, status, report = %summary.report_json, "Reconcile");
        Ok(())
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
}

#[activities]
impl SendActivities {
    /// POSTs one batch (same bytes, same `Idempotency-Key` on every attempt) and says what
    /// the answer means. Does not retry: the workflow's named timers do.
    #[activity(name = "SendBatch")]
    pub async fn send_batch(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: SendRequest,
    ) -> Result<SendResult, ActivityError> {
        let batch = self.store.batch_body(req.batch_id).await?;
        self.store.mark_in_flight(req.batch_id).await?;
        let outcome = self.gov.send_batch(req.batch_id, batch.body.into()).await;
        let (note, result) = decide(outcome);
        self.store.record_attempt(req.batch_id, &note).await?;
        tracing::info!(
            batch_id = %req.batch_id, school_id = %batch.school_id, attempt = req.attempt,
            records = batch.records, outcome = label(&result), "SendBatch"
        );
        Ok(result)
    }
}

fn label(result: &SendResult) -> String {
    match result {
        SendResult::Sent { replayed, .. } => format!("sent (replayed: {replayed})"),
        SendResult::Failed { reason, .. } | SendResult::Throttled { reason, .. } => reason.clone(),
        SendResult::Rejected { status, title, .. } => format!("rejected {status} {title}"),
    }
}

/// Maps the client's decision to the workflow's, plus the note kept in the store (for a
/// rejection: the problem JSON that ClientError turns into per-record reasons).
fn decide(outcome: SendOutcome) -> (String, SendResult) {
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
        SendOutcome::Retry { reason, after, .. } => {
            let retry_after_ms = after.map(|d| d.as_millis() as u64);
            let text = reason.to_string();
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
            status,
            problem,
            record_ids,
        } => rejected(status, problem, record_ids.len()),
        SendOutcome::TooLarge { problem } => rejected(413, problem, 0),
        SendOutcome::TokenRefused { status, .. } => (
            "credentials refused".to_string(),
            SendResult::Failed {
                reason: format!(
                    "the token endpoint refused our credentials ({status}); check \
                     GRADESYNC_GOV_CLIENT_ID / GRADESYNC_GOV_CLIENT_SECRET"
                ),
                retry_after_ms: None,
            },
        ),
        SendOutcome::AuthFailed { problem } => (
            "credentials refused".to_string(),
            SendResult::Failed {
                reason: format!(
                    "the API refused our credentials ({}); check GRADESYNC_GOV_CLIENT_ID / \
                     GRADESYNC_GOV_CLIENT_SECRET",
                    problem.title
                ),
                retry_after_ms: None,
            },
        ),
    }
}

fn rejected(status: u16, mut problem: Problem, named: usize) -> (String, SendResult) {
    problem.status = status;
    let title = problem.title.clone();
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
