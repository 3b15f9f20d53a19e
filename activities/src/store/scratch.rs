//! Fresh PostgreSQL databases for tests and benchmarks, which run every store case on both
//! backends: `scripts/test.sh` starts a throwaway server and names it in
//! `GRADESYNC_TEST_POSTGRES_URL`, and each case takes a database of its own on it.

use sqlx::{AnyConnection, Connection, Executor};

use super::{StoreError, connect::redact};

/// The variable that names the throwaway server's admin URL.
pub const TEST_POSTGRES_URL: &str = "GRADESYNC_TEST_POSTGRES_URL";

/// The admin URL of the test server, when the tests run against PostgreSQL.
pub fn test_server() -> Option<String> {
    std::env::var(TEST_POSTGRES_URL)
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// Creates the database `name` (ASCII letters, digits and `_`) on the server of
/// `admin_url` unless it exists, and returns its URL.
pub async fn database(admin_url: &str, name: &str) -> Result<String, StoreError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(StoreError::InvalidArgument(format!(
            "`{name}` is not a plain database name"
        )));
    }
    let (base, _db) = admin_url
        .rsplit_once('/')
        .ok_or_else(|| StoreError::UnsupportedUrl {
            location: redact(admin_url),
            why: "no database in the URL".into(),
        })?;
    sqlx::any::install_default_drivers();
    let mut admin = AnyConnection::connect(admin_url)
        .await
        .map_err(|source| StoreError::Open {
            location: redact(admin_url),
            source,
        })?;
    match admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
    {
        Ok(_) => {}
        // 42P04 duplicate_database: someone made it first, which is as good.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
        Err(e) => return Err(e.into()),
    }
    admin.close().await?;
    Ok(format!("{base}/{name}"))
}

/// Where a test keeps its store: a SQLite file in `dir`, or, when the tests run against
/// PostgreSQL, a database of its own named after `dir` (the same one each call).
pub async fn url_for(dir: &std::path::Path) -> Result<String, StoreError> {
    match test_server() {
        Some(admin) => {
            let mut h = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(dir, &mut h);
            let name = format!("gs_{:016x}", std::hash::Hasher::finish(&h));
            database(&admin, &name).await
        }
        None => Ok(format!("sqlite://{}", dir.join("grades.db").display())),
    }
}

/// A store URL that lives as long as the test: in memory, or a fresh PostgreSQL database.
pub async fn fresh_url() -> Result<String, StoreError> {
    match test_server() {
        Some(admin) => database(&admin, &format!("gs_{}", uuid::Uuid::new_v4().simple())).await,
        None => Ok("sqlite::memory:".to_string()),
    }
}
