//! Reconciling while sending goes on. The API's listing pages are chained by opaque tokens,
//! so Reconcile read them one after another at the end, one round trip each: ten seconds
//! at 100k records and 1 s latency, a minute at 1M. A page can be compared as soon as no
//! record in its range can change any more, so `ReconcileAhead` reads each page once the
//! sending has settled everything up to where it will end, and keeps the clean ones; the
//! final Reconcile takes them as read while the store's side of their range is unchanged
//! (the store's triggers mark a page stale when it changes, so nothing is hashed again at
//! the end), and reads little more than the last page.
//!
//! The listing's last page is open above and can only be read after the last sends; it
//! is read as soon as nothing is left to send (every unsettled record is in a POST on its
//! way), a rate slot after the last POST, so its round trip overlaps the last answers'
//! instead of following them (a second at 1 s latency). It is compared once everything
//! has settled; if it was read before the API committed the last batches it differs, is
//! not kept, and the final Reconcile reads it again.
//!
//! Pages fill early only when record ids group by school (ours do: `rec-<school>-<n>`) and
//! schools go in id order; with ids in no such order it reads nothing early and costs only
//! a store query per poll.

use std::time::Duration;

use gradesync_govapi::Quarter;
use gradesync_govapi::contract::{RecordHash, RecordsPage};
use sha2::{Digest, Sha256};
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::gov::GovClient;
use crate::gov::departure::now_ms;
use crate::model::ReconcileAheadSummary;
use crate::report::{self, Discrepancy};
use crate::store::{CheckedPage, OPEN_END, Store, StoreError};

/// Where a walk through the API's listing stands: the range read so far ends at `after`,
/// and `token` asks for the next page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    pub after: Option<String>,
    pub token: Option<String>,
    pub page_no: u64,
    /// Records of the pages behind the cursor (the same on both sides: they were clean).
    pub records: u64,
}

/// Hash of the store's synced `(school_id, record_id, sha256)` rows of one range, kept with
/// a page found clean: what it was compared against.
pub fn digest(rows: &[(String, String, String)]) -> String {
    let mut h = Sha256::new();
    for (_, id, sha) in rows {
        h.update(id.as_bytes());
        h.update([0]);
        h.update(sha.as_bytes());
        h.update([b'\n']);
    }
    hex::encode(h.finalize())
}

/// The cursor after the pages checked in `pass` that still hold: each must follow the one
/// before and still be clean (the store marks a page stale when a record of its range is
/// requeued, repaired, replayed, re-imported or removed).
pub async fn resume(store: &Store, quarter: &Quarter, pass: &str) -> Result<Cursor, StoreError> {
    if pass.is_empty() {
        return Ok(Cursor::default());
    }
    let pages = store.checked_pages(quarter, pass).await?;
    let mut cursor = Cursor::default();
    for page in &pages {
        if !follows(&cursor, page) {
            break;
        }
        cursor = cursor.past(page);
    }
    Ok(cursor)
}

fn follows(cursor: &Cursor, page: &CheckedPage) -> bool {
    page.page_no == cursor.page_no && page.after_id == cursor.after.as_deref().unwrap_or("")
}

impl Cursor {
    /// Past the listing's last page: the whole listing was found clean.
    pub fn at_end(&self) -> bool {
        self.token.as_deref() == Some("")
    }

    fn past(&self, page: &CheckedPage) -> Cursor {
        Cursor {
            after: Some(page.upto_id.clone()),
            token: Some(page.next_token.clone()),
            page_no: self.page_no + 1,
            records: self.records + page.records,
        }
    }
}

/// The store's synced rows of the record-id range `(after, upto]` (open above without
/// `upto`), and how the API's page of that range differs from them.
pub async fn compare_page(
    store: &Store,
    quarter: &Quarter,
    after: Option<&str>,
    upto: Option<&str>,
    records: Vec<RecordHash>,
) -> Result<(Vec<(String, String, String)>, Vec<Discrepancy>), StoreError> {
    let ours = store.synced_hashes_between(quarter, after, upto).await?;
    let theirs: Vec<(String, String)> = records
        .into_iter()
        .map(|r| (r.record_id, r.sha256))
        .collect();
    let differences = report::compare_range(&ours, &theirs);
    Ok((ours, differences))
}

/// What became of a read of the listing's last page.
enum LastPage {
    /// Found clean and kept.
    Kept,
    /// Not kept: it differs (read before the API committed the last batches, or the API
    /// lost some), it was not the last, it could not be read, or the activity was cancelled.
    Dropped,
    /// Read before a batch went back to wait for a resend, or its range changed while it
    /// was compared: read it again once everything is on its way.
    Early,
}

/// What `ReconcileAhead` works with.
pub struct ReadAhead<'a> {
    pub store: &'a Store,
    pub gov: &'a GovClient,
    pub quarter: &'a Quarter,
    pub pass: &'a str,
    pub page_size: usize,
    pub poll: Duration,
}

impl ReadAhead<'_> {
    /// Reads and checks pages as the sending settles them, and the last one (open above) as
    /// soon as nothing is left to send, until that one is done, every record has settled
    /// with more than a page left (the final Reconcile reads on), the activity is
    /// cancelled, or a page differs or cannot be read (the final Reconcile reads it again,
    /// and repairs).
    pub async fn run(&self, ctx: &ActivityContext) -> Result<ReconcileAheadSummary, ActivityError> {
        self.store
            .forget_checked_pages(self.quarter, Some(self.pass))
            .await?;
        let mut cursor = resume(self.store, self.quarter, self.pass).await?;
        let mut summary = ReconcileAheadSummary {
            pages_checked: cursor.page_no,
            ..ReconcileAheadSummary::default()
        };
        // A page read too early (the API held fewer records than the store, so it reached
        // into unsettled ones) is read again only once the store has settled past its end.
        let started_ms = now_ms();
        let mut wait_past: Option<String> = None;
        // The line at which the next page's end was last found above it: records below the
        // line no longer change, so while the line stays there, neither does that answer.
        let mut short_at: Option<String> = None;
        loop {
            ctx.record_heartbeat(cursor.page_no).await?;
            if ctx.is_cancelled() || cursor.at_end() {
                break;
            }
            let n = self.page_size as u64;
            let after = cursor.after.as_deref();
            let unsettled = self.store.first_unsettled(self.quarter).await?;
            if (unsettled.is_none() || self.store.all_in_flight(self.quarter).await?)
                && self.store.listed_after(self.quarter, after, n + 1).await? <= n
            {
                summary.pages_read += 1;
                match self.last_page(ctx, &cursor).await? {
                    LastPage::Kept => {
                        summary.pages_checked += 1;
                        tracing::debug!(
                            page = cursor.page_no,
                            "ReconcileAhead: the last page checked"
                        );
                        break;
                    }
                    LastPage::Dropped => break,
                    LastPage::Early => {
                        tokio::select! {
                            () = tokio::time::sleep(self.poll) => continue,
                            () = ctx.cancelled() => break,
                        }
                    }
                }
            }
            let Some(settled_below) = unsettled else {
                break;
            };
            // The page ends at the page_size-th synced record after the cursor; it is read
            // once that one is below the line and a synced (so API-confirmed) record
            // follows it, so the API hands a token for the next page.
            let ready = if short_at.as_ref() == Some(&settled_below)
                || wait_past.as_ref().is_some_and(|w| *w >= settled_below)
            {
                false
            } else {
                let end = self.store.nth_synced_after(self.quarter, after, n).await?;
                if end.as_ref().is_some_and(|end| *end < settled_below) {
                    short_at = None;
                    self.store
                        .nth_synced_after(self.quarter, after, n + 1)
                        .await?
                        .is_some()
                } else {
                    short_at = Some(settled_below.clone());
                    false
                }
            };
            tracing::trace!(%settled_below, ready, "ReconcileAhead: next page");
            if !ready {
                // Cancellation reaches an activity with its next heartbeat's answer, up to a
                // minute later; a run that gave up waiting for it has finished the quarter
                // since, which the store says at once.
                let finished = self
                    .store
                    .run(self.quarter)
                    .await?
                    .and_then(|r| r.finished_at);
                if finished.is_some_and(|at| at >= started_ms) {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(self.poll) => continue,
                    () = ctx.cancelled() => break,
                }
            }
            let Some(page) = self.read_page(&cursor).await else {
                break;
            };
            summary.pages_read += 1;
            let next = page.next_page_token.filter(|t| !t.is_empty());
            let (Some(next), Some(last)) = (next, page.records.last()) else {
                // The listing ends here while records are still unsettled: the API holds
                // fewer than the store says synced, which the final Reconcile reports.
                break;
            };
            let upto = last.record_id.clone();
            let mut checked = CheckedPage {
                page_no: cursor.page_no,
                after_id: cursor.after.clone().unwrap_or_default(),
                upto_id: upto.clone(),
                next_token: next,
                records: 0,
                digest: String::new(),
            };
            // Watched before the store's side is looked at: a change from here on marks the
            // page stale, so none falls between the comparison and the page kept clean.
            self.store
                .watch_page(self.quarter, self.pass, &checked)
                .await?;
            let settled_below = self.store.first_unsettled(self.quarter).await?;
            if settled_below.as_ref().is_some_and(|s| upto >= *s) {
                wait_past = Some(upto);
                continue;
            }
            let (ours, differences) = compare_page(
                self.store,
                self.quarter,
                cursor.after.as_deref(),
                Some(&upto),
                page.records,
            )
            .await?;
            if !differences.is_empty() {
                tracing::warn!(
                    page = cursor.page_no,
                    "ReconcileAhead: a page differs from the store; Reconcile will read it again"
                );
                break;
            }
            checked.records = ours.len() as u64;
            checked.digest = digest(&ours);
            if !self
                .store
                .mark_page_clean(self.quarter, self.pass, &checked)
                .await?
            {
                // A record of the range changed while it was compared: read it again once
                // the sending has settled it.
                wait_past = Some(upto);
                continue;
            }
            cursor = cursor.past(&checked);
            summary.pages_checked += 1;
            wait_past = None;
            short_at = None;
            tracing::debug!(
                page = checked.page_no,
                records = checked.records,
                "ReconcileAhead: a page checked"
            );
        }
        Ok(summary)
    }

    /// The API's page after `cursor`; `None` when it cannot be read (the final Reconcile
    /// reads it, and reports what went wrong).
    async fn read_page(&self, cursor: &Cursor) -> Option<RecordsPage> {
        self.gov
            .records_page(self.quarter, None, self.page_size, cursor.token.as_deref())
            .await
            .inspect_err(|e| {
                tracing::warn!(error = %e, page = cursor.page_no, "ReconcileAhead: cannot read a page; Reconcile will");
            })
            .ok()
    }

    /// Reads the listing's last page (the one after `cursor`, open above), compares it once
    /// every record has settled, and keeps it if clean.
    async fn last_page(
        &self,
        ctx: &ActivityContext,
        cursor: &Cursor,
    ) -> Result<LastPage, ActivityError> {
        let Some(page) = self.read_page(cursor).await else {
            return Ok(LastPage::Dropped);
        };
        if page.next_page_token.is_some_and(|t| !t.is_empty()) {
            // The API lists more than the store holds: the final Reconcile reads on.
            return Ok(LastPage::Dropped);
        }
        // An answer still to come changes what the store expects the page to hold.
        while self.store.first_unsettled(self.quarter).await?.is_some() {
            if !self.store.all_in_flight(self.quarter).await? {
                return Ok(LastPage::Early);
            }
            ctx.record_heartbeat(cursor.page_no).await?;
            tokio::select! {
                () = tokio::time::sleep(self.poll) => {}
                () = ctx.cancelled() => return Ok(LastPage::Dropped),
            }
        }
        let mut checked = CheckedPage {
            page_no: cursor.page_no,
            after_id: cursor.after.clone().unwrap_or_default(),
            upto_id: OPEN_END.to_string(),
            next_token: String::new(),
            records: 0,
            digest: String::new(),
        };
        self.store
            .watch_page(self.quarter, self.pass, &checked)
            .await?;
        if self.store.first_unsettled(self.quarter).await?.is_some() {
            return Ok(LastPage::Early);
        }
        let (ours, differences) = compare_page(
            self.store,
            self.quarter,
            cursor.after.as_deref(),
            None,
            page.records,
        )
        .await?;
        if !differences.is_empty() {
            tracing::debug!(
                page = cursor.page_no,
                differences = differences.len(),
                "ReconcileAhead: the last page differs (read before the last commits?); Reconcile will read it again"
            );
            return Ok(LastPage::Dropped);
        }
        checked.records = ours.len() as u64;
        checked.digest = digest(&ours);
        let kept = self
            .store
            .mark_page_clean(self.quarter, self.pass, &checked)
            .await?;
        Ok(if kept {
            LastPage::Kept
        } else {
            LastPage::Early
        })
    }
}
