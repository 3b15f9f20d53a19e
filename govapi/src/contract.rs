//! The wire contract of the government grades API (see `docs/gov-api.md`): request and
//! response bodies, limits, header names, record validation and the record hash both sides
//! agree on. The simulator serves it and the client in `gradesync-activities` speaks it, so
//! there is exactly one definition of every shape.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::quarter::Quarter;

/// At most this many records in one `POST /v1/grade-batches`.
pub const MAX_RECORDS_PER_BATCH: usize = 100;
/// At most this many bytes in one request body (1 MiB).
pub const MAX_BODY_BYTES: usize = 1_048_576;

pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Fields every record must carry as non-empty strings.
pub const REQUIRED_FIELDS: [&str; 6] = [
    "record_id",
    "school_id",
    "student_id",
    "course_code",
    "quarter",
    "grade",
];

/// `200` answer of `POST /oauth/token`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
}

/// Body of `POST /v1/grade-batches`. Records travel as raw JSON so the bytes we stored
/// are the bytes we send, every time.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchRequest {
    pub batch_id: Uuid,
    pub quarter: String,
    pub school_id: String,
    pub records: Vec<Box<RawValue>>,
}

/// `201` answer of `POST /v1/grade-batches` and of `GET /v1/grade-batches/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchReceipt {
    pub batch_id: Uuid,
    pub receipt_id: String,
    pub accepted: u64,
}

/// One invalid field of one record, inside a `400` problem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordFieldError {
    pub record_id: String,
    pub field: String,
    pub message: String,
}

/// RFC 9457 problem details; every error body of the API is one of these.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Problem {
    #[serde(rename = "type", default = "about_blank")]
    pub type_uri: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RecordFieldError>,
    /// Any further members the server added.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

fn about_blank() -> String {
    "about:blank".to_string()
}

impl Problem {
    pub fn new(status: u16, title: &str, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("https://gov.example/problems/{}", slug(title)),
            title: title.to_string(),
            status,
            detail: Some(detail.into()),
            ..Self::default()
        }
    }
}

fn slug(title: &str) -> String {
    title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// `GET /v1/quarters/{quarter}/summary`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct QuarterSummary {
    pub quarter: String,
    pub schools: Vec<SchoolCount>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SchoolCount {
    pub school_id: String,
    pub records: u64,
}

/// `GET /v1/quarters/{quarter}/records`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordsPage {
    pub records: Vec<RecordHash>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordHash {
    pub record_id: String,
    pub sha256: String,
}

/// Why a record is not acceptable as a grade record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("a record must be a JSON object")]
    NotAnObject,
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    #[error("field `{0}` must be a non-empty string")]
    NotAString(&'static str),
    #[error("field `quarter` is `{0}`, expected YYYY-Qn (n = 1..4)")]
    BadQuarter(String),
}

impl RecordError {
    /// The field the error is about, for a `RecordFieldError`.
    pub fn field(&self) -> &'static str {
        match self {
            RecordError::NotAnObject => "",
            RecordError::Missing(f) | RecordError::NotAString(f) => f,
            RecordError::BadQuarter(_) => "quarter",
        }
    }
}

/// The identifying fields of a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey {
    pub record_id: String,
    pub school_id: String,
    pub quarter: Quarter,
}

/// Checks the required fields of a record; metadata fields are carried verbatim.
pub fn validate_record(value: &Value) -> Result<RecordKey, RecordError> {
    let obj = value.as_object().ok_or(RecordError::NotAnObject)?;
    for field in REQUIRED_FIELDS {
        match obj.get(field) {
            None => return Err(RecordError::Missing(field)),
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(_) => return Err(RecordError::NotAString(field)),
        }
    }
    let text = |f: &str| obj[f].as_str().unwrap_or_default().to_string();
    let quarter_text = text("quarter");
    let quarter = quarter_text
        .parse::<Quarter>()
        .map_err(|_| RecordError::BadQuarter(quarter_text))?;
    Ok(RecordKey {
        record_id: text("record_id"),
        school_id: text("school_id"),
        quarter,
    })
}

/// RFC 8785 (JSON Canonicalization Scheme) serialization of a value.
pub fn canonical_json(value: &Value) -> String {
    // serde_jcs only fails on non-string map keys, which a `Value` cannot have.
    serde_jcs::to_string(value).expect("a serde_json::Value always canonicalizes")
}

/// Hex SHA-256 of the record's canonical JSON: what `GET .../records` reports.
pub fn record_sha256(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(value).as_bytes()))
}

/// Serializes a batch body. Given the same records (as stored canonical JSON) it yields
/// the same bytes, which is what keeps one idempotency key bound to one body.
pub fn encode_batch(
    batch_id: Uuid,
    quarter: &Quarter,
    school_id: &str,
    records: &[&str],
) -> Result<Vec<u8>, serde_json::Error> {
    let records = records
        .iter()
        .map(|r| RawValue::from_string((*r).to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    serde_json::to_vec(&BatchRequest {
        batch_id,
        quarter: quarter.to_string(),
        school_id: school_id.to_string(),
        records,
    })
}

/// Bytes a batch body spends beyond its records: the envelope plus one comma per record
/// after the first. Lets a batcher measure a batch exactly without encoding it twice.
pub fn envelope_bytes(quarter: &Quarter, school_id: &str, n_records: usize) -> usize {
    let empty = encode_batch(Uuid::nil(), quarter, school_id, &[]).map_or(0, |b| b.len());
    empty + n_records.saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> Value {
        json!({"record_id":"r1","school_id":"s1","student_id":"st1","course_code":"MATH",
               "quarter":"2026-Q4","grade":"A","teacher":{"name":"x"},"score":9.5})
    }

    #[test]
    fn validates_required_fields() {
        assert!(validate_record(&record()).is_ok());
        let mut r = record();
        r.as_object_mut().unwrap().remove("grade");
        assert_eq!(validate_record(&r), Err(RecordError::Missing("grade")));
        r = record();
        r["grade"] = json!(7);
        assert_eq!(validate_record(&r), Err(RecordError::NotAString("grade")));
        r = record();
        r["quarter"] = json!("2026-Q5");
        assert!(matches!(
            validate_record(&r),
            Err(RecordError::BadQuarter(_))
        ));
        assert_eq!(validate_record(&json!([1])), Err(RecordError::NotAnObject));
    }

    #[test]
    fn canonical_json_sorts_keys_and_is_order_independent() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":[true,null],"c":1.0}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":[true,null],"b":1,"c":1}"#);
        let b: Value = serde_json::from_str(r#"{"c":1.0,"a":[true,null],"b":1}"#).unwrap();
        assert_eq!(record_sha256(&a), record_sha256(&b));
    }

    #[test]
    fn envelope_bytes_predict_encoded_length() {
        let q: Quarter = "2026-Q4".parse().unwrap();
        let r1 = canonical_json(&record());
        let r2 = canonical_json(&json!({"record_id":"r2"}));
        let body = encode_batch(Uuid::new_v4(), &q, "s1", &[&r1, &r2]).unwrap();
        assert_eq!(
            body.len(),
            envelope_bytes(&q, "s1", 2) + r1.len() + r2.len()
        );
    }
}
