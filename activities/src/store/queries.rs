//! Read-only views of a quarter: per-school counts for planning and reporting, and the
//! hashes of synced records that reconciliation compares with what the API holds.

use gradesync_govapi::Quarter;
use uuid::Uuid;

use super::batches::parse_uuid;
use super::model::{SchoolCounts, SchoolStatus, UnsentRecord, UnsentState};
use super::{Store, StoreError, count};

/// Per-school counts by status, served by the (quarter, school_id, status) index.
const COUNTS_BY_SCHOOL: &str = "SELECT school_id, \
       SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), \
       SUM(CASE WHEN status = 'batched' THEN 1 ELSE 0 END), \
       SUM(CASE WHEN status = 'synced' THEN 1 ELSE 0 END), \
       SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END), \
       SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END) \
     FROM grades WHERE quarter = $1 GROUP BY school_id ORDER BY school_id";

type CountsRow = (String, i64, i64, i64, i64, i64);

/// One page of the quarter's rejected and dead records after a record id, served in order
/// by the partial index `grades_unsent_by_record`; the dead letter is found by its key.
const UNSENT_PAGE: &str = "SELECT g.school_id, g.record_id, g.status, g.batch_id, \
       CASE WHEN g.status = 'dead' THEN COALESCE(d.error, g.reason, '') \
            ELSE COALESCE(g.reason, '') END \
     FROM grades g LEFT JOIN dead_letters d ON d.batch_id = g.batch_id \
     WHERE g.quarter = $1 AND g.status IN ('rejected', 'dead') AND g.record_id > $2 \
     ORDER BY g.record_id LIMIT $3";

type UnsentRow = (String, String, String, Option<String>, String);

impl Store {
    /// Every school of the quarter with its records by status, sorted by school_id.
    pub async fn status_counts(&self, quarter: &Quarter) -> Result<Vec<SchoolStatus>, StoreError> {
        let rows: Vec<CountsRow> = sqlx::query_as(COUNTS_BY_SCHOOL)
            .bind(quarter.to_string())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(school_id, pending, batched, synced, rejected, dead)| SchoolStatus {
                    school_id,
                    pending: count(pending),
                    batched: count(batched),
                    synced: count(synced),
                    rejected: count(rejected),
                    dead: count(dead),
                },
            )
            .collect())
    }

    /// How many of the quarter's records were rejected, and how many dead-lettered: from the
    /// small partial index `grades_unsent`, without reading the quarter.
    pub async fn unsent_counts(&self, quarter: &Quarter) -> Result<(u64, u64), StoreError> {
        let (rejected, dead): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END), 0), \
                    COALESCE(SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END), 0) \
             FROM grades WHERE quarter = $1 AND status IN ('rejected', 'dead')",
        )
        .bind(quarter.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok((count(rejected), count(dead)))
    }

    /// Up to `limit` of the quarter's rejected and dead records whose id sorts after
    /// `after`, by record id: one page of what the compliance report lists as not sent.
    /// Pass the last record id of a page as `after` to get the next one.
    pub async fn unsent_records(
        &self,
        quarter: &Quarter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<UnsentRecord>, StoreError> {
        // Record ids are never empty, so "" is below them all (a plain bound seeks the index).
        let rows: Vec<UnsentRow> = sqlx::query_as(UNSENT_PAGE)
            .bind(quarter.to_string())
            .bind(after.unwrap_or(""))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(school_id, record_id, status, batch_id, reason)| {
                let state = match status.as_str() {
                    "rejected" => UnsentState::Rejected,
                    "dead" => UnsentState::Dead,
                    other => {
                        return Err(StoreError::Corrupt(format!(
                            "record {record_id} was listed as unsent but is `{other}`"
                        )));
                    }
                };
                Ok(UnsentRecord {
                    school_id,
                    record_id,
                    state,
                    batch_id: batch_id.as_deref().map(parse_uuid).transpose()?,
                    reason,
                })
            })
            .collect()
    }

    /// One page, in record_id order, of the quarter's records still owed to the API: pending
    /// ones and those in batches awaiting an answer. Normally none are left when Reconcile
    /// runs (grades imported during a sync are).
    pub async fn owed_records(
        &self,
        quarter: &Quarter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<UnsentRecord>, StoreError> {
        let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT school_id, record_id, status, batch_id FROM grades \
             WHERE quarter = $1 AND status IN ('pending', 'batched') AND record_id > $2 \
             ORDER BY record_id LIMIT $3",
        )
        .bind(quarter.to_string())
        .bind(after.unwrap_or(""))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(school_id, record_id, status, batch_id)| {
                let reason = if status == "pending" {
                    "not sent yet (pending in the store)"
                } else {
                    "in a batch whose answer was never recorded"
                };
                Ok(UnsentRecord {
                    school_id,
                    record_id,
                    state: UnsentState::Unsent,
                    batch_id: batch_id.as_deref().map(parse_uuid).transpose()?,
                    reason: reason.to_string(),
                })
            })
            .collect()
    }

    /// The batch a record was last sent in, if any.
    pub async fn batch_of(&self, record_id: &str) -> Result<Option<Uuid>, StoreError> {
        let id: Option<Option<String>> =
            sqlx::query_scalar("SELECT batch_id FROM grades WHERE record_id = $1")
                .bind(record_id)
                .fetch_optional(&self.pool)
                .await?;
        id.flatten().as_deref().map(parse_uuid).transpose()
    }

    /// Schools with records still to send: pending ones and those in prepared batches.
    pub async fn pending_counts(&self, quarter: &Quarter) -> Result<Vec<SchoolCounts>, StoreError> {
        Ok(self
            .status_counts(quarter)
            .await?
            .into_iter()
            .filter(|s| s.pending + s.batched > 0)
            .map(|s| SchoolCounts {
                school_id: s.school_id,
                pending: s.pending,
                batched: s.batched,
            })
            .collect())
    }

    /// How many records of `batch_id` are in `status` (served by the batch index).
    pub async fn records_in_batch(&self, batch_id: Uuid, status: &str) -> Result<u64, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM grades WHERE batch_id = $1 AND status = $2")
                .bind(batch_id.to_string())
                .bind(status)
                .fetch_one(&self.pool)
                .await?;
        Ok(count(n))
    }

    /// `(school_id, record_id, sha256)` of the quarter's synced records whose id sorts
    /// after `after` and up to `upto` (both ends open when `None`), by record id: the
    /// store's side of one page of the API's listing. Served by the covering partial index
    /// `grades_synced`, so no record body is read.
    pub async fn synced_hashes_between(
        &self,
        quarter: &Quarter,
        after: Option<&str>,
        upto: Option<&str>,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        // Plain range bounds (no `? IS NULL OR ...`) so SQLite seeks the index; record ids
        // are never empty, so "" is below them all.
        let sql = if upto.is_some() {
            "SELECT school_id, record_id, sha256 FROM grades \
             WHERE quarter = $1 AND status = 'synced' AND record_id > $2 AND record_id <= $3 \
             ORDER BY record_id"
        } else {
            "SELECT school_id, record_id, sha256 FROM grades \
             WHERE quarter = $1 AND status = 'synced' AND record_id > $2 \
             ORDER BY record_id"
        };
        let mut query = sqlx::query_as(sql)
            .bind(quarter.to_string())
            .bind(after.unwrap_or(""));
        if let Some(upto) = upto {
            query = query.bind(upto);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// The school of a record the store knows in any status (for a record the API holds
    /// but we never confirmed).
    pub async fn school_of(&self, record_id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT school_id FROM grades WHERE record_id = $1")
                .bind(record_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page must come from the partial index in order, not from a scan of the quarter or
    /// of every record id: the report reads it at the end of a 1M-record run.
    #[tokio::test]
    async fn an_unsent_page_seeks_its_partial_index() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {UNSENT_PAGE}"))
                .bind("2026-Q3")
                .bind("")
                .bind(10_i64)
                .fetch_all(&store.pool)
                .await
                .unwrap();
        let steps: Vec<&str> = plan.iter().map(|(_, _, _, step)| step.as_str()).collect();
        assert!(
            steps.iter().any(|s| s.contains("grades_unsent_by_record")
                && s.contains("quarter=? AND record_id>?")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|s| s.contains("TEMP B-TREE")),
            "the page is sorted after reading: {steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|s| s.contains("sqlite_autoindex_dead_letters") && s.contains("batch_id=?")),
            "the dead letter is not found by its key: {steps:?}"
        );
    }
}
