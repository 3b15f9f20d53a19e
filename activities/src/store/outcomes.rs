//! What happened to a sent batch: attempts, confirmation, rejection, dead-lettering and the
//! ways records go back into the queue. Every transition is conditional on the current
//! status, so a retried or racing activity changes nothing the second time.

use gradesync_govapi::Quarter;
use gradesync_govapi::contract::envelope_bytes;
use sqlx::{Any, Transaction};
use uuid::Uuid;

use super::batches::{parse_quarter, parse_uuid};
use super::model::{DeadLetter, Rejection};
use super::{MAX_TEXT, Store, StoreError, count, now_ms, truncate};

/// Longest attempt outcome kept. Generous: for a rejection it is the API's problem JSON,
/// which must stay parseable to name the offending records.
const MAX_OUTCOME: usize = 256 * 1024;
/// Record ids per `IN (...)` list.
const IDS_PER_QUERY: usize = 500;

impl Store {
    /// Counts one send attempt and what came of it (status line, never record content).
    pub async fn record_attempt(&self, batch_id: Uuid, outcome: &str) -> Result<(), StoreError> {
        let changed = sqlx::query(
            "UPDATE batches SET attempts = attempts + 1, last_outcome = $1, updated_at = $2, \
             in_flight_since = NULL WHERE batch_id = $3",
        )
        .bind(truncate(outcome, MAX_OUTCOME))
        .bind(now_ms())
        .bind(batch_id.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::BatchNotFound(batch_id));
        }
        Ok(())
    }

    /// The batch is about to be POSTed: it is in flight until [`Store::record_attempt`]
    /// records the answer (see [`Store::all_in_flight`]).
    pub async fn mark_in_flight(&self, batch_id: Uuid) -> Result<(), StoreError> {
        let changed = sqlx::query("UPDATE batches SET in_flight_since = $1 WHERE batch_id = $2")
            .bind(now_ms())
            .bind(batch_id.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::BatchNotFound(batch_id));
        }
        Ok(())
    }

    /// What the last attempt of a batch recorded, if any attempt did.
    pub async fn last_outcome(&self, batch_id: Uuid) -> Result<Option<String>, StoreError> {
        let row: Option<Option<String>> =
            sqlx::query_scalar("SELECT last_outcome FROM batches WHERE batch_id = $1")
                .bind(batch_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        row.ok_or(StoreError::BatchNotFound(batch_id))
    }

    /// The API confirmed the batch: its still-batched records become synced. Returns how
    /// many records changed, 0 when another execution got there first or when the batch was
    /// superseded by a re-import (its records are pending again and will go in a new batch).
    pub async fn mark_synced(&self, batch_id: Uuid, receipt_id: &str) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        batch_status(&mut tx, batch_id).await?;
        let now = now_ms();
        let id = batch_id.to_string();
        let synced = sqlx::query(
            "UPDATE grades SET status = 'synced', updated_at = $1 \
             WHERE batch_id = $2 AND status = 'batched'",
        )
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "UPDATE batches SET status = 'synced', receipt_id = $1, updated_at = $2 \
             WHERE batch_id = $3 AND status = 'prepared'",
        )
        .bind(receipt_id)
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(synced)
    }

    /// The API refused the batch with `status`. With no `named` records every record is
    /// rejected with `reason`. Otherwise the named records of the batch are rejected and
    /// the rest go back to pending for a later batch, except:
    ///
    /// - when no named record is one of this batch's, nothing is rejected and the whole
    ///   batch is dead-lettered: requeued, the same records would be refused again, forever;
    /// - records already cut into `max_cuts` batches stay in this one, which is
    ///   dead-lettered with them (and re-measured, so a replay sends exactly them).
    ///
    /// A dead letter is created as by [`Store::dead_letter`] (`dead_lettered` in the
    /// answer). A batch that is no longer prepared is left alone.
    pub async fn reject_batch(
        &self,
        batch_id: Uuid,
        status: u16,
        reason: &str,
        named: &[(String, String)],
        max_cuts: u32,
    ) -> Result<Rejection, StoreError> {
        let mut tx = self.write_tx().await?;
        if batch_status(&mut tx, batch_id).await? != "prepared" {
            return Ok(Rejection::default());
        }
        let now = now_ms();
        let mut result = Rejection::default();
        let mut burial = None;
        if named.is_empty() {
            result.rejected = reject_records(&mut tx, batch_id, None, reason, now).await?;
        } else {
            for (record_id, why) in named {
                result.rejected +=
                    reject_records(&mut tx, batch_id, Some(record_id), why, now).await?;
            }
            if result.rejected == 0 {
                burial = Some(format!(
                    "the API refused the batch ({status}) naming no record of it; {reason}"
                ));
            } else {
                result.requeued = requeue_batch_rest(&mut tx, batch_id, max_cuts, now).await?;
                if remeasure(&mut tx, batch_id).await? > 0 {
                    burial = Some(format!(
                        "records cut into {max_cuts} batches without being accepted: {reason}"
                    ));
                }
            }
        }
        // last_outcome stays: it holds the API's answer, which a retried caller reads again.
        if let Some(error) = burial {
            (result.dead, result.dead_lettered) =
                bury(&mut tx, batch_id, &error, false, now).await?;
        } else {
            sqlx::query(
                "UPDATE batches SET status = 'rejected', updated_at = $1 WHERE batch_id = $2",
            )
            .bind(now)
            .bind(batch_id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tracing::debug!(
            %batch_id, status, rejected = result.rejected, requeued = result.requeued,
            dead = result.dead, "batch rejected"
        );
        tx.commit().await?;
        Ok(result)
    }

    /// Gives up on a prepared batch: it and its records become dead and a dead letter is
    /// recorded. True only for the call that created (or re-opened, after a replay) the
    /// dead letter, so the alert goes out once.
    pub async fn dead_letter(&self, batch_id: Uuid, error: &str) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        if !matches!(
            batch_status(&mut tx, batch_id).await?.as_str(),
            "prepared" | "dead"
        ) {
            return Ok(false);
        }
        let (_, created) = bury(&mut tx, batch_id, error, true, now_ms()).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Notes that the dead letter of `batch_id` has been alerted on.
    pub async fn mark_alerted(&self, batch_id: Uuid) -> Result<(), StoreError> {
        sqlx::query("UPDATE dead_letters SET alerted = 1 WHERE batch_id = $1")
            .bind(batch_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many dead letters of the quarter wait for a redrive.
    pub async fn open_dead_letters(&self, quarter: &Quarter) -> Result<u64, StoreError> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM dead_letters WHERE quarter = $1 AND replayed_at IS NULL",
        )
        .bind(quarter.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(count(n))
    }

    /// Dead letters of the quarter not yet replayed, by school then age.
    pub async fn dead_letters(&self, quarter: &Quarter) -> Result<Vec<DeadLetter>, StoreError> {
        let rows: Vec<(String, String, i64, String, i64, i64)> = sqlx::query_as(
            "SELECT d.batch_id, d.school_id, b.records, d.error, d.alerted, d.created_at \
             FROM dead_letters d JOIN batches b ON b.batch_id = d.batch_id \
             WHERE d.quarter = $1 AND d.replayed_at IS NULL \
             ORDER BY d.school_id, d.created_at, d.batch_id",
        )
        .bind(quarter.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, school_id, records, error, alerted, created_at)| {
                Ok(DeadLetter {
                    batch_id: parse_uuid(&id)?,
                    school_id,
                    records: count(records),
                    error,
                    alerted: alerted != 0,
                    created_at,
                })
            })
            .collect()
    }

    /// Puts every unreplayed dead batch of the quarter back to prepared, with the same id
    /// and records, so it is resent byte for byte under its old idempotency key. A batch
    /// that cannot be resent as it is (the API's answer to its key would not change) is
    /// superseded instead and its records go back to pending, for a new batch. Returns the
    /// batches put back to prepared.
    pub async fn requeue_dead_letters(&self, quarter: &Quarter) -> Result<u64, StoreError> {
        const OPEN: &str = "SELECT batch_id FROM dead_letters WHERE quarter = $2 \
             AND replayed_at IS NULL AND resend = 1";
        const STUCK: &str = "SELECT batch_id FROM dead_letters WHERE quarter = $2 \
             AND replayed_at IS NULL AND resend = 0";
        let q = quarter.to_string();
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query(&format!(
            "UPDATE grades SET status = 'pending', batch_id = NULL, updated_at = $1 \
             WHERE status = 'dead' AND batch_id IN ({STUCK})"
        ))
        .bind(now)
        .bind(&q)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "UPDATE batches SET status = 'superseded', updated_at = $1 \
             WHERE status = 'dead' AND batch_id IN ({STUCK})"
        ))
        .bind(now)
        .bind(&q)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "UPDATE grades SET status = 'batched', updated_at = $1 \
             WHERE status = 'dead' AND batch_id IN ({OPEN})"
        ))
        .bind(now)
        .bind(&q)
        .execute(&mut *tx)
        .await?;
        let batches = sqlx::query(&format!(
            "UPDATE batches SET status = 'prepared', updated_at = $1 \
             WHERE status = 'dead' AND batch_id IN ({OPEN})"
        ))
        .bind(now)
        .bind(&q)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "UPDATE dead_letters SET replayed_at = $1 WHERE quarter = $2 AND replayed_at IS NULL",
        )
        .bind(now)
        .bind(&q)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(batches)
    }

    /// Synced records the API turned out not to hold go back to pending, out of their old
    /// batch, to be sent again in a new one. Ids that are not synced records of the quarter
    /// are ignored. Returns how many records were requeued.
    pub async fn requeue_records(
        &self,
        quarter: &Quarter,
        record_ids: &[String],
    ) -> Result<u64, StoreError> {
        let q = quarter.to_string();
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let mut requeued = 0;
        for ids in record_ids.chunks(IDS_PER_QUERY) {
            // Numbered placeholders, which both backends read ($3, $4, ...).
            let list = (3..ids.len() + 3)
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "UPDATE grades SET status = 'pending', batch_id = NULL, reason = NULL, \
                 updated_at = $1 WHERE quarter = $2 AND status = 'synced' AND record_id IN ({list})"
            );
            let mut query = sqlx::query(&sql).bind(now).bind(&q);
            for id in ids {
                query = query.bind(id.as_str());
            }
            requeued += query.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(requeued)
    }
}

/// The status of a batch, or `BatchNotFound`.
async fn batch_status(
    tx: &mut Transaction<'static, Any>,
    batch_id: Uuid,
) -> Result<String, StoreError> {
    sqlx::query_scalar("SELECT status FROM batches WHERE batch_id = $1")
        .bind(batch_id.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::BatchNotFound(batch_id))
}

/// Rejects the batched records of a batch: all of them, or the one named.
async fn reject_records(
    tx: &mut Transaction<'static, Any>,
    batch_id: Uuid,
    record_id: Option<&str>,
    reason: &str,
    now: i64,
) -> Result<u64, StoreError> {
    let only_one = if record_id.is_some() {
        " AND record_id = $4"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE grades SET status = 'rejected', reason = $1, updated_at = $2 \
         WHERE batch_id = $3 AND status = 'batched'{only_one}"
    );
    let mut query = sqlx::query(&sql)
        .bind(truncate(reason, MAX_TEXT))
        .bind(now)
        .bind(batch_id.to_string());
    if let Some(record_id) = record_id {
        query = query.bind(record_id);
    }
    Ok(query.execute(&mut **tx).await?.rows_affected())
}

/// The records of a rejected batch the API did not object to go back to pending, unless
/// they were cut into `max_cuts` batches already.
async fn requeue_batch_rest(
    tx: &mut Transaction<'static, Any>,
    batch_id: Uuid,
    max_cuts: u32,
    now: i64,
) -> Result<u64, StoreError> {
    let moved = sqlx::query(
        "UPDATE grades SET status = 'pending', batch_id = NULL, updated_at = $1 \
         WHERE batch_id = $2 AND status = 'batched' AND cuts < $3",
    )
    .bind(now)
    .bind(batch_id.to_string())
    .bind(i64::from(max_cuts))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(moved)
}

/// Sets a batch's record count and length to those of its still-batched records, so that
/// `batch_body` rebuilds (and a replay sends) exactly them. Returns the record count.
async fn remeasure(tx: &mut Transaction<'static, Any>, batch_id: Uuid) -> Result<u64, StoreError> {
    let id = batch_id.to_string();
    let (quarter, school_id, records, record_bytes): (String, String, i64, i64) = sqlx::query_as(
        "SELECT b.quarter, b.school_id, COUNT(g.record_id), \
                CAST(COALESCE(SUM(g.bytes), 0) AS BIGINT) \
             FROM batches b LEFT JOIN grades g ON g.batch_id = b.batch_id AND g.status = 'batched' \
             WHERE b.batch_id = $1 GROUP BY b.batch_id",
    )
    .bind(&id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::BatchNotFound(batch_id))?;
    let records = count(records);
    if records > 0 {
        let quarter = parse_quarter(&quarter)?;
        let bytes =
            envelope_bytes(&quarter, &school_id, records as usize) + count(record_bytes) as usize;
        sqlx::query("UPDATE batches SET records = $1, bytes = $2 WHERE batch_id = $3")
            .bind(records as i64)
            .bind(bytes as i64)
            .bind(&id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(records)
}

/// The batch and its still-batched records become dead, and its dead letter is recorded
/// (unalerted), unless an unreplayed one exists. Returns the records that died now and
/// whether the dead letter was created (or re-opened after a replay) by this call.
/// `resend`: whether the batch may be sent again under its key (see migration 0013).
async fn bury(
    tx: &mut Transaction<'static, Any>,
    batch_id: Uuid,
    error: &str,
    resend: bool,
    now: i64,
) -> Result<(u64, bool), StoreError> {
    let id = batch_id.to_string();
    sqlx::query(
        "UPDATE batches SET status = 'dead', updated_at = $1 WHERE batch_id = $2 AND status = 'prepared'",
    )
    .bind(now)
    .bind(&id)
    .execute(&mut **tx)
    .await?;
    let dead = sqlx::query(
        "UPDATE grades SET status = 'dead', updated_at = $1 WHERE batch_id = $2 AND status = 'batched'",
    )
    .bind(now)
    .bind(&id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let created = sqlx::query(
        "INSERT INTO dead_letters (batch_id, quarter, school_id, error, alerted, created_at, resend) \
         SELECT batch_id, quarter, school_id, $1, 0, $2, $3 FROM batches WHERE batch_id = $4 \
         ON CONFLICT (batch_id) DO UPDATE SET error = excluded.error, alerted = 0, \
           created_at = excluded.created_at, replayed_at = NULL, resend = excluded.resend \
         WHERE dead_letters.replayed_at IS NOT NULL",
    )
    .bind(truncate(error, MAX_TEXT))
    .bind(now)
    .bind(i64::from(resend))
    .bind(&id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok((dead, created > 0))
}
