//! Turning a database URL into a ready pool: which spellings are accepted, the SQLite
//! settings every connection gets, and the schema migrations.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor};

use super::error::is_busy;
use super::{Backend, Store, StoreError};

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

pub(super) async fn open(url: &str, cache_kib: u32) -> Result<Store, StoreError> {
    sqlx::any::install_default_drivers();
    let location = redact(url);
    let unsupported = |why: String| StoreError::UnsupportedUrl {
        location: location.clone(),
        why,
    };
    let opened = |source| StoreError::Open {
        location: location.clone(),
        source,
    };
    let (backend, pool) = match backend_of(url) {
        Some(Backend::Postgres) => {
            let options =
                AnyConnectOptions::from_str(url).map_err(|e| unsupported(e.to_string()))?;
            probe(&options, "").await.map_err(opened)?;
            let pool = pool_options(false)
                .connect_with(options)
                .await
                .map_err(opened)?;
            (Backend::Postgres, pool)
        }
        Some(Backend::Sqlite) => {
            let sqlite = sqlite_options(url).map_err(unsupported)?;
            let in_memory = is_memory(url);
            if !in_memory {
                create_parent_dir(sqlite.get_filename(), &location).await?;
            }
            // An in-memory database keeps its own URL; a file's is made from the options.
            let url = if url == ":memory:" {
                "sqlite::memory:".to_string()
            } else if in_memory {
                url.to_string()
            } else {
                sqlite.to_url_lossy().to_string()
            };
            let options =
                AnyConnectOptions::from_str(&url).map_err(|e| unsupported(e.to_string()))?;
            let pool = connect_sqlite(options, in_memory, cache_kib)
                .await
                .map_err(opened)?;
            (Backend::Sqlite, pool)
        }
        None if url.trim().is_empty() => return Err(unsupported("the URL is empty".into())),
        None => {
            return Err(unsupported(
                "only sqlite: and postgres:// URLs are supported".into(),
            ));
        }
    };
    migrate(&pool, backend).await?;
    Ok(Store {
        pool,
        backend,
        location,
    })
}

/// Which backend a URL names: PostgreSQL by its scheme, SQLite for `sqlite:` URLs and bare
/// file paths.
pub(super) fn backend_of(url: &str) -> Option<Backend> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(Backend::Postgres)
    } else if url.starts_with("sqlite:") || url == ":memory:" {
        Some(Backend::Sqlite)
    } else if url.contains("://") || url.trim().is_empty() {
        None
    } else {
        Some(Backend::Sqlite)
    }
}

/// Switching a fresh file to WAL needs an exclusive lock, and SQLite answers "database is
/// locked" at once, without waiting, when another process is doing the same: retry a few
/// times before giving up.
async fn connect_sqlite(
    options: AnyConnectOptions,
    in_memory: bool,
    cache_kib: u32,
) -> Result<AnyPool, sqlx::Error> {
    // The Any driver opens SQLite from a URL, which carries no PRAGMAs: each connection
    // sets them as it opens.
    let mut pragmas = format!(
        "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA cache_size = -{cache_kib};",
        BUSY_TIMEOUT.as_millis()
    );
    if !in_memory {
        // WAL lets readers (reports, counts) run while a batch transaction writes.
        pragmas.push_str(" PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
    }
    let mut tries = 0;
    loop {
        if !in_memory {
            match probe(&options, &pragmas).await {
                Err(e) if tries < 5 && is_busy(&e) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50 << tries)).await;
                    continue;
                }
                other => other?,
            }
        }
        let pragmas = pragmas.clone();
        let pool = pool_options(in_memory)
            .after_connect(move |conn, _meta| {
                let pragmas = pragmas.clone();
                Box::pin(async move {
                    conn.execute(pragmas.as_str()).await?;
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await;
        match pool {
            Err(e) if tries < 5 && is_busy(&e) => tries += 1,
            other => return other,
        }
        tokio::time::sleep(Duration::from_millis(50 << tries)).await;
    }
}

/// Opens one connection outside any pool and runs `setup` on it. A pool retries a failing
/// connection until its acquire timeout and then says only that it timed out; this says
/// at once what is wrong (no server, wrong password, not a database file).
async fn probe(options: &AnyConnectOptions, setup: &str) -> Result<(), sqlx::Error> {
    let mut conn = AnyConnection::connect_with(options).await?;
    if !setup.is_empty() {
        conn.execute(setup).await?;
    }
    conn.close().await
}

fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, String> {
    let url = if url == ":memory:" {
        "sqlite::memory:"
    } else {
        url
    };
    let base = if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url).map_err(|e| e.to_string())?
    } else {
        SqliteConnectOptions::new().filename(url)
    };
    if is_memory(url) {
        return Ok(base.create_if_missing(true));
    }
    // The options travel to the driver as a URL, where a relative path would read as a
    // host name: make it absolute first.
    let file = std::path::absolute(base.get_filename())
        .map_err(|e| format!("cannot resolve the database path: {e}"))?;
    Ok(base.filename(file).create_if_missing(true))
}

fn is_memory(url: &str) -> bool {
    url == ":memory:" || url.starts_with("sqlite::memory:") || url.contains("mode=memory")
}

/// An in-memory database lives as long as one of its connections does and is shared between
/// them through SQLite's shared cache, whose table locks ignore the busy timeout: one
/// connection that never expires avoids both problems.
fn pool_options(in_memory: bool) -> AnyPoolOptions {
    let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
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

/// Two workers starting on a fresh database may both try the first migration. PostgreSQL's
/// migrator holds an advisory lock, so the second waits and finds it applied. SQLite has no
/// migration lock, so the loser fails on the bookkeeping row; its migrations are written to
/// be re-runnable, and a second pass sees them applied.
async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let migrator = match backend {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    let mut tries = 0;
    loop {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(_) if tries < 2 && backend == Backend::Sqlite => tries += 1,
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
