//! The one error type of the grades store. Messages are lowercase, say what to do next and
//! never carry record content: they end up in Temporal failure payloads, logs and alerts.

use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the grades database at {location}: {source}; check GRADESYNC_DATABASE_URL"
    )]
    Open {
        location: String,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "`{location}` is not a database this build can use: {why}; set GRADESYNC_DATABASE_URL to sqlite://PATH"
    )]
    UnsupportedUrl { location: String, why: String },

    #[error(
        "cannot bring the grades database schema up to date: {0}; check that no newer gradesync version migrated it"
    )]
    Migrate(#[from] sqlx::migrate::MigrateError),

    #[error(
        "the grades database is busy (another process held it longer than the busy timeout): {0}; retry later"
    )]
    Busy(#[source] sqlx::Error),

    #[error("the grades database failed: {0}; check the disk and the database file, then retry")]
    Database(#[source] sqlx::Error),

    #[error(
        "cannot read the import file after line {line}: {source}; check the file and import again"
    )]
    Read {
        line: u64,
        #[source]
        source: std::io::Error,
    },

    #[error("batch {0} is not in the grades database; prepare batches again")]
    BatchNotFound(Uuid),

    #[error(
        "batch {batch_id} is {status}, not prepared, so its body can no longer be sent; prepare batches again"
    )]
    BatchNotPrepared { batch_id: Uuid, status: String },

    #[error("no run of quarter {0} was started; start the run before finishing it")]
    RunNotStarted(String),

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error(
        "the grades database is inconsistent: {0}; stop the worker and inspect the database before syncing"
    )]
    Corrupt(String),
}

impl StoreError {
    /// True when the same call may succeed later without anyone changing anything: the
    /// database was locked or momentarily unreachable.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Busy(_) => true,
            StoreError::Database(e) => matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolClosed),
            _ => false,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_busy(&e) {
            StoreError::Busy(e)
        } else {
            StoreError::Database(e)
        }
    }
}

/// SQLite reports lock contention as SQLITE_BUSY (5) or SQLITE_LOCKED (6), possibly with an
/// extended code in the upper bits; PostgreSQL as serialization failure, deadlock or
/// lock-not-available. A pool that found no free connection in time is the same situation.
pub(super) fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                code.parse::<i64>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
            } else {
                matches!(&*code, "40001" | "40P01" | "55P03")
            }
        }
        _ => false,
    }
}
