//! Turning a database URL into a ready pool: which spellings are accepted, the SQLite
//! settings every connection gets, and the schema migrations.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::StoreError;
use super::error::is_busy;

/// How long a statement waits for another writer before failing with `Busy`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: u32 = 8;
/// Page cache per connection, in KiB, for a long-running worker: SQLite's own 2 MB. Each
/// connection's cache fills with the pages it has touched, so on a 1M-row quarter 8 x 8 MB
/// crept up to the cap over the run (worker RSS 95 MB at 10k, 150 MB at 1M); the OS
/// caches the file anyway.
pub(super) const CACHE_KIB: u32 = 2 * 1024;
/// For a bulk import: SQLite's 2 MB default is far too small to keep a million-row
/// import's index pages hot.
pub(super) const BULK_CACHE_KIB: u32 = 64 * 1024;

pub(super) async fn open(url: &str, cache_kib: u32) -> Result<(SqlitePool, String), StoreError> {
    let location = redact(url);
    let options = options(url, &location)?.pragma("cache_size", format!("-{cache_kib}"));
    let in_memory = is_memory(url);
    if !in_memory {
        create_parent_dir(options.get_filename(), &location).await?;
    }
    let pool = connect_pool(options, in_memory)
        .await
        .map_err(|source| StoreError::Open {
            location: location.clone(),
            source,
        })?;
    migrate(&pool).await?;
    Ok((pool, location))
}

/// Switching a fresh file to WAL needs an exclusive lock, and SQLite answers "database is
/// locked" at once, without waiting, when another process is doing the same: retry a few
/// times before giving up.
async fn connect_pool(
    options: SqliteConnectOptions,
    in_memory: bool,
) -> Result<SqlitePool, sqlx::Error> {
    let mut tries = 0;
    loop {
        match pool_options(in_memory).connect_with(options.clone()).await {
            Err(e) if tries < 5 && is_busy(&e) => tries += 1,
            other => return other,
        }
        tokio::time::sleep(Duration::from_millis(50 << tries)).await;
    }
}

fn options(url: &str, location: &str) -> Result<SqliteConnectOptions, StoreError> {
    let unsupported = |why: &str| StoreError::UnsupportedUrl {
        location: location.to_string(),
        why: why.to_string(),
    };
    let url = if url == ":memory:" {
        "sqlite::memory:"
    } else {
        url
    };
    let base = if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url).map_err(|e| unsupported(&e.to_string()))?
    } else if url.contains("://") {
        return Err(unsupported("only SQLite is supported so far"));
    } else if url.trim().is_empty() {
        return Err(unsupported("the URL is empty"));
    } else {
        SqliteConnectOptions::new().filename(url)
    };
    let base = base
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .create_if_missing(true);
    Ok(if is_memory(url) {
        base
    } else {
        // WAL lets readers (reports, counts) run while a batch transaction writes.
        base.journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
    })
}

fn is_memory(url: &str) -> bool {
    url == ":memory:" || url.starts_with("sqlite::memory:") || url.contains("mode=memory")
}

/// An in-memory database lives as long as one of its connections does and is shared between
/// them through SQLite's shared cache, whose table locks ignore the busy timeout: one
/// connection that never expires avoids both problems.
fn pool_options(in_memory: bool) -> SqlitePoolOptions {
    let options = SqlitePoolOptions::new().acquire_timeout(Duration::from_secs(30));
    if in_memory {
        options
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        options.max_connections(MAX_CONNECTIONS)
    }
}

async fn create_parent_dir(file: &Path, location: &str) -> Result<(), StoreError> {
    let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| StoreError::Open {
            location: location.to_string(),
            source: sqlx::Error::Io(e),
        })
}

/// Two workers starting on a fresh database may both try the first migration; SQLite has no
/// migration lock, so the loser fails on the bookkeeping row. The migrations are written to
/// be re-runnable, and a second pass sees them applied.
async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    let migrator = sqlx::migrate!("./migrations");
    let mut tries = 0;
    loop {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(_) if tries < 2 => tries += 1,
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The URL as it may appear in messages: `scheme://user:***@host/...`.
pub(super) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
        assert_eq!(redact("/tmp/a@b:c.db"), "/tmp/a@b:c.db");
    }
}
