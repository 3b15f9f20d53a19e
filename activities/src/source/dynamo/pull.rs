//! QueryPending's read: the items whose status is `pending`, through the index, page by page,
//! into the store as any import (new records inserted, changed ones back to pending,
//! unchanged ones left alone, bad ones reported by key). An item still pending in the table
//! whose record the API already confirmed (its mark was lost, or the item was set pending
//! again without a change) is marked synced now, with the batch that carried it. An item
//! that is no valid record becomes a rejected record of the quarter with the reason, so the
//! run's report lists it and the verdict is `needs_correction` until it is corrected.
//!
//! Which quarter an item is counted in is decided from its quarter attribute alone, before
//! the rest is read as a record, and the same way whatever the index projects: an item is
//! quarter Q's only when that attribute is the string Q.

use aws_sdk_dynamodb::types::AttributeValue;
use gradesync_govapi::Quarter;

use super::DynamoSource;
use super::item::{Item, key_text, quarter_of, to_record};
use crate::source::SourceError;
use crate::source::outcome::Pulled;
use crate::source::url::{DynamoTarget, PENDING};
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
        let read_quarter = quarter.map(Quarter::to_string);
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
            // keys only cannot see it, so its items are sorted once read. Either way the
            // same items come through: the quarter's, and those that name no quarter (to
            // be reported; see `ItemQuarter::Unknown`).
            if let (Some(q), true) = (quarter, self.whole_items) {
                query = query
                    .filter_expression(
                        "#q = :q OR attribute_not_exists(#q) OR NOT attribute_type(#q, :text)",
                    )
                    .expression_attribute_names("#q", &quarter_attribute)
                    .expression_attribute_values(":q", AttributeValue::S(q.to_string()))
                    .expression_attribute_values(":text", AttributeValue::S("S".into()));
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
                let origin = format!("item {}", key_text(&self.key_of_item(&item)));
                match read_quarter.as_deref().map(|q| belongs(t, &item, q)) {
                    None | Some(ItemQuarter::Ours) => {}
                    Some(ItemQuarter::Another) => continue,
                    Some(ItemQuarter::Unknown(why)) => {
                        importer.line_read();
                        importer.bad(Some(&origin), 0, why);
                        continue;
                    }
                }
                importer.line_read();
                let record = to_record(t, &item);
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
            Some(q) => {
                let done = store.reject_unreadable(q, &unreadable_items).await?;
                for record_id in &done.left {
                    tracing::warn!(
                        quarter = %q, record_id,
                        "an invalid item of the quarter is not recorded as rejected: the store \
                         holds its record id in another quarter or in a batch not settled yet"
                    );
                }
                done.rejected
            }
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

/// Where an item counts, for a read of one quarter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ItemQuarter {
    /// Its quarter attribute is the quarter read: it is counted there, as a record or, when
    /// it is no valid record, as a rejected one.
    Ours,
    /// It names another quarter (whether or not the rest of it is valid): that quarter's
    /// run reads it; this one neither counts nor reports it. A text that is no quarter at
    /// all (`2026-q4`) is another quarter's too: a read of every quarter
    /// (`gradesync import --from URL`) reports it, the contract refusing its quarter.
    Another,
    /// Its quarter attribute is missing or not a string, so it may belong to any quarter
    /// and is counted in none: no run sends it and no verdict waits for it. It is reported
    /// with this reason as a bad item of the read (by key in the worker's log, in the
    /// report of `gradesync import --from` and `sync plan`) in every quarter's read until
    /// its quarter is set; it is left pending in the table.
    Unknown(String),
}

/// Decided from the quarter attribute alone, before the item is read as a record: a broken
/// item of another quarter never becomes a rejected record of this one.
fn belongs(target: &DynamoTarget, item: &Item, quarter: &str) -> ItemQuarter {
    match quarter_of(target, item) {
        Ok(text) if text == quarter => ItemQuarter::Ours,
        Ok(_) => ItemQuarter::Another,
        Err(why) => ItemQuarter::Unknown(format!(
            "{why}, so the item belongs to no quarter and is not sent; set its quarter"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_string())
    }

    fn item(quarter: Option<AttributeValue>) -> Item {
        let mut item: Item = [
            ("record_id", s("r-1")),
            ("school_id", s("s-1")),
            ("sync_status", s(PENDING)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(q) = quarter {
            item.insert("quarter".into(), q);
        }
        item
    }

    #[test]
    fn an_item_is_the_quarters_only_when_its_quarter_attribute_says_so() {
        let target: DynamoTarget = "dynamodb://grades?index=gsi".parse().unwrap();
        let q = "2026-Q3";
        // Broken items (no student, no grade): still sorted by their quarter alone.
        assert_eq!(
            belongs(&target, &item(Some(s("2026-Q3"))), q),
            ItemQuarter::Ours
        );
        assert_eq!(
            belongs(&target, &item(Some(s("2026-Q2"))), q),
            ItemQuarter::Another
        );
        assert_eq!(
            belongs(&target, &item(Some(s("2026-q3"))), q),
            ItemQuarter::Another
        );
        assert_eq!(
            belongs(&target, &item(Some(s(" 2026-Q3"))), q),
            ItemQuarter::Another
        );
        let ItemQuarter::Unknown(why) = belongs(&target, &item(None), q) else {
            panic!("an item without a quarter is nobody's");
        };
        assert!(why.starts_with("attribute `quarter` is missing"), "{why}");
        let number = item(Some(AttributeValue::N("2026".into())));
        assert!(matches!(
            belongs(&target, &number, q),
            ItemQuarter::Unknown(_)
        ));
    }
}
