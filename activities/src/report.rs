//! The reconciliation report: what the store says was synced, compared record by record
//! with what the API says it holds. Written as JSON (for machines) and CSV (for the
//! compliance team's spreadsheet). Only record ids, school ids and hashes appear: no grade
//! and no student id.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// What is wrong with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscrepancyKind {
    /// Synced in our store, absent at the API.
    MissingAtApi,
    /// Present at both, with different content.
    HashMismatch,
    /// At the API, but not synced in our store.
    UnexpectedAtApi,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discrepancy {
    pub school_id: String,
    pub record_id: String,
    pub kind: DiscrepancyKind,
}

/// Compares the store's synced `(school_id, record_id, sha256)` with the API's
/// `(record_id, sha256)` over one range of record ids, both sorted by record id, in one
/// merge pass. A record only the API holds gets an empty `school_id`, for the caller to
/// look up.
pub fn compare_range(
    ours: &[(String, String, String)],
    theirs: &[(String, String)],
) -> Vec<Discrepancy> {
    let mut out = Vec::new();
    let mut push = |school_id: &str, record_id: &str, kind| {
        out.push(Discrepancy {
            school_id: school_id.to_string(),
            record_id: record_id.to_string(),
            kind,
        })
    };
    let (mut o, mut t) = (ours.iter().peekable(), theirs.iter().peekable());
    loop {
        match (o.peek(), t.peek()) {
            (Some((school, id, hash)), Some((their_id, their_hash))) => match id.cmp(their_id) {
                std::cmp::Ordering::Less => {
                    push(school, id, DiscrepancyKind::MissingAtApi);
                    o.next();
                }
                std::cmp::Ordering::Greater => {
                    push("", their_id, DiscrepancyKind::UnexpectedAtApi);
                    t.next();
                }
                std::cmp::Ordering::Equal => {
                    if hash != their_hash {
                        push(school, id, DiscrepancyKind::HashMismatch);
                    }
                    o.next();
                    t.next();
                }
            },
            (Some((school, id, _)), None) => {
                push(school, id, DiscrepancyKind::MissingAtApi);
                o.next();
            }
            (None, Some((their_id, _))) => {
                push("", their_id, DiscrepancyKind::UnexpectedAtApi);
                t.next();
            }
            (None, None) => break,
        }
    }
    out
}

/// The whole report, serialized as the JSON file.
#[derive(Debug, Clone, Serialize)]
pub struct Report<'a> {
    pub quarter: &'a str,
    pub workflow_id: &'a str,
    pub generated_at: String,
    pub clean: bool,
    pub counts: serde_json::Value,
    /// Reports of earlier rounds of the same run, whose discrepancies were repaired.
    pub earlier_reports: &'a [String],
    pub discrepancies: &'a [Discrepancy],
}

/// Writes `<dir>/<quarter>-<stamp>.json` and `.csv`; returns both paths.
pub fn write(dir: &Path, stamp: &str, report: &Report<'_>) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let base = dir.join(format!("reconcile-{}-{stamp}", report.quarter));
    let json_path = base.with_extension("json");
    let csv_path = base.with_extension("csv");
    std::fs::write(&json_path, serde_json::to_vec_pretty(report)?)?;
    let mut csv = String::from("school_id,record_id,kind\n");
    for d in report.discrepancies {
        let kind = serde_json::to_value(d.kind)?;
        csv.push_str(&format!(
            "{},{},{}\n",
            csv_field(&d.school_id),
            csv_field(&d.record_id),
            kind.as_str().unwrap_or_default()
        ));
    }
    std::fs::write(&csv_path, csv)?;
    Ok((json_path, csv_path))
}

/// RFC 4180 quoting for ids that may contain commas or quotes.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn ours(v: &[(&str, &str)]) -> Vec<(String, String, String)> {
        v.iter()
            .map(|(a, b)| ("s".to_string(), a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn finds_each_kind_once() {
        let mine = ours(&[("a", "1"), ("b", "2"), ("c", "3"), ("e", "5")]);
        let theirs = pairs(&[("a", "1"), ("c", "9"), ("d", "4"), ("f", "6")]);
        let kinds: Vec<_> = compare_range(&mine, &theirs)
            .into_iter()
            .map(|d| (d.school_id, d.record_id, d.kind))
            .collect();
        let k = |school: &str, id: &str, kind| (school.to_string(), id.to_string(), kind);
        assert_eq!(
            kinds,
            vec![
                k("s", "b", DiscrepancyKind::MissingAtApi),
                k("s", "c", DiscrepancyKind::HashMismatch),
                k("", "d", DiscrepancyKind::UnexpectedAtApi),
                k("s", "e", DiscrepancyKind::MissingAtApi),
                k("", "f", DiscrepancyKind::UnexpectedAtApi),
            ]
        );
        let same = pairs(&[("a", "1"), ("b", "2"), ("c", "3"), ("e", "5")]);
        assert!(compare_range(&mine, &same).is_empty());
        assert_eq!(compare_range(&mine, &[]).len(), 4);
    }

    #[test]
    fn csv_quotes_awkward_ids() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("x\"y"), "\"x\"\"y\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
