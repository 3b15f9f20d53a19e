//! The grades store: the local database that holds every grade record of every quarter,
//! the batches they are sent in, failed batches, quarterly runs and the shared rate-limit
//! slots. It is the system of record for what was sent, what the API confirmed and what
//! must go again, so every state change is one conditional SQL transaction that is safe to
//! run twice (Temporal retries activities). SQLite only for now; the SQL sticks to forms
//! PostgreSQL shares wherever that costs nothing.

mod batches;
mod checked_pages;
mod connect;
mod error;
mod import;
mod model;
mod outcomes;
pub mod plan;
mod queries;
mod runs;
mod split;
mod webhooks;

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Sqlite, SqlitePool, Transaction};

pub use checked_pages::{CheckedPage, OPEN_END};
pub use error::StoreError;
pub use model::{
    BadLine, BatchBody, BatchLimits, DeadLetter, ImportReport, MAX_REPORTED_BAD_LINES,
    PreparedBatch, PreparedChunk, QuarterRun, RateSlot, Rejection, SchoolCounts, SchoolStatus,
    SlotReach, UnsentRecord, UnsentState, WebhookFailure,
};
pub use split::Split;

/// Handle on the grades database. Cloning shares the connection pool.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// The database URL with any password blanked, for messages.
    location: String,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("database", &self.location)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    /// Accepts `sqlite://PATH`, `sqlite:PATH`, a bare file path or `sqlite::memory:`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let (pool, location) = connect::open(url, connect::CACHE_KIB).await?;
        Ok(Store { pool, location })
    }

    /// [`Store::connect`] with a larger page cache per connection, for bulk imports.
    pub async fn connect_for_bulk(url: &str) -> Result<Store, StoreError> {
        let (pool, location) = connect::open(url, connect::BULK_CACHE_KIB).await?;
        Ok(Store { pool, location })
    }

    /// Where this store lives, password blanked.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// A transaction that holds the write lock from its first statement. A deferred SQLite
    /// transaction that reads and then writes fails at once (no busy wait) when another
    /// writer committed in between; taking the lock up front makes it wait instead.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Unix time in milliseconds, the unit of every timestamp column.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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
