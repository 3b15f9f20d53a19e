//! Splitting a batch the API refused as too large (413). Our cutter measures against the
//! contract's limits, so a 413 means the real endpoint is stricter than its contract (or a
//! limit was configured too high): the batch is retired and its records, still in flight,
//! are shared between two new batches with fresh ids. A single record that is still too
//! large is rejected with the reason.

use gradesync_govapi::contract::envelope_bytes;
use sqlx::{Any, Transaction};
use uuid::Uuid;

use super::batches::{insert_batch, parse_quarter};
use super::held;
use super::model::PreparedBatch;
use super::{Store, StoreError, count, now_ms};

/// What became of a split batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// The new batches (two, or none when the batch held a single record).
    pub halves: Vec<PreparedBatch>,
    /// Records rejected because even alone they were too large.
    pub rejected: u64,
    /// Records that changed while the batch was out: back to pending with their new
    /// content, measured anew when they are cut.
    pub requeued: u64,
}

impl Store {
    /// Replaces a prepared batch by two holding its records (first half and second half
    /// in record_id order), or rejects its only record with `reason`. The caller has made
    /// sure the API never committed it (a 413 is answered before the idempotency check, so
    /// an earlier attempt may have): records that changed while it was out go back to
    /// pending with their new content instead. Idempotent: a batch that is no longer
    /// prepared splits into nothing.
    pub async fn split_batch(&self, batch_id: Uuid, reason: &str) -> Result<Split, StoreError> {
        let mut tx = self.write_tx().await?;
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT quarter, school_id, status FROM batches WHERE batch_id = $1")
                .bind(batch_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let (quarter, school_id, status) = row.ok_or(StoreError::BatchNotFound(batch_id))?;
        if status != "prepared" {
            return Ok(Split::default());
        }
        let requeued = held::release(&mut tx, batch_id, None, now_ms()).await?;
        let records: Vec<(String, i64)> = sqlx::query_as(
            "SELECT record_id, bytes FROM grades WHERE batch_id = $1 AND status = 'batched' \
             ORDER BY record_id",
        )
        .bind(batch_id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let split = if records.is_empty() {
            Split::default()
        } else if records.len() == 1 {
            reject_all(&mut tx, batch_id, reason).await?
        } else {
            let quarter = parse_quarter(&quarter)?;
            let (first, second) = records.split_at(records.len() / 2);
            let mut halves = Vec::with_capacity(2);
            for half in [first, second] {
                let record_bytes: usize = half.iter().map(|(_, b)| count(*b) as usize).sum();
                let bytes = envelope_bytes(&quarter, &school_id, half.len()) + record_bytes;
                let last = &half[half.len() - 1].0;
                halves.push(
                    move_into_new_batch(
                        &mut tx,
                        batch_id,
                        &quarter.to_string(),
                        &school_id,
                        last,
                        half.len(),
                        bytes,
                    )
                    .await?,
                );
            }
            Split {
                halves,
                rejected: 0,
                requeued: 0,
            }
        };
        let split = Split { requeued, ..split };
        set_status(
            &mut tx,
            batch_id,
            if split.rejected > 0 {
                "rejected"
            } else {
                "superseded"
            },
        )
        .await?;
        tx.commit().await?;
        Ok(split)
    }
}

/// A new batch takes the old batch's records up to `last` (those not moved yet); each
/// record counts the cut.
async fn move_into_new_batch(
    tx: &mut Transaction<'static, Any>,
    old: Uuid,
    quarter: &str,
    school_id: &str,
    last: &str,
    records: usize,
    bytes: usize,
) -> Result<PreparedBatch, StoreError> {
    let batch_id = insert_batch(tx, quarter, school_id, records, bytes).await?;
    let now = now_ms();
    let moved = sqlx::query(
        "UPDATE grades SET batch_id = $1, cuts = cuts + 1, updated_at = $2 \
         WHERE batch_id = $3 AND status = 'batched' AND record_id <= $4",
    )
    .bind(batch_id.to_string())
    .bind(now)
    .bind(old.to_string())
    .bind(last)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if moved != records as u64 {
        return Err(StoreError::Corrupt(format!(
            "splitting batch {old} moved {moved} records instead of {records}"
        )));
    }
    Ok(PreparedBatch {
        batch_id,
        records: records as u64,
        bytes: bytes as u64,
    })
}

async fn reject_all(
    tx: &mut Transaction<'static, Any>,
    batch_id: Uuid,
    reason: &str,
) -> Result<Split, StoreError> {
    let rejected = sqlx::query(
        "UPDATE grades SET status = 'rejected', reason = $1, updated_at = $2 \
         WHERE batch_id = $3 AND status = 'batched'",
    )
    .bind(reason)
    .bind(now_ms())
    .bind(batch_id.to_string())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(Split {
        halves: Vec::new(),
        rejected,
        requeued: 0,
    })
}

async fn set_status(
    tx: &mut Transaction<'static, Any>,
    batch_id: Uuid,
    status: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE batches SET status = $1, updated_at = $2 WHERE batch_id = $3")
        .bind(status)
        .bind(now_ms())
        .bind(batch_id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
