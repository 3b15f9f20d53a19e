//! The values that cross Temporal payloads between the workflows and the activities.
//!
//! Everything here is ids, counts, batch UUIDs and durations: no record content, no student
//! id, no grade ever goes into a workflow history. Every policy field has the seed's value as
//! its default so `{"quarter":"2026-Q4"}` is a complete input, and tests compress time by
//! overriding only what they need.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Input of `QuarterlySync`. `quarter` is absent on a scheduled run: the workflow then syncs
/// the quarter that ended most recently before it started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SyncInput {
    pub quarter: Option<String>,
    pub policy: Policy,
    /// Set only by `QuarterlySync` itself when it continues as new: what the earlier runs
    /// of the quarter did. Absent on a first run.
    pub carried: Option<Carried>,
    /// The starter found gradesync's search attributes registered in the namespace, so the
    /// run may upsert them (quarter, phase, verdict, counts) for the Web UI. Upserting an
    /// unregistered one would fail every workflow task, so it is off unless a starter said so.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub search_attributes: bool,
}

/// What a `QuarterlySync` run hands to the run it continues as new into: ids and counts
/// only, and a size that does not grow with the number of schools (the finished schools
/// are a count; their rows do not follow, so the `progress` query lists the schools of
/// the current run only, while its totals cover the whole quarter).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Carried {
    /// Runs before this one.
    pub runs: u32,
    /// The first run's start (unix ms, workflow time): the deadline, the warning and the
    /// ETA are measured from it, not from the start of a later run.
    pub started_ms: u64,
    /// Records pending at the start of the schools the earlier runs synced (the schools
    /// they left for later are counted again by this run's QueryPending).
    pub pending_at_start: u64,
    /// Counts of every school the earlier runs finished.
    pub totals: Counts,
    /// School syncs the earlier runs finished (a school repaired in a later round counts
    /// again): how far the quarter got, for whoever reads a run's input.
    pub schools_done: u64,
    /// The repair round the earlier run was in, with the repairs and reports so far.
    pub round: u32,
    /// Rounds sent because Reconcile found records still owed.
    pub owed_rounds: u32,
    pub repaired: u64,
    pub earlier_reports: Vec<String>,
    /// Dead-letter redrive waves the earlier runs made.
    pub redrives: u32,
    /// The fixed-mark and the early (projected) "deadline at risk" alerts already raised.
    pub warned: bool,
    pub alerted: bool,
    /// The rate meter, compacted: where measuring started, then the oldest and newest
    /// samples its window held.
    pub meter: Vec<RateSample>,
}

/// Records in a final state at a point in workflow time (unix ms).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RateSample {
    pub at_ms: u64,
    pub done: u64,
}

/// The task queue `gradesync worker` polls unless told otherwise.
pub const DEFAULT_TASK_QUEUE: &str = "gradesync";

/// The one workflow id under which a quarter is synced, whoever starts it (the schedule,
/// `gradesync sync start`, `temporal workflow start`, `gradesync dlq replay`): a second
/// start meets the running one instead of sending the same batches beside it. Scoped by
/// the task queue, which names one gradesync deployment (its store and its API).
pub fn quarter_workflow_id(quarter: &str, task_queue: &str) -> String {
    if task_queue == DEFAULT_TASK_QUEUE {
        format!("gradesync-{quarter}")
    } else {
        format!("gradesync-{quarter}-{task_queue}")
    }
}

/// Records per page of `GET /v1/quarters/{q}/records`: the contract's maximum.
pub const RECORDS_PAGE: usize = 10_000;

/// How a run behaves. Defaults are the seed's design values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Policy {
    /// Waits between attempts of one batch on 503 / 5xx / timeout (Retry5s, Retry15s,
    /// Retry45s); after the last one the batch is dead-lettered.
    pub backoff_ms: Vec<u64>,
    /// Upper bound on one wait the server asks for with `Retry-After`.
    pub max_retry_after_ms: u64,
    /// How many 429 / 409 answers one batch may wait out before it counts as a failed attempt.
    pub max_throttle_waits: u32,
    pub max_batch_records: usize,
    pub max_batch_bytes: usize,
    /// The compliance limit: no run lives longer than this from its first start (47 h).
    pub deadline_ms: u64,
    /// When the "deadline at risk" alert fires, measured from the first start (40 h).
    pub deadline_warning_ms: u64,
    /// QueryPending start-to-close (15 min).
    pub query_timeout_ms: u64,
    /// PrepBatch heartbeat timeout (300 s).
    pub heartbeat_timeout_ms: u64,
    /// SendBatch start-to-close (900 s) and schedule-to-close (1200 s).
    pub send_start_to_close_ms: u64,
    pub send_schedule_to_close_ms: u64,
    /// Task queue of SendBatch; empty means `<workflow task queue>-send`.
    pub send_task_queue: String,
    /// Schools synced at the same time (one SchoolSync child each).
    pub parallel_schools: usize,
    /// Batches in flight per school: enough to keep the rate budget busy while one answer is
    /// slow.
    pub lanes_per_school: usize,
    /// Batches PrepBatch cuts per call; also how often a school reports progress.
    pub batches_per_chunk: usize,
    /// A SchoolSync continues as new once its history passes this many events.
    pub continue_as_new_after_events: u32,
    /// Past this many events QuarterlySync starts no more schools, lets the running ones
    /// finish, then continues as new with its counts carried over: about 13 events per
    /// school, so 8,000 leaves room below Temporal's 10,240-event warning for the schools
    /// still finishing.
    pub parent_continue_as_new_after_events: u32,
    /// Times Reconcile may send again what the API lost before reporting it as a
    /// discrepancy.
    pub repair_rounds: u32,
    /// Times Reconcile may send the run round again because the source still owed records
    /// at its last read (grades corrected or imported during the run, late items of the
    /// source table), as long as the round and `redrive_reserve_ms` fit before the
    /// deadline; what is owed after that is reported as not sent.
    pub owed_rounds: u32,
    /// How often the workflow re-projects its finish even when no school reports (an
    /// outage makes the reports stop, which is exactly when the projection matters).
    pub eta_check_interval_ms: u64,
    /// Sending time measured before a projection may raise the early "deadline at risk"
    /// alert: schools report per chunk, so the first minutes say little about the rate.
    pub eta_min_measure_ms: u64,
    /// The rate is measured over this recent window (or the whole run while shorter), so
    /// an outage pulls it down quickly instead of being averaged away.
    pub eta_window_ms: u64,
    /// How often ReconcileAhead looks whether the API's next listing page has settled, so
    /// it can be compared while sending goes on; 0 leaves every page to the final Reconcile.
    pub reconcile_ahead_poll_ms: u64,
    /// Records per page of the API's listing that Reconcile reads: the contract's maximum,
    /// to spend as few requests of the rate budget as possible.
    pub reconcile_page_size: usize,
    /// Heartbeat timeout of SendBatch, ReconcileAhead and Reconcile: a worker killed while
    /// it holds one of them is noticed this long after its last heartbeat, and the work
    /// goes to another worker (same batch id, same bytes).
    pub send_heartbeat_timeout_ms: u64,
    /// Waits before the run redrives its own dead letters (same batch ids, same bytes):
    /// 5 min, 15 min, 45 min after the sending, then every `redrive_every_ms`.
    pub redrive_waves_ms: Vec<u64>,
    /// The wait between waves once `redrive_waves_ms` is spent; 0 stops after the list.
    pub redrive_every_ms: u64,
    /// No wave starts unless it, the resending of what is dead and this much more (for
    /// Reconcile) end before the deadline.
    pub redrive_reserve_ms: u64,
    /// A record cut into this many batches without being accepted is dead-lettered
    /// instead of being cut again.
    pub max_cuts_per_record: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            backoff_ms: vec![5_000, 15_000, 45_000],
            max_retry_after_ms: 15 * 60_000,
            max_throttle_waits: 50,
            max_batch_records: gradesync_govapi::contract::MAX_RECORDS_PER_BATCH,
            max_batch_bytes: gradesync_govapi::contract::MAX_BODY_BYTES,
            deadline_ms: 47 * 3_600_000,
            deadline_warning_ms: 40 * 3_600_000,
            query_timeout_ms: 15 * 60_000,
            heartbeat_timeout_ms: 300_000,
            send_start_to_close_ms: 900_000,
            send_schedule_to_close_ms: 1_200_000,
            send_task_queue: String::new(),
            parallel_schools: 8,
            lanes_per_school: 2,
            batches_per_chunk: 50,
            continue_as_new_after_events: 4_000,
            parent_continue_as_new_after_events: 8_000,
            repair_rounds: 2,
            owed_rounds: 20,
            eta_check_interval_ms: 5 * 60_000,
            eta_min_measure_ms: 15 * 60_000,
            eta_window_ms: 60 * 60_000,
            reconcile_ahead_poll_ms: 100,
            reconcile_page_size: RECORDS_PAGE,
            send_heartbeat_timeout_ms: 20_000,
            redrive_waves_ms: vec![5 * 60_000, 15 * 60_000, 45 * 60_000],
            redrive_every_ms: 60 * 60_000,
            redrive_reserve_ms: 60 * 60_000,
            max_cuts_per_record: 5,
        }
    }
}

impl Policy {
    /// What makes a policy unusable, said so that the user can fix it; `None` when it is
    /// usable. A run refuses a bad policy at once instead of failing batch after batch.
    pub fn problem(&self) -> Option<String> {
        // Limits above the API's are allowed: the API answers 413 and the batch is split.
        let checks = [
            (
                self.max_batch_records == 0 || self.max_batch_bytes == 0,
                "max_batch_records and max_batch_bytes must be positive".to_string(),
            ),
            (self.deadline_ms == 0, "deadline_ms must be positive".into()),
            (
                self.send_start_to_close_ms == 0 || self.send_schedule_to_close_ms == 0,
                "send_start_to_close_ms and send_schedule_to_close_ms must be positive".into(),
            ),
            (
                self.send_heartbeat_timeout_ms == 0 || self.heartbeat_timeout_ms == 0,
                "heartbeat timeouts must be positive".into(),
            ),
            (
                self.parallel_schools == 0 || self.lanes_per_school == 0,
                "parallel_schools and lanes_per_school must be at least 1".into(),
            ),
            (
                self.max_cuts_per_record == 0,
                "max_cuts_per_record must be at least 1".into(),
            ),
        ];
        checks
            .into_iter()
            .find_map(|(bad, why)| bad.then(|| format!("invalid policy: {why}")))
    }
}

/// How a quarter ended, as the compliance team reads it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Reconcile confirmed every valid record of the quarter at the API.
    Complete,
    /// Records are dead-lettered, missing or different at the API, not sent yet, or the
    /// API's listing could not be read to confirm them. The default: nothing unverified
    /// is ever called complete.
    #[default]
    Incomplete,
    /// Everything else is confirmed; only records the API refused by name remain, and
    /// the school must correct them.
    NeedsCorrection,
    /// The quarter holds no record at all, in the store, the source or the API's listing:
    /// nothing to confirm, which is never what a quarter of grades should be (a typo in
    /// the quarter's name, an import not done, a source pointed elsewhere).
    Empty,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Complete => "complete",
            Verdict::Incomplete => "incomplete",
            Verdict::NeedsCorrection => "needs_correction",
            Verdict::Empty => "empty",
        }
    }
}

impl std::str::FromStr for Verdict {
    type Err = String;

    /// The verdict named by [`Verdict::as_str`], as stored with a run or a report.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            Verdict::Complete,
            Verdict::Incomplete,
            Verdict::NeedsCorrection,
            Verdict::Empty,
        ]
        .into_iter()
        .find(|v| v.as_str() == text)
        .ok_or_else(|| format!("`{text}` is not a verdict"))
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Input of `QueryPending`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuarterRef {
    pub quarter: String,
    pub workflow_id: String,
}

/// Output of `QueryPending`: counts only.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PendingOverview {
    pub schools: Vec<SchoolPending>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SchoolPending {
    pub school_id: String,
    /// Records not yet in a batch plus records in batches not yet confirmed.
    pub pending: u64,
}

/// Input of `PrepBatch`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PrepRequest {
    pub quarter: String,
    pub school_id: String,
    pub max_batches: usize,
    pub max_records: usize,
    pub max_bytes: usize,
}

/// Output of `PrepBatch`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PreparedBatches {
    pub batches: Vec<BatchRef>,
    pub oversize_rejected: u64,
    /// Nothing of the school is left to cut after these batches (until a resend puts
    /// records back to pending).
    #[serde(default)]
    pub drained: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchRef {
    pub batch_id: Uuid,
    pub records: u64,
}

/// Input of `SendBatch`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SendRequest {
    pub batch_id: Uuid,
    pub attempt: u32,
}

/// What one SendBatch attempt concluded. Problem details stay in the store; only the status,
/// a short title and counts travel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SendResult {
    Sent {
        receipt_id: String,
        replayed: bool,
    },
    /// 503, 5xx, timeout or a lost connection: counts against the backoff steps.
    Failed {
        reason: String,
        retry_after_ms: Option<u64>,
    },
    /// 429 or 409: wait and resend, not a failed attempt.
    Throttled {
        reason: String,
        retry_after_ms: Option<u64>,
    },
    /// A permanent 4xx (400, 413, 422, 401 after a fresh token...).
    Rejected {
        status: u16,
        title: String,
        named_records: u64,
    },
    /// Nothing was sent: the batch is `status` already. `superseded` when it was withdrawn
    /// before it ever left (a record of it changed; its records are pending again and the
    /// school's next PrepBatch cuts them), else settled by another attempt.
    Withdrawn {
        status: String,
    },
}

/// Input of `MarkSynced`, `ClientError` and `DeadLetter`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BatchEvent {
    pub quarter: String,
    pub school_id: String,
    pub batch_id: Uuid,
    /// MarkSynced: the receipt id; ClientError / DeadLetter: the last error.
    pub detail: String,
    /// ClientError: a record cut into this many batches is dead-lettered, not cut again
    /// (0, from inputs that predate it: the policy's default).
    #[serde(default)]
    pub max_cuts: u32,
}

/// Output of `SplitBatch`: the batches that replace a batch refused as too large.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SplitBatches {
    pub batches: Vec<BatchRef>,
    /// Records synced instead of split: a receipt lookup found that an earlier attempt had
    /// committed the batch.
    #[serde(default)]
    pub synced: u64,
    pub rejected: u64,
}

/// Output of `ClientError`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct RejectionCounts {
    pub rejected: u64,
    pub requeued: u64,
    /// Records dead-lettered instead: the API named none of the batch, or they were cut
    /// into too many batches.
    #[serde(default)]
    pub dead: u64,
    /// Records synced instead: the 400 named none of the batch, and a receipt lookup found
    /// that an earlier attempt had committed it.
    #[serde(default)]
    pub synced: u64,
}

/// Input of `RedriveDeadLetters`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RedriveRequest {
    pub quarter: String,
    /// The wave, counted from 1 over the whole quarter.
    pub wave: u32,
}

/// Output of `RedriveDeadLetters`: what went back to be sent, per school.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Redriven {
    pub schools: Vec<SchoolRedriven>,
    /// Dead letters left dead: they cannot be resent as they are, and the receipt lookup
    /// that would settle them could not tell (the API is still down). The next wave asks
    /// again.
    #[serde(default)]
    pub stuck: u64,
}

impl Redriven {
    /// Records put back to be sent.
    pub fn records(&self) -> u64 {
        self.schools.iter().map(|s| s.records).sum()
    }

    /// Records found committed by a receipt lookup: no longer dead, nothing to send.
    pub fn synced(&self) -> u64 {
        self.schools.iter().map(|s| s.synced).sum()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SchoolRedriven {
    pub school_id: String,
    /// Dead batches settled, retired or put back.
    pub batches: u64,
    /// Records put back to be sent: in their batch again, or pending for a new one.
    pub records: u64,
    #[serde(default)]
    pub synced: u64,
}

/// Input of the deadline alert.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadlineAlert {
    pub quarter: String,
    pub workflow_id: String,
    pub elapsed_ms: u64,
    pub deadline_ms: u64,
    pub progress: Progress,
    /// Set when the alert comes from the projection (the early alert) rather than from
    /// the fixed warning mark; its figures are then in `progress`.
    #[serde(default)]
    pub projected: bool,
}

/// Counts of one school, or of the whole quarter.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    pub batches_sent: u64,
    pub records_synced: u64,
    pub records_rejected: u64,
    pub records_dead: u64,
    pub batches_rejected: u64,
    pub batches_dead: u64,
    pub retries: u64,
    pub throttled: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.batches_sent += other.batches_sent;
        self.records_synced += other.records_synced;
        self.records_rejected += other.records_rejected;
        self.records_dead += other.records_dead;
        self.batches_rejected += other.batches_rejected;
        self.batches_dead += other.batches_dead;
        self.retries += other.retries;
        self.throttled += other.throttled;
    }
}

/// Progress of one school as its SchoolSync reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SchoolProgress {
    pub school_id: String,
    pub pending_at_start: u64,
    pub counts: Counts,
    pub done: bool,
    /// Every record of the school is cut into batches already sent or on their way: the
    /// parent may start the next school while these last batches finish.
    #[serde(default)]
    pub drained: bool,
}

/// The `progress` query's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    pub quarter: String,
    pub phase: String,
    pub pending_at_start: u64,
    pub totals: Counts,
    pub schools: Vec<SchoolProgress>,
    /// When this run started and when its deadline falls (unix ms, workflow time; 0 from
    /// a workflow that predates the ETA).
    #[serde(default)]
    pub started_ms: u64,
    #[serde(default)]
    pub deadline_at_ms: u64,
    /// The latest projection; `None` until sending has gone on for a while.
    #[serde(default)]
    pub eta: Option<Eta>,
}

impl Progress {
    /// Records in a final state: synced, rejected or dead-lettered.
    pub fn done(&self) -> u64 {
        self.totals.records_synced + self.totals.records_rejected + self.totals.records_dead
    }
}

/// Where a run is heading, measured in workflow time from the counts the schools report.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Eta {
    /// When this projection was made (unix ms).
    pub at_ms: u64,
    /// Records finished per second over the measuring window.
    pub rate_per_sec: f64,
    /// Unix ms; `None` when the measured rate is zero (the run would never finish).
    pub projected_finish_ms: Option<u64>,
    /// `None` while too little has been measured to judge (see `Policy::eta_min_measure_ms`).
    pub on_track: Option<bool>,
}

/// Input of `Reconcile`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReconcileRequest {
    pub quarter: String,
    pub workflow_id: String,
    pub totals: Counts,
    /// Whether records the API lost or holds differently may be put back to pending for
    /// another pass (false on the last allowed round).
    #[serde(default)]
    pub repair: bool,
    /// Records repaired by earlier rounds of this run, and their reports.
    #[serde(default)]
    pub repaired_before: u64,
    #[serde(default)]
    pub earlier_reports: Vec<String>,
    /// The sync whose pages `ReconcileAhead` found clean while sending went on (see
    /// [`ReconcileAheadRequest::pass`]); empty reads the whole listing.
    #[serde(default)]
    pub pass: String,
    /// Records per listing page; 0 (inputs from before it existed) means [`RECORDS_PAGE`].
    #[serde(default)]
    pub page_size: usize,
    /// The quarter's first start and its deadline (unix ms, workflow time), for the
    /// report's timeline; 0 from a workflow that predates them.
    #[serde(default)]
    pub started_ms: u64,
    #[serde(default)]
    pub deadline_at_ms: u64,
    /// Whether records the source still owes at Reconcile's last read (pending in the
    /// store, or pending in the source table) send the run round again instead of being
    /// reported unsent (false from workflows that predate it, and on the last round the
    /// deadline allows).
    #[serde(default)]
    pub resend_owed: bool,
}

/// Input of `ReconcileAhead`, run beside the sending of a quarter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReconcileAheadRequest {
    pub quarter: String,
    /// One sync of the quarter (workflow id and first start): pages checked by another are
    /// forgotten, as the API may have changed since.
    pub pass: String,
    /// How often it looks whether the next page's records have all settled.
    pub poll_ms: u64,
    /// Records per listing page, as the final Reconcile reads them.
    pub page_size: usize,
}

/// Output of `ReconcileAhead`: pages read and pages found clean (kept for Reconcile).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReconcileAheadSummary {
    pub pages_read: u64,
    pub pages_checked: u64,
}

/// Output of `Reconcile`: counts and where the report is, never the records.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReconcileSummary {
    pub synced_in_store: u64,
    pub received_by_api: u64,
    pub missing_at_api: u64,
    pub hash_mismatches: u64,
    pub unexpected_at_api: u64,
    pub rejected: u64,
    pub dead_lettered: u64,
    /// Records put back to pending by this round, to be sent again.
    #[serde(default)]
    pub requeued: u64,
    /// Records repaired over the whole run (sent again after the API lost them).
    #[serde(default)]
    pub repaired: u64,
    /// Listing pages this round took as read: ReconcileAhead found them clean while
    /// sending went on, and the store's side of their range has not changed since.
    #[serde(default)]
    pub pages_checked_ahead: u64,
    /// Records not sent yet (pending or awaiting an answer) when Reconcile ran.
    #[serde(default)]
    pub unsent: u64,
    /// Records the source still owed at Reconcile's last read, when the round was handed
    /// back to send them (`resend_owed`) instead of reporting them: no verdict yet.
    #[serde(default)]
    pub owed: u64,
    /// When Reconcile last read the source (unix ms): the store's owed records, and the
    /// source table's pending items when there is one. A `complete` verdict means nothing
    /// valid of the quarter was owed then.
    #[serde(default)]
    pub source_read_at_ms: u64,
    /// Synced records that could not be confirmed because the API's listing could not
    /// be read.
    #[serde(default)]
    pub unverified: u64,
    /// Alert and compliance webhook posts that failed for good this quarter.
    #[serde(default)]
    pub webhook_failures: u64,
    #[serde(default)]
    pub verdict: Verdict,
    /// No discrepancy between the store's synced records and the API (kept for readers of
    /// older results; the verdict is what counts).
    pub clean: bool,
    pub report_json: String,
    pub report_csv: String,
}

/// Result of `QuarterlySync`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SyncSummary {
    pub quarter: String,
    pub totals: Counts,
    pub reconcile: ReconcileSummary,
    /// `verdict == Complete`, kept for readers of older results.
    pub complete: bool,
    #[serde(default)]
    pub verdict: Verdict,
    /// Dead-letter redrive waves the run made.
    #[serde(default)]
    pub redrives: u32,
}
