use uuid::Uuid;

use super::*;
use crate::report::{self, RecordState, Report, ReportRow};

const T0: i64 = 1_795_876_200_000;

fn row(school: &str, id: &str, state: RecordState, reason: &str) -> ReportRow {
    ReportRow {
        school_id: school.into(),
        record_id: id.into(),
        state,
        batch_id: Some(Uuid::nil()),
        reason: reason.into(),
    }
}

fn report_json(verdict: Verdict, records: &[ReportRow], summary: ReconcileSummary) -> String {
    let report = Report {
        quarter: "2026-Q4",
        workflow_id: "gradesync-2026-Q4",
        generated_at: "Mon, 30 Nov 2026 02:00:00 GMT".into(),
        started_at_ms: Some(T0 as u64),
        deadline_at_ms: Some((T0 + 47 * 3_600_000) as u64),
        source_read_at_ms: Some((T0 + 3_600_000) as u64),
        verdict,
        listing_read: true,
        clean: records.is_empty(),
        counts: serde_json::json!({ "store": summary, "run": Counts::default() }),
        webhook_failures: serde_json::json!([]),
        earlier_reports: &[],
        records,
        discrepancies: &[],
    };
    report::render(&report).unwrap().0
}

fn status(school: &str, synced: u64, rejected: u64, dead: u64) -> SchoolStatus {
    SchoolStatus {
        school_id: school.into(),
        pending: 0,
        batched: 0,
        synced,
        rejected,
        dead,
    }
}

fn page(
    json: &str,
    schools: &[SchoolStatus],
    confirmed: &[(i64, u64)],
    answers: &[AnswersInMinute],
) -> String {
    render(&Inputs {
        stamp: "1795900000000",
        report_json: json,
        schools,
        confirmed_per_second: confirmed,
        answers,
        built_at_ms: T0 + 3_600_000,
    })
    .unwrap()
}

/// The text of the `<td class="n {col}">` cell in the row of `school`.
fn cell(html: &str, school: &str, col: &str) -> String {
    let start = html
        .find(&format!("<tr data-school=\"{school}\""))
        .unwrap_or_else(|| panic!("no row for {school}"));
    let row = &html[start..start + html[start..].find("</tr>").unwrap()];
    let open = format!("<td class=\"n {col}\">");
    let at = row
        .find(&open)
        .unwrap_or_else(|| panic!("no {col} in {row}"))
        + open.len();
    row[at..at + row[at..].find('<').unwrap()].to_string()
}

#[test]
fn the_verdict_comes_first_with_what_it_means() {
    let json = report_json(
        Verdict::NeedsCorrection,
        &[row(
            "s1",
            "r1",
            RecordState::Rejected,
            "grade: out of scale",
        )],
        ReconcileSummary {
            synced_in_store: 9,
            rejected: 1,
            ..ReconcileSummary::default()
        },
    );
    let html = page(&json, &[status("s1", 9, 1, 0)], &[], &[]);
    let verdict = html.find("id=\"verdict\"").unwrap();
    assert!(verdict < html.find("id=\"totals\"").unwrap());
    assert!(verdict < html.find("id=\"schools\"").unwrap());
    assert!(html.contains("data-verdict=\"needs_correction\""));
    assert!(html.contains("<h1>needs correction</h1>"));
    assert!(html.contains("only records the API refused by name remain"));
    assert!(html.contains("<title>gradesync 2026-Q4: needs_correction</title>"));
    let read = html
        .find("Source last read")
        .expect("the last read is said");
    assert!(
        html[read..].contains("2026-11-28 15:30 UTC"),
        "{}",
        &html[read..read + 200]
    );
}

#[test]
fn every_school_gets_its_counts_and_reasons() {
    let records = [
        row(
            "school-001",
            "rec-1",
            RecordState::Rejected,
            "grade: failing grades need a review note",
        ),
        row(
            "school-001",
            "rec-2",
            RecordState::Rejected,
            "grade: failing grades need a review note",
        ),
        row(
            "school-002",
            "rec-3",
            RecordState::Dead,
            "the API is unavailable (503)",
        ),
        row("school-002", "rec-4", RecordState::Missing, "absent"),
    ];
    let json = report_json(
        Verdict::Incomplete,
        &records,
        ReconcileSummary {
            synced_in_store: 18,
            missing_at_api: 1,
            rejected: 2,
            dead_lettered: 1,
            ..ReconcileSummary::default()
        },
    );
    let schools = [
        status("school-001", 8, 2, 0),
        status("school-002", 9, 0, 1),
        status("school-003", 1, 0, 0),
    ];
    let html = page(&json, &schools, &[], &[]);
    assert_eq!(cell(&html, "school-001", "records"), "10");
    assert_eq!(cell(&html, "school-001", "confirmed"), "8");
    assert_eq!(cell(&html, "school-001", "rejected"), "2");
    assert_eq!(cell(&html, "school-002", "dead"), "1");
    assert_eq!(cell(&html, "school-002", "missing"), "1");
    assert_eq!(cell(&html, "school-002", "confirmed"), "8");
    assert_eq!(cell(&html, "school-003", "confirmed"), "1");
    assert!(
        html.contains("2 &times; grade: failing grades need a review note"),
        "{html}"
    );
    assert!(html.contains("1 of 3 schools have every record confirmed"));
    assert!(html.contains("<tr data-school=\"school-001\" class=\"attention\">"));
    assert!(html.contains("<tr data-school=\"school-003\">"));
    // The store matches the report: no "changed since" note.
    assert!(!html.contains("changed after this report"), "{html}");
}

#[test]
fn everything_from_the_report_is_escaped() {
    let evil = "<script>alert(1)</script> & \"quoted\" 'x'";
    let records = [row("<b>s</b>", "r&1", RecordState::Rejected, evil)];
    let json = report_json(
        Verdict::NeedsCorrection,
        &records,
        ReconcileSummary {
            rejected: 1,
            ..ReconcileSummary::default()
        },
    );
    let html = page(&json, &[status("<b>s</b>", 0, 1, 0)], &[], &[]);
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<b>s</b>"));
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot; &#39;x&#39;")
    );
    assert!(html.contains("r&amp;1"));
}

#[test]
fn the_page_needs_nothing_from_outside() {
    let json = report_json(Verdict::Complete, &[], ReconcileSummary::default());
    let answers = [AnswersInMinute {
        minute_ms: T0,
        class: "2xx".into(),
        answers: 5,
    }];
    let html = page(
        &json,
        &[status("s", 500, 0, 0)],
        &[(T0 / 1000 + 5, 500)],
        &answers,
    );
    for banned in [
        "<script", "<link", "src=", "href=", "url(", "@import", "<iframe",
    ] {
        assert!(!html.contains(banned), "{banned} in the page");
    }
    assert!(
        html.contains(r#"class="series confirmed" data-points="2""#),
        "{html}"
    );
    assert_eq!(html.matches(r#"class="bar c-2xx""#).count(), 1);
    assert!(html.contains("None: every record of the quarter is confirmed"));
}

#[test]
fn empty_plots_and_an_old_report_still_render() {
    // A report from before the run's times were recorded, with nothing confirmed and no
    // answers counted.
    let json = serde_json::json!({
        "quarter": "2026-Q3", "workflow_id": "w", "generated_at": "x", "verdict": "incomplete",
        "listing_read": false, "clean": false,
        "counts": { "run": Counts::default(), "store": ReconcileSummary::default() },
        "records": []
    })
    .to_string();
    let html = page(&json, &[], &[], &[]);
    assert!(html.contains("no record of this quarter was confirmed"));
    assert!(html.contains("no answers recorded"));
    assert!(!html.contains("series confirmed"));
    assert!(html.contains("could NOT be read"));
    assert!(!html.contains("Deadline"));
}

#[test]
fn a_store_changed_since_the_report_is_said() {
    let json = report_json(
        Verdict::Incomplete,
        &[row("s", "r", RecordState::Dead, "503")],
        ReconcileSummary {
            synced_in_store: 9,
            dead_lettered: 1,
            ..ReconcileSummary::default()
        },
    );
    // A dlq replay synced the dead record after the report.
    let html = page(&json, &[status("s", 10, 0, 0)], &[], &[]);
    assert!(
        html.contains("changed after this report was built"),
        "{html}"
    );
}

#[test]
fn unreadable_json_is_a_typed_error() {
    let err = render(&Inputs {
        stamp: "1",
        report_json: "{not json",
        schools: &[],
        confirmed_per_second: &[],
        answers: &[],
        built_at_ms: 0,
    })
    .unwrap_err();
    assert!(err.to_string().contains("--format json"), "{err}");
}
