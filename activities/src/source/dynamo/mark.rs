//! MarkSynced's write to the table, the seed's way: `sync_status = 'synced'` (with the batch
//! id and the time) on each confirmed item, conditional on the item being still pending and
//! still holding exactly what was sent. Each item is read consistently first; one whose
//! record changed since it was sent goes back to pending in the store with its new content
//! (a later batch sends it) and is left pending in the table. A condition that fails because
//! the item changed between that read and the write is met the same way on the next read.

use std::collections::HashMap;
use std::fmt::Write as _;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use futures::{StreamExt, TryStreamExt};
use gradesync_govapi::contract::record_sha256;
use serde_json::Value;

use super::DynamoSource;
use super::item::{Item, key_of, key_text, to_record};
use crate::source::SourceError;
use crate::source::outcome::Marked;
use crate::source::url::{
    DynamoTarget, PENDING, SYNCED, SYNCED_AT_ATTRIBUTE, SYNCED_BATCH_ATTRIBUTE,
};
use crate::store::{SentRecord, Store};

/// Conditional writes in flight at once.
const CONCURRENT_WRITES: usize = 16;
/// Reads and writes of one item before it is left for the next MarkSynced attempt: each
/// lost race means the item changed again in the meantime.
const RACES: u32 = 5;
/// Attributes compared in the condition beyond the status (DynamoDB caps an expression at
/// 4 KB); an item with more has its record fields and the first others compared, the rest
/// checked by the read just before.
const COMPARED_ATTRIBUTES: usize = 150;

/// What to do with one item, given what was sent.
#[derive(Debug, PartialEq)]
enum Verdict {
    Mark,
    Already,
    Changed(Value),
    Missing,
    Left(&'static str),
}

fn decide(target: &DynamoTarget, sent: &SentRecord, item: Option<&Item>) -> Verdict {
    let Some(item) = item else {
        return Verdict::Missing;
    };
    let status = match item.get(&target.status_attribute) {
        Some(AttributeValue::S(s)) => s.as_str(),
        _ => "",
    };
    let record = match to_record(target, item) {
        Ok(record) => record,
        Err(_) => return Verdict::Left("no longer a valid record"),
    };
    if record_sha256(&record) != sent.sha256 {
        return Verdict::Changed(record);
    }
    match status {
        PENDING => Verdict::Mark,
        // Marked by an earlier attempt, or by another batch that carried the same content:
        // either way the API holds what the item says.
        SYNCED => Verdict::Already,
        _ => Verdict::Left("status is neither pending nor synced"),
    }
}

impl DynamoSource {
    /// Marks the items of `sent` synced in the table; see the module doc.
    pub async fn mark_synced(
        &self,
        store: &Store,
        sent: &[SentRecord],
    ) -> Result<Marked, SourceError> {
        let mut marked = Marked::default();
        let mut keyed = Vec::with_capacity(sent.len());
        for record in sent {
            let key = serde_json::from_str::<Value>(&record.body)
                .map_err(|e| e.to_string())
                .and_then(|body| key_of(&self.target, &self.key, &body));
            match key {
                Ok(key) => keyed.push((key, record)),
                Err(why) => {
                    tracing::warn!(record_id = %record.record_id, why, "record has no item key in the table; not marked");
                    marked.missing += 1;
                }
            }
        }
        let mut items: HashMap<String, Item> = self
            .batch_get(keyed.iter().map(|(k, _)| k.clone()).collect(), true)
            .await?
            .into_iter()
            .map(|item| (key_text(&self.key_of_item(&item)), item))
            .collect();
        let at = DateTime::from_millis(crate::clock::now_ms())
            .fmt(Format::DateTime)
            .unwrap_or_default();
        // Owned values in the stream: futures borrowing from a local closure would not be
        // `Send` for every lifetime, which the activity's future must be.
        let tasks: Vec<(Item, SentRecord, Option<Item>)> = keyed
            .into_iter()
            .map(|(key, record)| {
                let item = items.remove(&key_text(&key));
                (key, record.clone(), item)
            })
            .collect();
        let outcomes: Vec<(Verdict, SentRecord, String)> = futures::stream::iter(tasks)
            .map(|(key, record, item)| self.settle(key, record, item, at.clone()))
            .buffer_unordered(CONCURRENT_WRITES)
            .try_collect()
            .await?;
        let mut importer = store.importer();
        for (verdict, record, key) in outcomes {
            let record = &record;
            match verdict {
                Verdict::Mark => marked.marked += 1,
                Verdict::Already => marked.already += 1,
                Verdict::Missing => marked.missing += 1,
                Verdict::Left(why) => {
                    tracing::warn!(record_id = %record.record_id, why, "item left as it is");
                    marked.left += 1;
                }
                Verdict::Changed(new) => {
                    tracing::info!(
                        record_id = %record.record_id, batch_id = %record.batch_id,
                        "item changed in the table while its batch was sent; back to pending"
                    );
                    importer.line_read();
                    importer
                        .record(Some(&format!("item {key}")), 0, &new)
                        .await?;
                    marked.requeued += 1;
                }
            }
        }
        let requeue = importer.finish().await?;
        if let Some(bad) = requeue.bad_lines.first() {
            tracing::warn!(bad = %bad, "a changed item is no longer a valid record; left pending");
        }
        Ok(marked)
    }

    /// Brings one item to its verdict: marks it when it still holds what was sent, reading
    /// it again whenever the condition says it changed in between.
    async fn settle(
        &self,
        key: Item,
        sent: SentRecord,
        mut item: Option<Item>,
        at: String,
    ) -> Result<(Verdict, SentRecord, String), SourceError> {
        for _ in 0..RACES {
            let verdict = decide(&self.target, &sent, item.as_ref());
            let (Verdict::Mark, Some(current)) = (&verdict, &item) else {
                return Ok((verdict, sent, key_text(&key)));
            };
            if self.write_synced(&key, current, &sent, &at).await? {
                return Ok((Verdict::Mark, sent, key_text(&key)));
            }
            item = self.get_consistent(&key).await?;
        }
        Err(SourceError::Call {
            operation: "UpdateItem",
            table: self.target.table.clone(),
            message: format!(
                "item {} changed {RACES} times while it was being marked",
                key_text(&key)
            ),
        })
    }

    /// The conditional write; `false` when the condition failed (the item changed).
    async fn write_synced(
        &self,
        key: &Item,
        item: &Item,
        sent: &SentRecord,
        at: &str,
    ) -> Result<bool, SourceError> {
        let t = &self.target;
        let mut names = HashMap::from([
            ("#s".to_string(), t.status_attribute.clone()),
            ("#b".to_string(), SYNCED_BATCH_ATTRIBUTE.to_string()),
            ("#t".to_string(), SYNCED_AT_ATTRIBUTE.to_string()),
        ]);
        let mut values = HashMap::from([
            (":pending".to_string(), AttributeValue::S(PENDING.into())),
            (":synced".to_string(), AttributeValue::S(SYNCED.into())),
            (
                ":batch".to_string(),
                AttributeValue::S(sent.batch_id.to_string()),
            ),
            (":at".to_string(), AttributeValue::S(at.to_string())),
        ]);
        let mut condition = String::from("#s = :pending");
        for (i, (name, value)) in compared(t, item).into_iter().enumerate() {
            let _ = write!(condition, " AND #a{i} = :v{i}");
            names.insert(format!("#a{i}"), name.clone());
            values.insert(format!(":v{i}"), value.clone());
        }
        let out = self
            .client
            .update_item()
            .table_name(&t.table)
            .set_key(Some(key.clone()))
            .update_expression("SET #s = :synced, #b = :batch, #t = :at")
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.call_error("UpdateItem", e)),
        }
    }
}

/// The attributes the condition compares: every one the record is made of (the mapped
/// fields first), up to [`COMPARED_ATTRIBUTES`]; not the status and synced attributes.
fn compared<'a>(target: &DynamoTarget, item: &'a Item) -> Vec<(&'a String, &'a AttributeValue)> {
    let mut attributes: Vec<_> = item
        .iter()
        .filter(|(name, _)| target.field_of(name).is_some())
        .collect();
    attributes.sort_by_key(|(name, _)| (target.fields.iter().all(|(_, a)| a != *name), *name));
    attributes.truncate(COMPARED_ATTRIBUTES);
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_string())
    }

    fn item(grade: &str, status: &str) -> Item {
        [
            ("record_id", s("r-1")),
            ("school_id", s("s-1")),
            ("student_id", s("st-1")),
            ("course_code", s("MATH")),
            ("quarter", s("2026-Q4")),
            ("grade", s(grade)),
            ("sync_status", s(status)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn sent(target: &DynamoTarget, item: &Item, batch_id: Uuid) -> SentRecord {
        let record = to_record(target, item).unwrap();
        SentRecord {
            record_id: "r-1".into(),
            sha256: record_sha256(&record),
            batch_id,
            body: gradesync_govapi::contract::canonical_json(&record),
        }
    }

    #[test]
    fn only_an_unchanged_pending_item_is_marked() {
        let target: DynamoTarget = "dynamodb://grades?index=gsi".parse().unwrap();
        let batch = Uuid::new_v4();
        let was = sent(&target, &item("A", "pending"), batch);
        assert_eq!(
            decide(&target, &was, Some(&item("A", "pending"))),
            Verdict::Mark
        );
        assert_eq!(decide(&target, &was, None), Verdict::Missing);
        assert!(matches!(
            decide(&target, &was, Some(&item("B", "pending"))),
            Verdict::Changed(r) if r["grade"] == "B"
        ));
        let mut done = item("A", "synced");
        done.insert(SYNCED_BATCH_ATTRIBUTE.into(), s(&batch.to_string()));
        assert_eq!(decide(&target, &was, Some(&done)), Verdict::Already);
        assert!(matches!(
            decide(&target, &was, Some(&item("A", "archived"))),
            Verdict::Left(_)
        ));
    }

    #[test]
    fn the_condition_compares_the_record_not_the_sync_attributes() {
        let target: DynamoTarget = "dynamodb://grades?index=gsi".parse().unwrap();
        let mut it = item("A", "pending");
        it.insert("teacher".into(), s("t-1"));
        it.insert(SYNCED_AT_ATTRIBUTE.into(), s("earlier"));
        let names: Vec<&str> = compared(&target, &it)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names.len(), 7, "{names:?}");
        assert_eq!(
            names.last(),
            Some(&"teacher"),
            "mapped fields first: {names:?}"
        );
        assert!(!names.contains(&"sync_status") && !names.contains(&SYNCED_AT_ATTRIBUTE));
    }
}
