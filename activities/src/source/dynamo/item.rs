//! A DynamoDB item as a grade record and back to its key. The required fields come from
//! their mapped attributes (a number is taken as its text: the API wants strings); every
//! other attribute is kept as metadata under its own name, except the ones gradesync keeps
//! on the item (status, synced batch and time), so marking an item synced never changes
//! the record it stands for.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ScalarAttributeType};
use aws_smithy_types::base64;
use gradesync_govapi::contract::REQUIRED_FIELDS;
use serde_json::{Map, Number, Value};

use crate::source::url::DynamoTarget;

pub type Item = HashMap<String, AttributeValue>;

/// The table's primary key: each key attribute with its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchema(pub Vec<(String, ScalarAttributeType)>);

/// The record an item stands for, or why it cannot be one (never quoting a value).
pub fn to_record(target: &DynamoTarget, item: &Item) -> Result<Value, String> {
    let mut record = Map::new();
    for (attribute, value) in item {
        let Some(field) = target.field_of(attribute) else {
            continue;
        };
        let required = REQUIRED_FIELDS.contains(&field);
        if required && target.attribute_of(field) != Some(attribute.as_str()) {
            // An unmapped attribute named like a field another attribute is mapped to.
            return Err(format!(
                "attribute `{attribute}` has the name of field `{field}`, which comes from `{}`; \
                 rename one or map it",
                target.attribute_of(field).unwrap_or_default()
            ));
        }
        let json = if required {
            match value {
                AttributeValue::S(s) => Value::String(s.clone()),
                AttributeValue::N(n) => Value::String(n.clone()),
                _ => {
                    return Err(format!(
                        "attribute `{attribute}` (field {field}) must be a string or a number"
                    ));
                }
            }
        } else {
            to_json(value)
        };
        record.insert(field.to_string(), json);
    }
    for (field, attribute) in &target.fields {
        if !record.contains_key(*field) {
            return Err(if field == attribute {
                format!("attribute `{attribute}` is missing")
            } else {
                format!("attribute `{attribute}` (field {field}) is missing")
            });
        }
    }
    Ok(Value::Object(record))
}

/// The quarter an item names, read from its attribute alone (nothing else of the item need
/// be valid), or why it names none: the attribute is missing or not a string. Never quotes
/// the value.
pub fn quarter_of<'a>(target: &DynamoTarget, item: &'a Item) -> Result<&'a str, String> {
    let attribute = target.attribute_of("quarter").unwrap_or("quarter");
    let named = if attribute == "quarter" {
        format!("attribute `{attribute}`")
    } else {
        format!("attribute `{attribute}` (field quarter)")
    };
    match item.get(attribute) {
        Some(AttributeValue::S(text)) => Ok(text),
        None => Err(format!("{named} is missing")),
        Some(_) => Err(format!("{named} is not a string")),
    }
}

/// An attribute value as JSON. Sets are sorted (DynamoDB keeps no order), so one item always
/// gives the same record bytes; binary is base64.
pub fn to_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => number(n),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::M(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
        AttributeValue::L(l) => Value::Array(l.iter().map(to_json).collect()),
        AttributeValue::Ss(ss) => {
            let mut ss = ss.clone();
            ss.sort();
            Value::Array(ss.into_iter().map(Value::String).collect())
        }
        AttributeValue::Ns(ns) => {
            let mut ns = ns.clone();
            ns.sort();
            Value::Array(ns.iter().map(|n| number(n)).collect())
        }
        AttributeValue::B(b) => Value::String(base64::encode(b.as_ref())),
        AttributeValue::Bs(bs) => {
            let mut bs: Vec<String> = bs.iter().map(|b| base64::encode(b.as_ref())).collect();
            bs.sort();
            Value::Array(bs.into_iter().map(Value::String).collect())
        }
        _ => Value::Null,
    }
}

/// A DynamoDB number as a JSON number when it fits one exactly, else as its text.
fn number(text: &str) -> Value {
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Ok(u) = text.parse::<u64>() {
        return Value::Number(u.into());
    }
    match text.parse::<f64>().ok().and_then(Number::from_f64) {
        Some(n) if n.to_string() == text => Value::Number(n),
        _ => Value::String(text.to_string()),
    }
}

/// The item key of a record, read from the record's own fields (each key attribute is a
/// field or metadata of the record).
pub fn key_of(target: &DynamoTarget, schema: &KeySchema, record: &Value) -> Result<Item, String> {
    let mut key = Item::new();
    for (attribute, kind) in &schema.0 {
        let field = target.field_of(attribute).unwrap_or(attribute);
        let value = record.get(field).ok_or_else(|| {
            format!("the record has no field `{field}` for key attribute `{attribute}`")
        })?;
        let av = match (kind, value) {
            (ScalarAttributeType::S, Value::String(s)) => AttributeValue::S(s.clone()),
            (ScalarAttributeType::N, Value::Number(n)) => AttributeValue::N(n.to_string()),
            (ScalarAttributeType::N, Value::String(s)) => AttributeValue::N(s.clone()),
            (ScalarAttributeType::B, Value::String(s)) => AttributeValue::B(
                base64::decode(s)
                    .map_err(|_| format!("key attribute `{attribute}` is not base64"))?
                    .into(),
            ),
            _ => {
                return Err(format!(
                    "key attribute `{attribute}` has another type in the record"
                ));
            }
        };
        key.insert(attribute.clone(), av);
    }
    Ok(key)
}

/// `record_id=r-1` (or every key attribute) for messages: ids only, never grades.
pub fn key_text(key: &Item) -> String {
    let mut parts: Vec<String> = key
        .iter()
        .map(|(name, value)| match value {
            AttributeValue::S(s) | AttributeValue::N(s) => format!("{name}={s}"),
            _ => format!("{name}=(binary)"),
        })
        .collect();
    parts.sort();
    parts.join(", ")
}

/// The key attributes of an item (for messages and lookups).
pub fn key_from_item(schema: &KeySchema, item: &Item) -> Item {
    schema
        .0
        .iter()
        .filter_map(|(name, _)| item.get(name).map(|v| (name.clone(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_string())
    }

    fn item(extra: &[(&str, AttributeValue)]) -> Item {
        let mut item: Item = [
            ("record_id", s("r-1")),
            ("school_id", s("s-1")),
            ("student_id", s("st-1")),
            ("course_code", s("MATH")),
            ("quarter", s("2026-Q4")),
            ("grade", s("A")),
            ("sync_status", s("pending")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in extra {
            item.insert(k.to_string(), v.clone());
        }
        item
    }

    #[test]
    fn an_item_becomes_its_record_without_the_sync_attributes() {
        let target: DynamoTarget = "dynamodb://grades?index=gsi".parse().unwrap();
        let it = item(&[
            ("attendance", AttributeValue::N("42".into())),
            ("weight", AttributeValue::N("0.25".into())),
            ("tags", AttributeValue::Ss(vec!["b".into(), "a".into()])),
            ("synced_batch_id", s("old")),
        ]);
        let record = to_record(&target, &it).unwrap();
        assert_eq!(record["grade"], "A");
        assert_eq!(record["attendance"], 42);
        assert_eq!(record["weight"], 0.25);
        assert_eq!(record["tags"], serde_json::json!(["a", "b"]));
        assert!(record.get("sync_status").is_none() && record.get("synced_batch_id").is_none());
        gradesync_govapi::contract::validate_record(&record).unwrap();
    }

    #[test]
    fn mapped_attributes_and_numbers_as_required_fields() {
        let target: DynamoTarget = "dynamodb://grades?index=gsi&grade=nota".parse().unwrap();
        let mut it = item(&[("nota", AttributeValue::N("9.5".into()))]);
        it.remove("grade");
        let record = to_record(&target, &it).unwrap();
        assert_eq!(record["grade"], "9.5");
        assert!(record.get("nota").is_none());
        // An unmapped attribute with a mapped field's name is ambiguous.
        it.insert("grade".into(), s("B"));
        assert!(to_record(&target, &it).unwrap_err().contains("`grade`"));
    }

    #[test]
    fn bad_items_say_which_attribute_without_its_value() {
        let target: DynamoTarget = "dynamodb://grades?index=gsi".parse().unwrap();
        let mut it = item(&[]);
        it.remove("student_id");
        assert_eq!(
            to_record(&target, &it).unwrap_err(),
            "attribute `student_id` is missing"
        );
        let it = item(&[("grade", AttributeValue::Bool(true))]);
        let err = to_record(&target, &it).unwrap_err();
        assert!(err.contains("must be a string or a number"), "{err}");
    }

    #[test]
    fn the_key_comes_back_from_the_record() {
        let target: DynamoTarget = "dynamodb://grades?index=gsi&record_id=id".parse().unwrap();
        let schema = KeySchema(vec![
            ("school_id".into(), ScalarAttributeType::S),
            ("id".into(), ScalarAttributeType::N),
        ]);
        let mut it = item(&[("id", AttributeValue::N("17".into()))]);
        it.remove("record_id");
        let record = to_record(&target, &it).unwrap();
        let key = key_of(&target, &schema, &record).unwrap();
        assert_eq!(key, key_from_item(&schema, &it));
        assert_eq!(key_text(&key), "id=17, school_id=s-1");
    }

    #[test]
    fn the_quarter_is_read_from_its_attribute_alone() {
        let target: DynamoTarget = "dynamodb://grades?index=gsi&quarter=trimestre"
            .parse()
            .unwrap();
        let mut it = item(&[("trimestre", s("2026-Q2"))]);
        it.remove("quarter");
        it.remove("grade");
        assert_eq!(
            quarter_of(&target, &it),
            Ok("2026-Q2"),
            "a broken item still names it"
        );
        it.insert("trimestre".into(), AttributeValue::N("20262".into()));
        assert_eq!(
            quarter_of(&target, &it).unwrap_err(),
            "attribute `trimestre` (field quarter) is not a string"
        );
        it.remove("trimestre");
        assert_eq!(
            quarter_of(&target, &it).unwrap_err(),
            "attribute `trimestre` (field quarter) is missing"
        );
    }

    #[test]
    fn numbers_keep_their_exact_value() {
        assert_eq!(number("12"), Value::from(12));
        assert_eq!(number("0.5"), Value::from(0.5));
        // Beyond f64: kept as text, so two different numbers never look the same.
        assert_eq!(
            number("3.14159265358979323846264338327950288"),
            Value::from("3.14159265358979323846264338327950288")
        );
    }
}
