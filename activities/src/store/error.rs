//! The one error type of the grades store. Messages are lowercase, say what to do next and
//! never carry record content: they end up in Temporal failure payloads, logs and alerts.

use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the grades database at {location}: {source}; {}", open_advice(.source))]
    Open {
        location: String,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "`{location}` is not a database this build can use: {why}; set GRADESYNC_DATABASE_URL to sqlite://PATH or postgres://USER@HOST/DB"
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

    #[error("the grades database failed: {0}; {advice}", advice = database_advice(.0))]
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

impl StoreError {
    /// True when no retry can fix it: the database is damaged or is not ours, its schema
    /// cannot be brought up to date, or the URL names nothing this build can open. The
    /// worker should stop rather than let Temporal retry the activity for hours.
    pub fn is_fatal(&self) -> bool {
        match self {
            StoreError::Corrupt(_) | StoreError::Migrate(_) | StoreError::UnsupportedUrl { .. } => {
                true
            }
            StoreError::Database(e) | StoreError::Open { source: e, .. } => is_damaged(e),
            _ => false,
        }
    }
}

/// What to do about a database error, for its message.
fn database_advice(e: &sqlx::Error) -> &'static str {
    if is_damaged(e) {
        DAMAGED
    } else {
        "check the disk and the database file, then retry"
    }
}

fn open_advice(e: &sqlx::Error) -> &'static str {
    if is_damaged(e) {
        DAMAGED
    } else {
        "check GRADESYNC_DATABASE_URL"
    }
}

const DAMAGED: &str = "the file is damaged or is not a grades database, and retrying will not \
     help: stop every worker, keep a copy of the file, and restore it from a backup (or \
     rebuild it with `sqlite3 FILE .recover`) before syncing again";

/// SQLite's SQLITE_CORRUPT (11) and SQLITE_NOTADB (26), with any extended code in the upper
/// bits; PostgreSQL's data_corrupted and index_corrupted.
fn is_damaged(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    let code = db.code().unwrap_or_default();
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        code.parse::<i64>()
            .is_ok_and(|n| matches!(n & 0xff, 11 | 26))
    } else {
        matches!(&*code, "XX001" | "XX002")
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

#[cfg(test)]
mod tests {
    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

    use super::*;

    /// A real SQLITE_BUSY from a second writer: retryable, never fatal.
    #[tokio::test]
    async fn a_busy_database_is_retried_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("busy.db"))
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::ZERO);
        let mut holder = SqliteConnection::connect_with(&options).await.unwrap();
        let mut other = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .unwrap();
        let err = StoreError::from(
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut other)
                .await
                .unwrap_err(),
        );
        assert!(matches!(err, StoreError::Busy(_)), "{err}");
        assert!(err.is_retryable() && !err.is_fatal(), "{err}");
        let pool = StoreError::from(sqlx::Error::PoolTimedOut);
        assert!(pool.is_retryable() && !pool.is_fatal());
    }

    #[test]
    fn inconsistencies_and_bad_urls_are_fatal() {
        assert!(StoreError::Corrupt("batch x moved 2 records instead of 3".into()).is_fatal());
        assert!(
            StoreError::UnsupportedUrl {
                location: "postgres://db".into(),
                why: "only SQLite".into()
            }
            .is_fatal()
        );
        assert!(!StoreError::Database(sqlx::Error::PoolClosed).is_fatal());
        assert!(!StoreError::BatchNotFound(Uuid::nil()).is_fatal());
    }
}
