//! The plain data the store hands out. All of it is serde so it can travel as Temporal
//! activity inputs and results; none of it carries record content except `BatchBody`.

use gradesync_govapi::Quarter;
use gradesync_govapi::contract::{MAX_BODY_BYTES, MAX_RECORDS_PER_BATCH};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How big a batch may get. The default is what the government API accepts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_records: usize,
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_records: MAX_RECORDS_PER_BATCH,
            max_bytes: MAX_BODY_BYTES,
        }
    }
}

/// Outcome of one import (JSON Lines, CSV, OneRoster or a DynamoDB table).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ImportReport {
    /// Lines (or rows, or items) read, blank ones included.
    pub lines: u64,
    pub inserted: u64,
    /// Records whose body changed: back to pending.
    pub updated: u64,
    pub unchanged: u64,
    /// The first [`MAX_REPORTED_BAD_LINES`] bad lines, in file order.
    pub bad_lines: Vec<BadLine>,
    /// All bad lines, including those not listed in `bad_lines`.
    pub bad_line_count: u64,
    /// Batches withdrawn because one of their records changed before they ever left; their
    /// records went back to pending, to be cut anew.
    pub superseded_batches: u64,
    /// Changed records whose batch had left and has not settled yet: the batch keeps
    /// their old content and its key, and the new content follows in a later batch once
    /// it has settled. Counted in `updated` too.
    #[serde(default)]
    pub held: u64,
}

/// Keeps an import report small enough for a Temporal payload even for a file of garbage.
pub const MAX_REPORTED_BAD_LINES: usize = 1000;

/// A line of the import file that was not stored. `reason` never quotes the line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BadLine {
    /// The file (of several, as in a OneRoster export) or the table item it came from;
    /// `None` for the one file of a JSONL or CSV import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// 1-based; 0 for a table item (its origin names its key).
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.origin {
            // A table item has a key, not a line.
            Some(origin) if self.line == 0 => write!(f, "{origin}: {}", self.reason),
            Some(origin) => write!(f, "{origin} line {}: {}", self.line, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

/// What one `prepare_batches` call hands to the sender.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PreparedChunk {
    /// Resumed batches first (oldest first), then newly cut ones in record_id order.
    pub batches: Vec<PreparedBatch>,
    /// Records set `rejected` by this call because they cannot fit any batch.
    pub oversize_rejected: u64,
    /// Records of this school and quarter that a later call would still hand out: pending
    /// ones plus those in prepared batches beyond `max_batches`. Zero means done.
    pub remaining_pending: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct PreparedBatch {
    pub batch_id: Uuid,
    pub records: u64,
    /// Exact length of the encoded request body.
    pub bytes: u64,
}

/// The request body of a prepared batch, byte for byte what was measured when it was cut.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BatchBody {
    pub quarter: Quarter,
    pub school_id: String,
    pub records: u64,
    pub body: Vec<u8>,
    /// The records it carries, in the order they are sent.
    #[serde(default)]
    pub record_ids: Vec<String>,
}

/// What SendBatch found when it took a batch to send it.
#[derive(Debug, Clone, PartialEq)]
pub enum TakeOff {
    /// Send these bytes under the batch's key; the batch has left.
    Send(BatchBody),
    /// Nothing to send: the batch is `status` now. `superseded` when it was withdrawn
    /// before it ever left (a record of it changed; its records are pending again), else
    /// settled by another attempt or a receipt lookup (`receipt_id` when synced).
    Settled {
        status: String,
        receipt_id: Option<String>,
    },
}

/// What `reject_batch` did with the records of a refused batch.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Rejection {
    pub rejected: u64,
    /// Back to pending, to be cut into a new batch.
    pub requeued: u64,
    /// Left in the batch, which was dead-lettered with them.
    pub dead: u64,
    /// This call created the batch's dead letter: the caller alerts on it once.
    pub dead_lettered: bool,
}

/// A batch that failed for good and has not been replayed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    pub batch_id: Uuid,
    pub school_id: String,
    pub records: u64,
    pub error: String,
    pub alerted: bool,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Records of one school not yet synced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SchoolCounts {
    pub school_id: String,
    pub pending: u64,
    /// In a prepared batch.
    pub batched: u64,
}

/// Records of one school by status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct SchoolStatus {
    pub school_id: String,
    pub pending: u64,
    pub batched: u64,
    pub synced: u64,
    pub rejected: u64,
    pub dead: u64,
}

/// One quarterly run as recorded by `start_run` / `finish_run`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuarterRun {
    pub quarter: Quarter,
    pub workflow_id: String,
    /// running | complete | incomplete | needs_correction | empty | failed, or discrepancies for
    /// runs finished before those verdicts existed.
    pub status: String,
    pub report_path: Option<String>,
    /// JSON counts, as given to `finish_run`.
    pub summary: Option<String>,
    /// Unix milliseconds.
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

/// A record of the quarter that will not reach the API without someone acting on it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnsentRecord {
    pub school_id: String,
    pub record_id: String,
    pub state: UnsentState,
    pub batch_id: Option<Uuid>,
    /// The stored rejection reason, or for a dead record its batch's dead-letter error.
    /// Never record content.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum UnsentState {
    /// The API refused the record.
    Rejected,
    /// Its batch was dead-lettered; `requeue_dead_letters` can send it again.
    Dead,
    /// Not sent yet, or sent without an answer recorded (see [`Store::owed_records`]).
    Unsent,
}

/// A webhook POST that failed after its retries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WebhookFailure {
    pub hook: String,
    pub error: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// One of Reconcile's reports, whole: what `report export` writes out byte for byte.
/// Like the report itself it holds ids, counts and reasons, never record content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    pub quarter: Quarter,
    /// The report's name within its quarter (the ms of its Reconcile round).
    pub stamp: String,
    /// The run that built it.
    pub workflow_id: String,
    /// complete | incomplete | needs_correction | empty.
    pub verdict: String,
    /// When it was built, Unix milliseconds.
    pub generated_at: i64,
    /// The JSON document, as built.
    pub json: String,
    /// The CSV of every record not confirmed at the API, as built.
    pub csv: String,
}

/// A stored report without its JSON and CSV, for listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportInfo {
    pub quarter: Quarter,
    pub stamp: String,
    pub workflow_id: String,
    pub verdict: String,
    /// Unix milliseconds.
    pub generated_at: i64,
}

/// The answer to a rate-slot claim (Unix ms, on the store's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSlot {
    /// The slot is ours: start then, and say when the request left
    /// ([`Store::settle_rate_slot`](super::Store::settle_rate_slot)).
    Granted(LaneStart),
    /// The next slot starts at this time, further ahead than the caller would hold one:
    /// ask again then.
    NotYet(i64),
    /// The lane due next still waits to hear when its last request left, and no other lane
    /// is due: ask again when that report may have come, at the latest at this time (when
    /// that request has left or never will).
    Unsettled(i64),
}

/// A granted start: which lane it holds and until when its request may still leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneStart {
    pub lane: u32,
    /// The start, on the store's clock.
    pub start_ms: i64,
    /// The request leaves by then or never; until it says when it left, the lane's next
    /// start waits for this time.
    pub departs_by_ms: i64,
}

/// One reading of the clock rate slots are cut on: this process's clock (with any
/// injected skew) right before and after the query, and the store's time read in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockReading {
    pub sent_ms: i64,
    pub store_ms: i64,
    pub received_ms: i64,
}

/// The time a rate-slot call takes as "now".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Now {
    /// The store's clock, read once the write lock is held: the database server's on
    /// PostgreSQL, this host's real one on SQLite (no injected skew moves it).
    Store,
    /// This time, on the store's clock (tests).
    At(i64),
}

/// Which slots a rate-slot claim takes, relative to the store's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotReach {
    /// A slot up to this far ahead is taken, and the caller waits for it; one further
    /// ahead is left ([`RateSlot::NotYet`]).
    pub ahead_ms: i64,
    /// A slot that passed at most this long ago is taken as it was cut, so a caller that
    /// woke a few ms late does not push every later start back; one that passed longer ago
    /// is moved to now.
    pub behind_ms: i64,
}
