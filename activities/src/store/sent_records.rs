//! The store's side of marking a source's items synced: which records the API confirmed, in
//! which batch, with the exact bytes that were sent (the source compares them with what its
//! item holds now before it marks anything).

use uuid::Uuid;

use super::{Store, StoreError, placeholders};

/// A record the API confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRecord {
    pub record_id: String,
    pub sha256: String,
    pub batch_id: Uuid,
    /// The canonical JSON that was sent.
    pub body: String,
}

/// Ids per `IN (...)` lookup: far below every backend's bind-parameter limit.
const LOOKUP_IDS: usize = 500;

impl Store {
    /// The records of `batch_id` that are synced now (a record changed since then went back
    /// to pending and is no longer the batch's).
    pub async fn synced_records_of_batch(
        &self,
        batch_id: Uuid,
    ) -> Result<Vec<SentRecord>, StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT g.record_id, g.sha256, b.body FROM grades g \
             JOIN grade_bodies b ON b.record_id = g.record_id \
             WHERE g.batch_id = $1 AND g.status = 'synced' ORDER BY g.record_id",
        )
        .bind(batch_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(record_id, sha256, body)| SentRecord {
                record_id,
                sha256,
                batch_id,
                body,
            })
            .collect())
    }

    /// Of `record_ids`, those synced, with the batch that carried them.
    pub async fn synced_among(&self, record_ids: &[String]) -> Result<Vec<SentRecord>, StoreError> {
        let mut found = Vec::new();
        for ids in record_ids.chunks(LOOKUP_IDS) {
            let sql = format!(
                "SELECT g.record_id, g.sha256, g.batch_id, b.body FROM grades g \
                 JOIN grade_bodies b ON b.record_id = g.record_id \
                 WHERE g.status = 'synced' AND g.batch_id IS NOT NULL AND g.record_id IN ({})",
                placeholders(1, ids.len())
            );
            let mut query = sqlx::query_as::<_, (String, String, String, String)>(&sql);
            for id in ids {
                query = query.bind(id.as_str());
            }
            for (record_id, sha256, batch_id, body) in query.fetch_all(&self.pool).await? {
                let batch_id = Uuid::parse_str(&batch_id).map_err(|_| {
                    StoreError::Corrupt(format!("record {record_id} has a malformed batch id"))
                })?;
                found.push(SentRecord {
                    record_id,
                    sha256,
                    batch_id,
                    body,
                });
            }
        }
        Ok(found)
    }
}
