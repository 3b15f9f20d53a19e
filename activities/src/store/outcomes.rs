//! What happened to a sent batch: attempts, confirmation, rejection, dead-lettering and the
//! ways records go back into the queue. Every transition is conditional on the current
//! status, so a retried or racing activity changes nothing the second time.

use gradesync_govapi::Quarter;
use gradesync_govapi::contract::envelope_bytes;
use sqlx::{Any, Transaction};
use uuid::Uuid;

use super::batches::{parse_quarter, parse_uuid};
use super::held;
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

    /// What the last attempt of a batch recorded, if any attempt did.
    pub async fn last_outcome(&self, batch_id: Uuid) -> Result<Option<String>, StoreError> {
        let row: Option<Option<String>> =
            sqlx::query_scalar("SELECT last_outcome FROM batches WHERE batch_id = $1")
                .bind(batch_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        row.ok_or(StoreError::BatchNotFound(batch_id))
    }

    /// The API holds the batch (its 201, or a receipt lookup): its records become synced,
    /// except those that changed while it was out, which go back to pending with their new
    /// content (see [`held`]). A dead batch settled by a lookup leaves the dead-letter
    /// queue. Returns how many records became synced: 0 when another execution got there
    /// first, or when the batch was withdrawn or settled otherwise.
    pub async fn mark_synced(&self, batch_id: Uuid, receipt_id: &str) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        let status = batch_status(&mut tx, batch_id).await?;
        if !matches!(status.as_str(), "prepared" | "dead") {
            return Ok(0);
        }
        let now = now_ms();
        let id = batch_id.to_string();
        held::release(&mut tx, batch_id, None, now).await?;
        let synced = sqlx::query(
            "UPDATE grades SET status = 'synced', updated_at = $1 \
             WHERE batch_id = $2 AND status IN ('batched', 'dead')",
        )
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "UPDATE batches SET status = 'synced', receipt_id = $1, updated_at = $2, \
             in_flight_since = NULL WHERE batch_id = $3",
        )
        .bind(receipt_id)
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        close_dead_letter(&mut tx, batch_id, now).await?;
        tx.commit().await?;
        Ok(synced)
    }

    /// A receipt lookup says the API never committed this dead batch: nothing of it was
    /// applied, so it is retired and its records go back to pending, to be cut anew with
    /// their current content. Returns the records requeued (0 when it is not dead).
    pub async fn retire_dead_batch(&self, batch_id: Uuid) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        if batch_status(&mut tx, batch_id).await? != "dead" {
            return Ok(0);
        }
        let now = now_ms();
        let id = batch_id.to_string();
        let requeued = sqlx::query(
            "UPDATE grades SET status = 'pending', batch_id = NULL, updated_at = $1 \
             WHERE batch_id = $2 AND status = 'dead'",
        )
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        held::drop_stray(&mut tx, batch_id).await?;
        sqlx::query(
            "UPDATE batches SET status = 'superseded', updated_at = $1 WHERE batch_id = $2",
        )
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        close_dead_letter(&mut tx, batch_id, now).await?;
        tx.commit().await?;
        Ok(requeued)
    }

    /// How many of `record_ids` the batch carries now: whether a 400 named any of it.
    pub async fn named_in_batch(
        &self,
        batch_id: Uuid,
        record_ids: &[String],
    ) -> Result<u64, StoreError> {
        let mut named = 0;
        for ids in record_ids.chunks(IDS_PER_QUERY) {
            let sql = format!(
                "SELECT COUNT(*) FROM grades WHERE batch_id = $1 AND status = 'batched' \
                 AND record_id IN ({})",
                super::placeholders(2, ids.len())
            );
            let mut query = sqlx::query_scalar::<_, i64>(&sql).bind(batch_id.to_string());
            for id in ids {
                query = query.bind(id.as_str());
            }
            named += count(query.fetch_one(&self.pool).await?);
        }
        Ok(named)
    }

    /// The API refused the batch with a 400 naming records (`named`, with their reasons):
    /// nothing of it was applied. The named records of the batch are rejected and the rest
    /// go back to pending for a later batch, except:
    ///
    /// - a named record that changed while the batch was out goes back to pending with its
    ///   new content, which the API has not judged;
    /// - when no named record is one of this batch's (or none is named), nothing is rejected
    ///   and the whole batch is dead-lettered: requeued, the same records would be refused
    ///   again, forever (the caller has ruled out with a receipt lookup that an earlier
    ///   attempt committed it);
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
        for (record_id, why) in named {
            // The API judged the old content; the new one has not been judged yet.
            result.requeued += held::release(&mut tx, batch_id, Some(record_id), now).await?;
            result.rejected += reject_record(&mut tx, batch_id, record_id, why, now).await?;
        }
        let burial = if result.rejected + result.requeued == 0 {
            Some(format!(
                "the API refused the batch ({status}) naming no record of it; {reason}"
            ))
        } else {
            result.requeued += requeue_batch_rest(&mut tx, batch_id, max_cuts, now).await?;
            (remeasure(&mut tx, batch_id).await? > 0).then(|| {
                format!("records cut into {max_cuts} batches without being accepted: {reason}")
            })
        };
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
        self.open_letters(quarter, "").await
    }

    async fn open_letters(
        &self,
        quarter: &Quarter,
        condition: &str,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let sql = format!(
            "SELECT d.batch_id, d.school_id, b.records, d.error, d.alerted, d.created_at \
             FROM dead_letters d JOIN batches b ON b.batch_id = d.batch_id \
             WHERE d.quarter = $1 AND d.replayed_at IS NULL{condition} \
             ORDER BY d.school_id, d.created_at, d.batch_id"
        );
        let rows: Vec<(String, String, i64, String, i64, i64)> = sqlx::query_as(&sql)
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

    /// Dead letters of the quarter that need a receipt lookup before anything else is done
    /// with them: a batch refused before the API's idempotency check (a 400 naming none of
    /// its records, or whose bytes changed after a 400 named some of them) may have been
    /// committed by an earlier attempt, and a batch holding records that changed while it
    /// was out is better settled than resent with their old content. A lookup that says
    /// committed settles it synced ([`Store::mark_synced`]); one that says not committed
    /// retires it ([`Store::retire_dead_batch`]).
    pub async fn dead_letters_to_look_up(
        &self,
        quarter: &Quarter,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.open_letters(
            quarter,
            " AND (d.resend = 0 OR EXISTS \
               (SELECT 1 FROM held_bodies h WHERE h.batch_id = d.batch_id))",
        )
        .await
    }

    /// Puts the quarter's unreplayed dead batches that can be resent as they are back to
    /// prepared, with the same id and bytes (held content included), so each goes again
    /// under its old idempotency key. A batch that cannot be resent as it is (the API's
    /// answer to its key would not change, see migration 0013) stays dead until a receipt
    /// lookup settles it. Returns the batches put back to prepared.
    pub async fn requeue_dead_letters(&self, quarter: &Quarter) -> Result<u64, StoreError> {
        const OPEN: &str = "SELECT batch_id FROM dead_letters WHERE quarter = $2 \
             AND replayed_at IS NULL AND resend = 1";
        let q = quarter.to_string();
        let now = now_ms();
        let mut tx = self.write_tx().await?;
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
            "UPDATE dead_letters SET replayed_at = $1 WHERE quarter = $2 AND replayed_at IS NULL \
             AND resend = 1",
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

/// A settled batch's dead letter, if it had one, is done with.
async fn close_dead_letter(
    tx: &mut Transaction<'static, Any>,
    batch_id: Uuid,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE dead_letters SET replayed_at = $1 WHERE batch_id = $2 AND replayed_at IS NULL",
    )
    .bind(now)
    .bind(batch_id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Rejects one batched record of a batch, with the API's reason.
async fn reject_record(
    tx: &mut Transaction<'static, Any>,
    batch_id: Uuid,
    record_id: &str,
    reason: &str,
    now: i64,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE grades SET status = 'rejected', reason = $1, updated_at = $2 \
         WHERE batch_id = $3 AND status = 'batched' AND record_id = $4",
    )
    .bind(truncate(reason, MAX_TEXT))
    .bind(now)
    .bind(batch_id.to_string())
    .bind(record_id)
    .execute(&mut **tx)
    .await?
    .rows_affected())
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
    // They go with their current content; what the batch held for them is no longer sent.
    held::drop_stray(tx, batch_id).await?;
    Ok(moved)
}

/// Sets a batch's record count and length to those of its still-batched records, so that
/// `batch_body` rebuilds (and a replay sends) exactly them. Returns the record count.
async fn remeasure(tx: &mut Transaction<'static, Any>, batch_id: Uuid) -> Result<u64, StoreError> {
    let id = batch_id.to_string();
    let sql = format!(
        "SELECT b.quarter, b.school_id, COUNT(g.record_id), \
                CAST(COALESCE(SUM({}), 0) AS BIGINT) \
             FROM batches b LEFT JOIN grades g ON g.batch_id = b.batch_id AND g.status = 'batched' \
             LEFT JOIN held_bodies h ON h.batch_id = g.batch_id AND h.record_id = g.record_id \
             WHERE b.batch_id = $1 GROUP BY b.batch_id, b.quarter, b.school_id",
        held::CARRIED_BYTES
    );
    let (quarter, school_id, records, record_bytes): (String, String, i64, i64) =
        sqlx::query_as(&sql)
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
