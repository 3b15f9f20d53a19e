//! `dynamodb://TABLE?index=GSI_NAME&grade=nota`: which table holds the grades, which global
//! secondary index finds the pending ones, and which attribute carries each record field.
//! Parsed without touching the network, so a bad URL is a usage error at start-up.

use gradesync_govapi::contract::REQUIRED_FIELDS;

/// The attribute the seed's design keeps a grade's sync state in, and its two values.
pub const STATUS_ATTRIBUTE: &str = "sync_status";
pub const PENDING: &str = "pending";
pub const SYNCED: &str = "synced";
/// Written beside `synced`, so the school's other systems see which batch carried the grade
/// and when the API confirmed it.
pub const SYNCED_BATCH_ATTRIBUTE: &str = "synced_batch_id";
pub const SYNCED_AT_ATTRIBUTE: &str = "synced_at";

/// Where a quarter's grades are read from and marked synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoTarget {
    pub table: String,
    /// The GSI whose partition key is the status attribute.
    pub index: String,
    /// The attribute holding `pending`/`synced` (the index's partition key).
    pub status_attribute: String,
    /// `(record field, item attribute)` for each of the API's required fields.
    pub fields: Vec<(&'static str, String)>,
}

impl DynamoTarget {
    /// The attribute that carries `field`.
    pub fn attribute_of(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, a)| a.as_str())
    }

    /// The record field an attribute becomes: its mapped field, or its own name
    /// (metadata). `None` for the attributes gradesync itself keeps on the item.
    pub fn field_of<'a>(&'a self, attribute: &'a str) -> Option<&'a str> {
        if attribute == self.status_attribute
            || attribute == SYNCED_BATCH_ATTRIBUTE
            || attribute == SYNCED_AT_ATTRIBUTE
        {
            return None;
        }
        Some(
            self.fields
                .iter()
                .find(|(_, a)| a == attribute)
                .map_or(attribute, |(f, _)| f),
        )
    }

    /// The URL back, with only what differs from the defaults (for messages).
    pub fn url(&self) -> String {
        let mut url = format!("dynamodb://{}?index={}", self.table, self.index);
        if self.status_attribute != STATUS_ATTRIBUTE {
            url.push_str(&format!("&status={}", self.status_attribute));
        }
        for (field, attribute) in &self.fields {
            if field != attribute {
                url.push_str(&format!("&{field}={attribute}"));
            }
        }
        url
    }
}

/// A source URL that cannot be used; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadSourceUrl(String);

const EXAMPLE: &str = "dynamodb://TABLE?index=GSI_NAME";

impl std::str::FromStr for DynamoTarget {
    type Err = BadSourceUrl;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| BadSourceUrl(format!("{why} (expected {EXAMPLE})"));
        let rest = text
            .strip_prefix("dynamodb://")
            .ok_or_else(|| bad("a source URL starts with dynamodb://".into()))?;
        let (table, query) = rest.split_once('?').unwrap_or((rest, ""));
        let table = table.trim_end_matches('/');
        if !valid_table_name(table) {
            return Err(bad(format!(
                "`{table}` is not a DynamoDB table name (3 to 255 of a-z A-Z 0-9 _ . -)"
            )));
        }
        // Any base parses a bare query; the pairs come back percent-decoded.
        let parsed = reqwest::Url::parse(&format!("http://source.invalid/?{query}"))
            .map_err(|e| bad(format!("the query string cannot be read: {e}")))?;
        let mut index = None;
        let mut status_attribute = STATUS_ATTRIBUTE.to_string();
        let mut fields: Vec<(&'static str, String)> = REQUIRED_FIELDS
            .iter()
            .map(|f| (*f, (*f).to_string()))
            .collect();
        for (key, value) in parsed.query_pairs() {
            if value.is_empty() {
                return Err(bad(format!("`{key}=` needs a value")));
            }
            match key.as_ref() {
                "index" => index = Some(value.into_owned()),
                "status" => status_attribute = value.into_owned(),
                other => match fields.iter_mut().find(|(f, _)| *f == other) {
                    Some((_, attribute)) => *attribute = value.into_owned(),
                    None => {
                        return Err(bad(format!(
                            "unknown parameter `{other}`; known: index, status, {}",
                            REQUIRED_FIELDS.join(", ")
                        )));
                    }
                },
            }
        }
        let index = index.ok_or_else(|| {
            bad(format!(
                "name the global secondary index on {status_attribute} with ?index=NAME"
            ))
        })?;
        let mut seen = std::collections::HashSet::new();
        for (field, attribute) in &fields {
            if !seen.insert(attribute.as_str()) || *attribute == status_attribute {
                return Err(bad(format!(
                    "attribute `{attribute}` (for {field}) is mapped twice"
                )));
            }
        }
        Ok(DynamoTarget {
            table: table.to_string(),
            index,
            status_attribute,
            fields,
        })
    }
}

fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seed_names() {
        let t: DynamoTarget = "dynamodb://Grades?index=sync_status-index".parse().unwrap();
        assert_eq!(t.table, "Grades");
        assert_eq!(t.index, "sync_status-index");
        assert_eq!(t.status_attribute, "sync_status");
        assert_eq!(t.attribute_of("grade"), Some("grade"));
        assert_eq!(t.field_of("sync_status"), None);
        assert_eq!(t.field_of("teacher"), Some("teacher"));
        assert_eq!(t.url(), "dynamodb://Grades?index=sync_status-index");
    }

    #[test]
    fn maps_fields_to_other_attributes() {
        let t: DynamoTarget =
            "dynamodb://notas?index=gsi&grade=nota&student_id=alumno%5Fid&status=estado"
                .parse()
                .unwrap();
        assert_eq!(t.attribute_of("grade"), Some("nota"));
        assert_eq!(t.attribute_of("student_id"), Some("alumno_id"));
        assert_eq!(t.field_of("nota"), Some("grade"));
        assert_eq!(t.field_of("estado"), None);
        assert!(t.url().contains("grade=nota"), "{}", t.url());
    }

    #[test]
    fn says_what_is_wrong() {
        for (url, expected) in [
            ("postgres://x", "starts with dynamodb://"),
            ("dynamodb://grades", "?index=NAME"),
            ("dynamodb://a?index=i", "not a DynamoDB table name"),
            (
                "dynamodb://grades?index=i&colour=red",
                "unknown parameter `colour`",
            ),
            ("dynamodb://grades?index=i&grade=school_id", "mapped twice"),
            ("dynamodb://grades?index=", "needs a value"),
        ] {
            let err = url.parse::<DynamoTarget>().unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }
}
