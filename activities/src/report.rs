//! The reconciliation report: the quarter's verdict and every record that is not confirmed
//! at the API (rejected, dead-lettered, not sent, missing or different at the API), each
//! with its school, batch and the reason, plus the store-versus-API comparison it came
//! from. Rendered as JSON (for machines) and CSV (for the compliance team's spreadsheet),
//! kept in the store and, when a report directory is set, written as files too.
//! Only record ids, school ids, batch ids and the API's own reasons appear: no grade and
//! no student id.

use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

use crate::model::Verdict;

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

/// Where a record that is not confirmed at the API stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// The API refused it by name (400 with `errors[]`): the school must correct it.
    Rejected,
    /// Its batch was dead-lettered after the retry ladder and every redrive wave.
    Dead,
    /// Not sent yet: pending, or in a batch whose answer never came.
    Unsent,
    /// Synced in our store, absent from the API's listing.
    Missing,
    /// At the API with other content than ours.
    Mismatch,
    /// At the API but not synced in our store (listed; does not change the verdict).
    Unexpected,
}

impl RecordState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Rejected => "rejected",
            RecordState::Dead => "dead",
            RecordState::Unsent => "unsent",
            RecordState::Missing => "missing",
            RecordState::Mismatch => "mismatch",
            RecordState::Unexpected => "unexpected",
        }
    }
}

/// One record the compliance team must know about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportRow {
    pub school_id: String,
    pub record_id: String,
    pub state: RecordState,
    pub batch_id: Option<Uuid>,
    /// The API's reason (its `errors[].field: message`, or the last error of the batch),
    /// or what Reconcile saw.
    pub reason: String,
}

impl From<&Discrepancy> for ReportRow {
    fn from(d: &Discrepancy) -> Self {
        let (state, reason) = match d.kind {
            DiscrepancyKind::MissingAtApi => (
                RecordState::Missing,
                "synced in our store, absent from the API's listing",
            ),
            DiscrepancyKind::HashMismatch => (
                RecordState::Mismatch,
                "the API holds other content for this record than we sent",
            ),
            DiscrepancyKind::UnexpectedAtApi => (
                RecordState::Unexpected,
                "the API holds this record but our store does not count it as synced",
            ),
        };
        ReportRow {
            school_id: d.school_id.clone(),
            record_id: d.record_id.clone(),
            state,
            batch_id: None,
            reason: reason.to_string(),
        }
    }
}

/// The verdict from what remains: complete only when nothing valid is unconfirmed and the
/// quarter holds records (`records`: every record of the quarter the store or the API's
/// listing knows); needs-correction when the only records left are ones the API refused
/// by name; empty when a listing that was read and the store hold nothing of the quarter.
pub fn verdict(rejected: u64, unconfirmed: u64, listing_read: bool, records: u64) -> Verdict {
    match (unconfirmed, rejected) {
        _ if !listing_read => Verdict::Incomplete,
        _ if records == 0 => Verdict::Empty,
        (0, 0) => Verdict::Complete,
        (0, _) => Verdict::NeedsCorrection,
        _ => Verdict::Incomplete,
    }
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
    /// The quarter's first start and its deadline (Unix ms), when the run said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_at_ms: Option<u64>,
    /// When Reconcile last read the source (Unix ms): the verdict says what was owed then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_read_at_ms: Option<u64>,
    pub verdict: Verdict,
    /// Whether the API's listing could be read; when not, nothing synced is confirmed.
    pub listing_read: bool,
    /// No difference between the store's synced records and the API's listing.
    pub clean: bool,
    pub counts: serde_json::Value,
    /// Alert and compliance webhook posts that failed for good this quarter.
    pub webhook_failures: serde_json::Value,
    /// Reports of earlier rounds of the same run, whose discrepancies were repaired.
    pub earlier_reports: &'a [String],
    /// Every record not confirmed at the API, with its state, batch and reason.
    pub records: &'a [ReportRow],
    /// The store-versus-API comparison (missing, mismatch, unexpected) alone.
    pub discrepancies: &'a [Discrepancy],
}

/// The report as its two documents: the JSON (pretty-printed) and the CSV of `records`.
/// These are the exact texts the store keeps and the files hold.
pub fn render(report: &Report<'_>) -> serde_json::Result<(String, String)> {
    let json = serde_json::to_string_pretty(report)?;
    let mut csv = String::from(CSV_HEADER);
    csv.push('\n');
    for r in report.records {
        csv.push_str(&format!(
            "{},{},{},{},{}\n",
            csv_field(&r.school_id),
            csv_field(&r.record_id),
            r.state.as_str(),
            r.batch_id.map(|b| b.to_string()).unwrap_or_default(),
            csv_field(&r.reason)
        ));
    }
    Ok((json, csv))
}

/// The CSV's first line.
pub const CSV_HEADER: &str = "school_id,record_id,state,batch_id,reason";

/// Writes the rendered `json` and `csv` as `<dir>/reconcile-<quarter>-<stamp>.json` and
/// `.csv`; returns both paths.
pub fn write(
    dir: &Path,
    quarter: &str,
    stamp: &str,
    json: &str,
    csv: &str,
) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let base = dir.join(format!("reconcile-{quarter}-{stamp}"));
    let json_path = base.with_extension("json");
    let csv_path = base.with_extension("csv");
    std::fs::write(&json_path, json)?;
    std::fs::write(&csv_path, csv)?;
    Ok((json_path, csv_path))
}

/// How a summary names a report kept only in the store: `db:<quarter>/<stamp>`.
pub fn db_reference(quarter: &str, stamp: &str) -> String {
    format!("{DB_PREFIX}{quarter}/{stamp}")
}

/// The quarter and stamp of a [`db_reference`]; `None` for a file path.
pub fn parse_db_reference(reference: &str) -> Option<(&str, &str)> {
    reference.strip_prefix(DB_PREFIX)?.split_once('/')
}

const DB_PREFIX: &str = "db:";

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
    fn only_a_fully_confirmed_quarter_is_complete() {
        assert_eq!(verdict(0, 0, true, 10), Verdict::Complete);
        assert_eq!(verdict(3, 0, true, 10), Verdict::NeedsCorrection);
        assert_eq!(verdict(3, 1, true, 10), Verdict::Incomplete);
        assert_eq!(verdict(0, 1, true, 10), Verdict::Incomplete);
        assert_eq!(verdict(0, 0, false, 10), Verdict::Incomplete);
        // Nothing anywhere: not complete. Unread, it stays unconfirmed.
        assert_eq!(verdict(0, 0, true, 0), Verdict::Empty);
        assert_eq!(verdict(0, 0, false, 0), Verdict::Incomplete);
    }

    #[test]
    fn csv_lists_every_row_with_state_batch_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let batch = Uuid::new_v4();
        let records = [
            ReportRow {
                school_id: "s1".into(),
                record_id: "r1".into(),
                state: RecordState::Rejected,
                batch_id: Some(batch),
                reason: "grade: not in scale, \"A+\" expected".into(),
            },
            ReportRow::from(&Discrepancy {
                school_id: "s2".into(),
                record_id: "r2".into(),
                kind: DiscrepancyKind::MissingAtApi,
            }),
        ];
        let report = Report {
            quarter: "2026-Q4",
            workflow_id: "w",
            generated_at: String::new(),
            started_at_ms: None,
            deadline_at_ms: None,
            source_read_at_ms: None,
            verdict: Verdict::Incomplete,
            listing_read: true,
            clean: false,
            counts: serde_json::Value::Null,
            webhook_failures: serde_json::Value::Null,
            earlier_reports: &[],
            records: &records,
            discrepancies: &[],
        };
        let (json_text, csv_text) = render(&report).unwrap();
        let (json, csv) = write(dir.path(), "2026-Q4", "1", &json_text, &csv_text).unwrap();
        assert!(
            json.ends_with("reconcile-2026-Q4-1.json"),
            "{}",
            json.display()
        );
        let csv = std::fs::read_to_string(csv).unwrap();
        assert_eq!(csv, csv_text);
        assert_eq!(std::fs::read_to_string(&json).unwrap(), json_text);
        let lines: Vec<_> = csv.lines().collect();
        assert_eq!(lines[0], "school_id,record_id,state,batch_id,reason");
        assert_eq!(
            lines[1],
            format!("s1,r1,rejected,{batch},\"grade: not in scale, \"\"A+\"\" expected\"")
        );
        assert!(lines[2].starts_with("s2,r2,missing,,"), "{}", lines[2]);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
        assert_eq!(json["verdict"], "incomplete");
        assert_eq!(json["records"][0]["state"], "rejected");
        assert_eq!(json["records"][0]["batch_id"], batch.to_string());
    }

    #[test]
    fn a_stored_report_is_named_by_quarter_and_stamp() {
        let reference = db_reference("2026-Q4", "1700000000123");
        assert_eq!(reference, "db:2026-Q4/1700000000123");
        assert_eq!(
            parse_db_reference(&reference),
            Some(("2026-Q4", "1700000000123"))
        );
        assert_eq!(parse_db_reference("reports/reconcile-2026-Q4-1.json"), None);
    }

    #[test]
    fn csv_quotes_awkward_ids() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("x\"y"), "\"x\"\"y\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
