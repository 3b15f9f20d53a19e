//! Items of a grades source (the DynamoDB table) that are not valid records: kept as
//! `rejected` records of the quarter with the reason, so the run's report lists each one
//! and its verdict says `needs_correction`, as for records the API refused. Once the item
//! is corrected in the source, the next read imports it as a changed record: pending again.

use gradesync_govapi::Quarter;

use super::{MAX_TEXT, Store, StoreError, now_ms, truncate};

/// An item that could not be read as a record, by the ids it does carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub record_id: String,
    /// Empty when the item names no school.
    pub school_id: String,
    /// What is wrong with it, quoting none of its values.
    pub reason: String,
}

/// What [`Store::reject_unreadable`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceRejections {
    /// Items recorded (or kept) as rejected records of the quarter.
    pub rejected: u64,
    /// Record ids left as they are: the store holds them in another quarter, or in a batch
    /// whose outcome is not known yet.
    pub left: Vec<String>,
}

impl Store {
    /// Records each unreadable item as a rejected record of `quarter`. A record in a batch
    /// (in flight or dead-lettered) is left to its batch; the next read comes back to it. A
    /// record id the store holds in another quarter is left there: an item that names
    /// `quarter` but is no valid record cannot say that the record moved.
    pub async fn reject_unreadable(
        &self,
        quarter: &Quarter,
        items: &[Unreadable],
    ) -> Result<SourceRejections, StoreError> {
        let mut done = SourceRejections::default();
        if items.is_empty() {
            return Ok(done);
        }
        let q = quarter.to_string();
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        for item in items {
            let reason = truncate(&item.reason, MAX_TEXT);
            // No body the API could take: an empty hash, which no valid record has, so
            // the corrected item always reads as changed.
            let changed = sqlx::query(
                "INSERT INTO grades (record_id, quarter, school_id, sha256, bytes, status, reason, updated_at) \
                 VALUES ($1, $2, $3, '', 0, 'rejected', $4, $5) \
                 ON CONFLICT (record_id) DO UPDATE SET \
                 school_id = excluded.school_id, sha256 = '', bytes = 0, status = 'rejected', \
                 reason = excluded.reason, batch_id = NULL, updated_at = excluded.updated_at \
                 WHERE grades.status IN ('pending', 'rejected', 'synced') \
                 AND grades.quarter = excluded.quarter",
            )
            .bind(&item.record_id)
            .bind(&q)
            .bind(&item.school_id)
            .bind(&reason)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                done.left.push(item.record_id.clone());
                continue;
            }
            done.rejected += changed;
            sqlx::query(
                "INSERT INTO grade_bodies (record_id, body) VALUES ($1, '{}') \
                 ON CONFLICT (record_id) DO NOTHING",
            )
            .bind(&item.record_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }
}
