//! Items by key, a hundred per BatchGetItem. Keys DynamoDB leaves unprocessed (throttled
//! partitions) are asked again with exponential backoff, as AWS recommends, until every key
//! was answered or the rounds run out (then the call fails and is retried as a whole).

use std::time::Duration;

use aws_sdk_dynamodb::types::KeysAndAttributes;

use super::DynamoSource;
use super::item::{Item, key_from_item};
use crate::source::SourceError;

/// Keys per BatchGetItem: DynamoDB's limit.
const KEYS_PER_CALL: usize = 100;
/// Rounds for unprocessed keys: 50 ms doubling to 5 s, about 25 s in all.
const UNPROCESSED_ROUNDS: u32 = 10;
const FIRST_WAIT: Duration = Duration::from_millis(50);
const LONGEST_WAIT: Duration = Duration::from_secs(5);

impl DynamoSource {
    /// The items of `keys` that exist, in no particular order. `consistent` reads see every
    /// write acknowledged before the call (needed before a conditional write).
    pub(super) async fn batch_get(
        &self,
        keys: Vec<Item>,
        consistent: bool,
    ) -> Result<Vec<Item>, SourceError> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(KEYS_PER_CALL) {
            let mut todo = chunk.to_vec();
            let mut wait = FIRST_WAIT;
            for round in 0.. {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut todo)))
                    .consistent_read(consistent)
                    .build()
                    .map_err(|e| SourceError::Configuration(format!("BatchGetItem: {e}")))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.target.table, request)
                    .send()
                    .await
                    .map_err(|e| self.call_error("BatchGetItem", e))?;
                if let Some(items) = out.responses().and_then(|r| r.get(&self.target.table)) {
                    found.extend(items.iter().cloned());
                }
                todo = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.target.table))
                    .map(|k| k.keys().to_vec())
                    .unwrap_or_default();
                if todo.is_empty() {
                    break;
                }
                if round + 1 >= UNPROCESSED_ROUNDS {
                    return Err(SourceError::Call {
                        operation: "BatchGetItem",
                        table: self.target.table.clone(),
                        message: format!(
                            "{} keys still unprocessed after {UNPROCESSED_ROUNDS} rounds (the \
                             table is throttled)",
                            todo.len()
                        ),
                    });
                }
                tracing::debug!(
                    keys = todo.len(),
                    round,
                    "BatchGetItem: unprocessed keys asked again"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LONGEST_WAIT);
            }
        }
        Ok(found)
    }

    /// One item by key, read consistently; `None` when it no longer exists.
    pub(super) async fn get_consistent(&self, key: &Item) -> Result<Option<Item>, SourceError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.target.table)
            .set_key(Some(key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.call_error("GetItem", e))?;
        Ok(out.item)
    }

    /// The key of an item, as the table's schema names it.
    pub(super) fn key_of_item(&self, item: &Item) -> Item {
        key_from_item(&self.key, item)
    }
}
