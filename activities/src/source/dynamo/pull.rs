//! QueryPending's read: the items whose status is `pending`, through the index, page by page,
//! into the store as any import (new records inserted, changed ones back to pending,
//! unchanged ones left alone, bad ones reported by key). An item still pending in the table
//! whose record the API already confirmed (its mark was lost, or the item was set pending
//! again without a change) is marked synced now, with the batch that carried it. An item
//! that is no valid record becomes a rejected record of the quarter with the reason, so the
//! run's report lists it and the verdict is `needs_correction` until it is corrected.

use aws_sdk_dynamodb::types::AttributeValue;
use gradesync_govapi::Quarter;

use super::DynamoSource;
use super::item::{Item, key_text, to_record};
use crate::source::SourceError;
use crate::source::outcome::Pulled;
use crate::source::url::PENDING;
use crate::store::{Offered, Store, Unreadable};

impl DynamoSource {
    /// Reads the pending items of `quarter` (of every quarter when `None`) into `store`.
    /// With `write_back`, items the API already confirmed are marked synced in the table;
    /// without it nothing is written to the table (a plan, an import). `on_page` gets the
    /// number of items read so far after each page.
    pub async fn pull_pending(
        &self,
        store: &Store,
        quarter: Option<&Quarter>,
        write_back: bool,
        mut on_page: impl FnMut(u64),
    ) -> Result<Pulled, SourceError> {
        let t = &self.target;
        let quarter_attribute = t.attribute_of("quarter").unwrap_or("quarter").to_string();
        let mut importer = store.importer();
        let mut read_ids = Vec::new();
        let mut unreadable_items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&t.table)
                .index_name(&t.index)
                .key_condition_expression("#s = :pending")
                .expression_attribute_names("#s", &t.status_attribute)
                .expression_attribute_values(":pending", AttributeValue::S(PENDING.into()))
                .set_exclusive_start_key(start.take());
            // An index that holds whole items can filter on the quarter; one that holds
            // keys only cannot see it, so its items are filtered once read.
            if let (Some(q), true) = (quarter, self.whole_items) {
                query = query
                    .filter_expression("#q = :q")
                    .expression_attribute_names("#q", &quarter_attribute)
                    .expression_attribute_values(":q", AttributeValue::S(q.to_string()));
            }
            let page = query
                .send()
                .await
                .map_err(|e| self.call_error("Query", e))?;
            let last = page.last_evaluated_key().cloned();
            let items = if self.whole_items {
                page.items.unwrap_or_default()
            } else {
                let keys = page.items().iter().map(|i| self.key_of_item(i)).collect();
                self.batch_get(keys, false).await?
            };
            for item in items {
                let record = to_record(t, &item);
                if let (Some(q), Ok(r)) = (quarter, &record)
                    && r.get("quarter").and_then(|v| v.as_str()) != Some(q.to_string().as_str())
                {
                    continue;
                }
                importer.line_read();
                let origin = format!("item {}", key_text(&self.key_of_item(&item)));
                let refused = match record {
                    Ok(value) => match importer.offer(Some(&origin), 0, &value).await? {
                        Offered::Refused(reason) => Some(reason),
                        Offered::Held | Offered::Stored => {
                            if let Some(id) = value.get("record_id").and_then(|v| v.as_str()) {
                                read_ids.push(id.to_string());
                            }
                            None
                        }
                    },
                    Err(reason) => {
                        importer.bad(Some(&origin), 0, reason.clone());
                        Some(reason)
                    }
                };
                if let Some(reason) = refused
                    && let Some(unreadable) = self.unreadable(&item, &reason)
                {
                    unreadable_items.push(unreadable);
                }
            }
            on_page(importer.report().lines);
            match last {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        let import = importer.finish().await?;
        let rejected = match quarter {
            Some(q) => store.reject_unreadable(q, &unreadable_items).await?,
            None => 0,
        };
        let mut marked = 0;
        if write_back && !read_ids.is_empty() {
            let confirmed = store.synced_among(&read_ids).await?;
            if !confirmed.is_empty() {
                marked = self.mark_synced(store, &confirmed).await?.marked;
            }
        }
        Ok(Pulled {
            import,
            marked,
            rejected,
        })
    }

    /// An item that is no valid record, by the ids it carries (`None` without a record id:
    /// then it can only be reported).
    fn unreadable(&self, item: &Item, reason: &str) -> Option<Unreadable> {
        let id_of = |field: &str| {
            let attribute = self.target.attribute_of(field).unwrap_or(field);
            match item.get(attribute) {
                Some(AttributeValue::S(s) | AttributeValue::N(s)) if !s.is_empty() => {
                    Some(s.clone())
                }
                _ => None,
            }
        };
        Some(Unreadable {
            record_id: id_of("record_id")?,
            school_id: id_of("school_id").unwrap_or_default(),
            reason: format!(
                "invalid in table {}: {reason}; correct the item (it stays pending there)",
                self.target.table
            ),
        })
    }
}
