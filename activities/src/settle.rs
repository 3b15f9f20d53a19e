//! Settling a batch whose last answer did not say whether the API applied it. A 201 says
//! it did and a 400 naming its records says it did not, but a 413, a 400 naming none of
//! its records, and a dead batch's last failure are answered before the API's idempotency
//! check: an earlier attempt under the same key may have committed it. Before any of its
//! records is cut into another batch, `GET /v1/grade-batches/{id}` settles it: a receipt
//! (committed: the batch is synced) or a 404 (never committed: its records may go in a new
//! batch). When the lookup cannot tell, the batch keeps its key.

use uuid::Uuid;

use crate::gov::{GovClient, GovError};
use crate::store::{Store, StoreError};

/// What a receipt lookup said about a batch.
#[derive(Debug)]
pub enum Lookup {
    /// The API holds it; the store has marked it synced (`synced`: its synced records).
    Committed { receipt_id: String, synced: u64 },
    /// The API never committed it: nothing of it was applied.
    NotCommitted,
    /// The lookup failed: whether it was applied is still unknown.
    Unknown(GovError),
}

/// Asks the API whether it committed `batch_id`; a receipt settles the batch synced in the
/// store at once (its changed records go back to pending as follow-ups).
pub async fn look_up(gov: &GovClient, store: &Store, batch_id: Uuid) -> Result<Lookup, StoreError> {
    match gov.receipt(batch_id).await {
        Ok(Some(receipt)) => {
            let synced = match store.mark_synced(batch_id, &receipt.receipt_id).await? {
                // Settled already (a retry whose first attempt's answer was lost): its
                // records count all the same, once, in the answer that reaches the workflow.
                0 => store.records_in_batch(batch_id, "synced").await?,
                n => n,
            };
            tracing::info!(%batch_id, receipt_id = %receipt.receipt_id, synced,
                "receipt lookup: the API committed the batch");
            Ok(Lookup::Committed {
                receipt_id: receipt.receipt_id,
                synced,
            })
        }
        Ok(None) => {
            tracing::info!(%batch_id, "receipt lookup: the API never committed the batch");
            Ok(Lookup::NotCommitted)
        }
        Err(e) => {
            tracing::warn!(%batch_id, error = %e, "receipt lookup failed; the batch keeps its key");
            Ok(Lookup::Unknown(e))
        }
    }
}
