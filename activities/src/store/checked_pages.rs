//! What reconciling while sending needs from the store: how far the quarter's records are
//! settled, where the API's next page should end, and the pages already found clean (which
//! the store marks stale itself when their range changes).

use gradesync_govapi::Quarter;

use super::{Store, StoreError, count, now_ms};

/// The `upto_id` of a listing's last page, whose range is open above: above every record
/// id (ids are text, compared byte by byte, and no UTF-8 text sorts after this char), so
/// a record added past the end of the listing marks that page stale too.
pub const OPEN_END: &str = "\u{10FFFF}";

/// A page of the API's listing found clean while sending went on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPage {
    pub page_no: u64,
    /// The page holds record ids in `(after_id, upto_id]`; "" is below every id.
    pub after_id: String,
    pub upto_id: String,
    /// The API's token for the page after this one.
    pub next_token: String,
    pub records: u64,
    /// Hash of the store's synced (record_id, sha256) pairs of the range when it was found
    /// clean (kept for an audit; the store's triggers say whether the range changed since).
    pub digest: String,
}

type PageRow = (i64, String, String, String, i64, String);

impl Store {
    /// The lowest record id of the quarter that may still change: pending, or in a batch
    /// the API has not answered. `None` once every record is settled.
    pub async fn first_unsettled(&self, quarter: &Quarter) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(record_id) FROM grades \
             WHERE quarter = $1 AND status IN ('pending', 'batched')",
        )
        .bind(quarter.to_string())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Whether nothing is left to send in the quarter: no record pending, and every batch
    /// the API has not answered is being POSTed (see [`Store::mark_in_flight`]).
    pub async fn all_in_flight(&self, quarter: &Quarter) -> Result<bool, StoreError> {
        // CASE, not AND, so the batches are looked at only once nothing is pending: polled
        // all through a run, the pending check (one index probe) is what it costs.
        let all: i64 = sqlx::query_scalar(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM grades WHERE quarter = $1 AND status = 'pending') \
                THEN 0 WHEN EXISTS (SELECT 1 FROM batches WHERE quarter = $1 \
                                    AND status = 'prepared' AND in_flight_since IS NULL) \
                THEN 0 ELSE 1 END",
        )
        .bind(quarter.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(all != 0)
    }

    /// How many records after `after` the API should list once everything in flight is
    /// answered (the synced ones and those in a batch), counting no further than `limit`.
    pub async fn listed_after(
        &self,
        quarter: &Quarter,
        after: Option<&str>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM grades \
             WHERE quarter = $1 AND record_id > $2 AND status IN ('batched', 'synced') LIMIT $3) AS page",
        )
        .bind(quarter.to_string())
        .bind(after.unwrap_or(""))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_one(&self.pool)
        .await?;
        Ok(count(n))
    }

    /// The id of the `n`-th synced record after `after` (1-based, in record_id order), or
    /// `None` when fewer follow: where a page of `n` the API lists should end.
    pub async fn nth_synced_after(
        &self,
        quarter: &Quarter,
        after: Option<&str>,
        n: u64,
    ) -> Result<Option<String>, StoreError> {
        let offset = i64::try_from(n.max(1) - 1).unwrap_or(i64::MAX);
        Ok(sqlx::query_scalar(
            "SELECT record_id FROM grades \
             WHERE quarter = $1 AND status = 'synced' AND record_id > $2 \
             ORDER BY record_id LIMIT 1 OFFSET $3",
        )
        .bind(quarter.to_string())
        .bind(after.unwrap_or(""))
        .bind(offset)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Starts watching a page's range in `pass` (one sync of the quarter), before its
    /// records are compared: from here on a change to the range marks the page stale (the
    /// triggers of migration 0006), so nothing slips in between the comparison and
    /// [`Store::mark_page_clean`]. Replaces an earlier read of the same page.
    pub async fn watch_page(
        &self,
        quarter: &Quarter,
        pass: &str,
        page: &CheckedPage,
    ) -> Result<(), StoreError> {
        // Under the writer lock: the watch commits only once every writer under way has, so
        // the comparison after it sees their records, and every later writer's trigger sees
        // the watch. Without it, on PostgreSQL, a writer whose trigger ran just before the
        // watch committed marked nothing and, committing after the comparison read, left the
        // page clean without its record (SQLite's writers hold the lock throughout anyway).
        // A later writer's stale mark and `mark_page_clean` meet on the page's row, whose
        // `state = 'watching'` PostgreSQL checks again once it holds the row: the mark takes
        // no lock.
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO reconcile_pages \
               (quarter, pass, page_no, after_id, upto_id, next_token, records, digest, \
                state, read_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'watching', $9) \
             ON CONFLICT (quarter, pass, page_no) DO UPDATE SET \
               after_id = excluded.after_id, upto_id = excluded.upto_id, \
               next_token = excluded.next_token, records = excluded.records, \
               digest = excluded.digest, state = 'watching', read_at = excluded.read_at",
        )
        .bind(quarter.to_string())
        .bind(pass)
        .bind(i64::try_from(page.page_no).unwrap_or(i64::MAX))
        .bind(&page.after_id)
        .bind(&page.upto_id)
        .bind(&page.next_token)
        .bind(i64::try_from(page.records).unwrap_or(i64::MAX))
        .bind(&page.digest)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks a watched page clean with what it was compared against; `false` when its range
    /// changed since [`Store::watch_page`] (the page is stale, and must be read again).
    pub async fn mark_page_clean(
        &self,
        quarter: &Quarter,
        pass: &str,
        page: &CheckedPage,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE reconcile_pages SET state = 'clean', records = $1, digest = $2 \
             WHERE quarter = $3 AND pass = $4 AND page_no = $5 AND state = 'watching'",
        )
        .bind(i64::try_from(page.records).unwrap_or(i64::MAX))
        .bind(&page.digest)
        .bind(quarter.to_string())
        .bind(pass)
        .bind(i64::try_from(page.page_no).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The pages found clean in `pass` and unchanged since, in page order.
    pub async fn checked_pages(
        &self,
        quarter: &Quarter,
        pass: &str,
    ) -> Result<Vec<CheckedPage>, StoreError> {
        let rows: Vec<PageRow> = sqlx::query_as(
            "SELECT page_no, after_id, upto_id, next_token, records, digest \
             FROM reconcile_pages WHERE quarter = $1 AND pass = $2 AND state = 'clean' \
             ORDER BY page_no",
        )
        .bind(quarter.to_string())
        .bind(pass)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(page_no, after_id, upto_id, next_token, records, digest)| CheckedPage {
                    page_no: count(page_no),
                    after_id,
                    upto_id,
                    next_token,
                    records: count(records),
                    digest,
                },
            )
            .collect())
    }

    /// Forgets the pages of the quarter checked by syncs other than `keep_pass` (all of them
    /// without one): the API may have changed since, and a kept page costs every record
    /// imported into the quarter a look at its range.
    pub async fn forget_checked_pages(
        &self,
        quarter: &Quarter,
        keep_pass: Option<&str>,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM reconcile_pages WHERE quarter = $1 AND ($2 IS NULL OR pass <> $2)",
        )
        .bind(quarter.to_string())
        .bind(keep_pass)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
