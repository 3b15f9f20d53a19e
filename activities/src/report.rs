//! The reconciliation report: what the store says was synced, compared record by record
//! with what the API says it holds. Written as JSON (for machines) and CSV (for the
//! compliance team's spreadsheet). Only record ids, school ids and hashes appear: no grade
//! and no student id.

use std::collections::BTreeMap;
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

/// Compares one school's `(record_id, sha256)` lists, both sorted by record id.
pub fn compare_school(
    school_id: &str,
    ours: &[(String, String)],
    theirs: &[(String, String)],
) -> Vec<Discrepancy> {
    let theirs: BTreeMap<&str, &str> = theirs
        .iter()
        .map(|(id, h)| (id.as_str(), h.as_str()))
        .collect();
    let mut out = Vec::new();
    let mut push = |record_id: &str, kind| {
        out.push(Discrepancy {
            school_id: school_id.to_string(),
            record_id: record_id.to_string(),
            kind,
        })
    };
    for (id, hash) in ours {
        match theirs.get(id.as_str()) {
            None => push(id, DiscrepancyKind::MissingAtApi),
            Some(h) if *h != hash => push(id, DiscrepancyKind::HashMismatch),
            Some(_) => {}
        }
    }
    let ours: std::collections::BTreeSet<&str> = ours.iter().map(|(id, _)| id.as_str()).collect();
    for id in theirs.keys().filter(|id| !ours.contains(*id)) {
        push(id, DiscrepancyKind::UnexpectedAtApi);
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

    #[test]
    fn finds_each_kind_once() {
        let ours = pairs(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let theirs = pairs(&[("a", "1"), ("c", "9"), ("d", "4")]);
        let kinds: Vec<_> = compare_school("s", &ours, &theirs)
            .into_iter()
            .map(|d| (d.record_id, d.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("b".to_string(), DiscrepancyKind::MissingAtApi),
                ("c".to_string(), DiscrepancyKind::HashMismatch),
                ("d".to_string(), DiscrepancyKind::UnexpectedAtApi),
            ]
        );
        assert!(compare_school("s", &ours, &ours).is_empty());
    }

    #[test]
    fn csv_quotes_awkward_ids() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("x\"y"), "\"x\"\"y\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
