//! Corrections that arrive while a batch is out. A batch that has left (its first attempt
//! started) keeps its key and its bytes until its outcome is known, so a record of it that
//! changes meanwhile keeps its old content with the batch (`held_bodies`) while its new
//! content is stored as the record's own. When the batch settles, each such record goes
//! back to pending and its new content travels in a later batch: the old content can never
//! land over the new, and nothing of the batch is cut again before its outcome is known.

use sqlx::{Any, Transaction};
use uuid::Uuid;

use super::StoreError;

/// The records a batch carries and the bytes it carries for each: the held (old) content
/// where the record changed since the batch left, else the record's own. `$1` is the batch.
pub(super) const CARRIED: &str = "SELECT g.record_id, COALESCE(h.body, b.body) \
     FROM grades g JOIN grade_bodies b ON b.record_id = g.record_id \
     LEFT JOIN held_bodies h ON h.batch_id = g.batch_id AND h.record_id = g.record_id \
     WHERE g.batch_id = $1 AND g.status = 'batched' ORDER BY g.record_id";

/// The length a batch's record counts for: what the batch carries, held or not. For SQL
/// over `grades g` joined with `held_bodies h` on the batch and the record.
pub(super) const CARRIED_BYTES: &str = "COALESCE(h.bytes, g.bytes)";

/// Keeps the content `record_id` has now with its batch `batch_id`, unless a change before
/// this one already did: the batch must keep carrying what it left with.
pub(super) async fn hold(
    tx: &mut Transaction<'static, Any>,
    batch_id: &str,
    record_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO held_bodies (batch_id, record_id, sha256, bytes, body) \
         SELECT $1, g.record_id, g.sha256, g.bytes, b.body \
         FROM grades g JOIN grade_bodies b ON b.record_id = g.record_id \
         WHERE g.record_id = $2 AND g.batch_id = $3 \
         ON CONFLICT (batch_id, record_id) DO NOTHING",
    )
    .bind(batch_id)
    .bind(record_id)
    .bind(batch_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A record changed back to the content its batch carries needs no follow-up: the held
/// copy goes, and the batch's outcome is the record's.
pub(super) async fn unhold_if_same(
    tx: &mut Transaction<'static, Any>,
    batch_id: &str,
    record_id: &str,
    sha256: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM held_bodies WHERE batch_id = $1 AND record_id = $2 AND sha256 = $3")
        .bind(batch_id)
        .bind(record_id)
        .bind(sha256)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The batch has settled (or is retired without having been committed): its records that
/// changed while it was out go back to pending with their new content, out of the batch,
/// and every held copy of the batch goes. `only`: release just this record. Returns the
/// records released.
pub(super) async fn release(
    tx: &mut Transaction<'static, Any>,
    batch_id: Uuid,
    only: Option<&str>,
    now: i64,
) -> Result<u64, StoreError> {
    let id = batch_id.to_string();
    let one = if only.is_some() {
        " AND record_id = $4"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE grades SET status = 'pending', batch_id = NULL, reason = NULL, updated_at = $1 \
         WHERE batch_id = $2 AND status IN ('batched', 'dead') \
         AND record_id IN (SELECT record_id FROM held_bodies WHERE batch_id = $3){one}"
    );
    let mut query = sqlx::query(&sql).bind(now).bind(&id).bind(&id);
    if let Some(record_id) = only {
        query = query.bind(record_id);
    }
    let released = query.execute(&mut **tx).await?.rows_affected();
    drop_stray(tx, batch_id).await?;
    Ok(released)
}

/// Removes the held copies of records that are no longer in the batch.
pub(super) async fn drop_stray(
    tx: &mut Transaction<'static, Any>,
    batch_id: Uuid,
) -> Result<(), StoreError> {
    let id = batch_id.to_string();
    sqlx::query(
        "DELETE FROM held_bodies WHERE batch_id = $1 AND record_id NOT IN \
         (SELECT record_id FROM grades WHERE batch_id = $2 AND status IN ('batched', 'dead'))",
    )
    .bind(&id)
    .bind(&id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
