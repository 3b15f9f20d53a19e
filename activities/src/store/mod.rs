//! The grades store: the local database that holds every grade record of every quarter,
//! the batches they are sent in, failed batches, quarterly runs and their reports, and the
//! shared rate-limit slots. It is the system of record for what was sent, what the API
//! confirmed and what must go again, so every state change is one conditional SQL
//! transaction that is safe to run twice (Temporal retries activities). Two backends run
//! the same SQL through sqlx's `Any` driver: SQLite, embedded, for the demo and small
//! networks, and PostgreSQL for workers on many hosts. Where they differ (how a writer
//! takes the lock, whose clock the rate gate reads) [`Backend`] says which.

mod batches;
mod checked_pages;
mod connect;
mod error;
mod held;
mod import;
pub use import::{Importer, Offered};
mod model;
mod outcomes;
pub mod plan;
mod queries;
mod rate_lanes;
mod reports;
mod runs;
pub mod scratch;
mod sent_records;
mod source_rejects;
mod split;
mod timeline;
mod webhooks;

use std::fmt;

use sqlx::{Any, AnyPool, Transaction};

pub use checked_pages::{CheckedPage, OPEN_END};
pub use error::StoreError;
pub use model::{
    BadLine, BatchBody, BatchLimits, ClockReading, DeadLetter, ImportReport, LaneStart,
    MAX_REPORTED_BAD_LINES, Now, PreparedBatch, PreparedChunk, QuarterRun, RateSlot, Rejection,
    ReportInfo, SchoolCounts, SchoolStatus, SlotReach, StoredReport, TakeOff, UnsentRecord,
    UnsentState, WebhookFailure,
};
pub use sent_records::SentRecord;
pub use source_rejects::{SourceRejections, Unreadable};
pub use split::Split;
pub use timeline::AnswersInMinute;

/// Handle on the grades database. Cloning shares the connection pool.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The database URL with any password blanked, for messages.
    location: String,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("database", &self.location)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    /// Accepts `postgres://…` (or `postgresql://…`), `sqlite://PATH`, `sqlite:PATH`, a bare
    /// file path or `sqlite::memory:`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        connect::open(url, connect::CACHE_KIB).await
    }

    /// [`Store::connect`] with a larger page cache per connection, for bulk imports.
    pub async fn connect_for_bulk(url: &str) -> Result<Store, StoreError> {
        connect::open(url, connect::BULK_CACHE_KIB).await
    }

    /// One round trip to the database: the worker's readiness probe.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Which database this store is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where this store lives, password blanked.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// A transaction that holds the write lock from its first statement. A deferred SQLite
    /// transaction that reads and then writes fails at once (no busy wait) when another
    /// writer committed in between; taking the lock up front makes it wait instead.
    ///
    /// On PostgreSQL every write transaction takes one transaction-scoped advisory lock
    /// first, so writers queue exactly as SQLite's do. Each transaction here reads and
    /// then writes on what it read (cut the next batch, move a batch's records); with one
    /// writer at a time those reads see every earlier commit, and two workers cannot cut
    /// the same pending record into two batches. Readers are not blocked.
    async fn write_tx(&self) -> Result<Transaction<'static, Any>, StoreError> {
        self.locked_tx(WRITER_LOCK).await
    }

    /// A write transaction serialised by the advisory lock `key` on PostgreSQL, and by the
    /// database's one write lock on SQLite. On PostgreSQL the `BEGIN` and the lock go in one
    /// simple query: one round trip, not two, to a database that may be tens of ms away.
    async fn locked_tx(&self, key: i64) -> Result<Transaction<'static, Any>, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => Ok(self
                .pool
                .begin_with(format!("BEGIN; SELECT pg_advisory_xact_lock({key})"))
                .await?),
        }
    }

    /// A read-only transaction whose statements all see one snapshot.
    async fn read_tx(&self) -> Result<Transaction<'static, Any>, StoreError> {
        match self.backend {
            // A SQLite transaction reads one snapshot from its first read on.
            Backend::Sqlite => Ok(self.pool.begin().await?),
            Backend::Postgres => Ok(self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?),
        }
    }
}

/// The database behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The advisory lock key of the store's single writer ("gradesyn" in ASCII).
const WRITER_LOCK: i64 = 0x6772_6164_6573_796e;

/// Unix time in milliseconds, the unit of every timestamp column: this host's clock (with
/// any injected skew; see [`crate::clock`]).
fn now_ms() -> i64 {
    crate::clock::now_ms()
}

/// `$start, $start+1, …` for `n` values bound in a row.
fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, …, $cols), ($cols+1, …), …` for `rows` rows of `cols` values.
fn value_rows(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(1 + r * cols, cols)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Counts come back from SQL as i64; a negative one can only mean a broken database.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Longest reason or error text kept; the rest is cut.
const MAX_TEXT: usize = 4096;

/// Keeps free text we store (outcomes, errors) short; cuts on a char boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
