//! The compliance report as one self-contained HTML page per quarter: the verdict at the
//! top with what it means and what to do, the counts, two plots (records confirmed over
//! time against the deadline; the API's answers per minute by status class), a table per
//! school (records, confirmed, rejected with the API's reasons, dead-lettered, not sent,
//! missing or different at the API) and the first records not confirmed.
//!
//! Inline CSS and SVG only: no script, nothing fetched, so it opens from a mail attachment
//! or an archive years later. It shows what the stored report's JSON holds (ids, counts,
//! the API's reasons) plus the store's per-school and per-minute counts: no grade and no
//! student id. Every text is HTML-escaped.

mod plots;
mod schools;

use std::fmt::Write;

use serde::Deserialize;

use crate::model::{Counts, ReconcileSummary, Verdict};
use crate::store::{AnswersInMinute, SchoolStatus};
use crate::svg_chart::escape;
use crate::utc::utc_minute;

pub use schools::{ListedRecord, SchoolRow};

/// Records not confirmed listed on the page; the CSV export has them all.
const LISTED_RECORDS: usize = 200;

/// What the page is built from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The stored report's stamp and JSON, as Reconcile built them.
    pub stamp: &'a str,
    pub report_json: &'a str,
    /// The store's per-school counts, read when the page is built.
    pub schools: &'a [SchoolStatus],
    /// Records confirmed per second (Unix seconds, records).
    pub confirmed_per_second: &'a [(i64, u64)],
    /// The API's answers per minute and class.
    pub answers: &'a [AnswersInMinute],
    /// When the page is built (Unix ms).
    pub built_at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum HtmlReportError {
    #[error(
        "the stored report is not one this build can read ({0}); export it with `--format \
         json` to inspect it"
    )]
    Unreadable(#[from] serde_json::Error),
}

/// The parts of the report's JSON the page shows.
#[derive(Debug, Deserialize)]
struct Doc {
    quarter: String,
    workflow_id: String,
    generated_at: String,
    verdict: Verdict,
    listing_read: bool,
    counts: DocCounts,
    #[serde(default)]
    webhook_failures: Vec<serde_json::Value>,
    #[serde(default)]
    earlier_reports: Vec<String>,
    #[serde(default)]
    records: Vec<ListedRecord>,
    #[serde(default)]
    started_at_ms: Option<i64>,
    #[serde(default)]
    deadline_at_ms: Option<i64>,
    #[serde(default)]
    source_read_at_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct DocCounts {
    run: Counts,
    store: ReconcileSummary,
}

/// The whole page.
pub fn render(inputs: &Inputs<'_>) -> Result<String, HtmlReportError> {
    let doc: Doc = serde_json::from_str(inputs.report_json)?;
    let rows = schools::rows(inputs.schools, &doc.records, doc.listing_read);
    let total: u64 = rows.iter().map(|r| r.records).sum();
    let span = plots::Span::of(
        doc.started_at_ms,
        doc.deadline_at_ms,
        inputs.confirmed_per_second,
        inputs.answers,
    );
    let mut page = String::new();
    let title = format!("gradesync {}: {}", doc.quarter, doc.verdict.as_str());
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&title)
    );
    verdict_banner(&mut page, &doc);
    facts(&mut page, &doc, inputs, &rows);
    totals(&mut page, &doc, total);
    let _ = write!(
        page,
        "<section id=\"plots\">\n<h2>Over time</h2>\n<figure id=\"confirmed-plot\">{}</figure>\n\
         <figure id=\"answers-plot\">{}</figure>\n<p class=\"small\">Confirmed: records the \
         store holds as synced, at the time the API's answer was recorded. Answers: the \
         answer that decided each SendBatch attempt, by status class (timeout: no answer \
         in time or the connection broke).</p>\n</section>\n",
        plots::confirmed_svg(span, inputs.confirmed_per_second, total, doc.deadline_at_ms),
        plots::answers_svg(span, inputs.answers)
    );
    school_table(&mut page, &rows, doc.listing_read);
    listed_records(&mut page, &doc, inputs.stamp);
    let _ = write!(
        page,
        "<footer>Built {} by <code>gradesync report export --format html</code> from report \
         {} of the grades database. Ids and counts only: no grade and no student id.\
         </footer>\n</body>\n</html>\n",
        escape(&utc_minute(inputs.built_at_ms.max(0) as u64)),
        escape(inputs.stamp)
    );
    Ok(page)
}

/// What each verdict means and what to do about it.
fn meaning(verdict: Verdict) -> (&'static str, &'static str) {
    match verdict {
        Verdict::Complete => (
            "Reconcile read the API's listing and found every valid record of the quarter \
             there, with our content.",
            "Nothing to do: the quarter is done.",
        ),
        Verdict::NeedsCorrection => (
            "Every other record is confirmed at the API; only records the API refused by \
             name remain.",
            "The schools below must correct the rejected records (the API's reasons are \
             listed), import them and sync again.",
        ),
        Verdict::Incomplete => (
            "Records are dead-lettered, not sent, missing or different at the API, or the \
             API's listing could not be read to confirm them.",
            "Once the API is healthy, resend the dead letters (gradesync dlq replay) or start \
             the sync again; the schools and records below say what is owed.",
        ),
        Verdict::Empty => (
            "The grades store, the source and the API's listing hold no record of this \
             quarter: there was nothing to send or confirm.",
            "Check the quarter's name (YYYY-Qn, the quarter the grades belong to), that the \
             grades were imported (gradesync import) or that the source is the right one \
             (GRADESYNC_SOURCE), then sync again.",
        ),
    }
}

fn verdict_banner(page: &mut String, doc: &Doc) {
    let (means, todo) = meaning(doc.verdict);
    let v = doc.verdict.as_str();
    let _ = write!(
        page,
        "<header id=\"verdict\" class=\"verdict v-{v}\" data-verdict=\"{v}\">\n\
         <div class=\"what\">Quarter {} &middot; verdict</div>\n<h1>{}</h1>\n\
         <p class=\"means\">{}</p>\n<p class=\"todo\">{}</p>\n</header>\n",
        escape(&doc.quarter),
        escape(&v.replace('_', " ")),
        escape(means),
        escape(todo)
    );
}

fn facts(page: &mut String, doc: &Doc, inputs: &Inputs<'_>, rows: &[SchoolRow]) {
    let mut items: Vec<(&str, String)> = vec![
        ("Workflow", doc.workflow_id.clone()),
        (
            "Report",
            format!("{} (built {})", inputs.stamp, doc.generated_at),
        ),
    ];
    if let Some(s) = doc.started_at_ms {
        items.push(("Run started", utc_minute(s.max(0) as u64)));
    }
    if let Some(d) = doc.deadline_at_ms {
        items.push(("Deadline", utc_minute(d.max(0) as u64)));
    }
    if let Some((last, _)) = inputs.confirmed_per_second.last() {
        let at = last * 1000;
        let against = match doc.deadline_at_ms {
            Some(d) if at <= d => format!(", {} before the deadline", duration(d - at)),
            Some(d) => format!(", {} AFTER the deadline", duration(at - d)),
            None => String::new(),
        };
        items.push((
            "Last record confirmed",
            format!("{}{against}", utc_minute(at.max(0) as u64)),
        ));
    }
    if let Some(r) = doc.source_read_at_ms {
        items.push((
            "Source last read",
            format!(
                "{}: the verdict counts what the source owed then",
                utc_minute(r.max(0) as u64)
            ),
        ));
    }
    items.push(("Schools", rows.len().to_string()));
    items.push((
        "API listing",
        if doc.listing_read {
            "read: every synced record compared with what the API holds".to_string()
        } else {
            "could NOT be read: synced records are unverified".to_string()
        },
    ));
    if !doc.earlier_reports.is_empty() {
        items.push(("Earlier rounds", doc.earlier_reports.join(", ")));
    }
    page.push_str("<section id=\"facts\"><dl>\n");
    for (k, v) in items {
        let _ = writeln!(page, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(&v));
    }
    page.push_str("</dl>\n");
    let changed = changed_since(doc, inputs.schools);
    if let Some(note) = changed {
        let _ = writeln!(page, "<p class=\"warn\">{}</p>", escape(&note));
    }
    page.push_str("</section>\n");
}

/// A note when the store no longer matches the report's counts (a replay or an import
/// since): the per-school records and confirmed columns are read now, the rest is the
/// report's.
fn changed_since(doc: &Doc, store: &[SchoolStatus]) -> Option<String> {
    let now = store.iter().fold((0, 0, 0), |(s, r, d), c| {
        (s + c.synced, r + c.rejected, d + c.dead)
    });
    let then = (
        doc.counts.store.synced_in_store,
        doc.counts.store.rejected,
        doc.counts.store.dead_lettered,
    );
    let synced_differs = doc.listing_read && now.0 != then.0;
    (synced_differs || now.1 != then.1 || now.2 != then.2).then(|| {
        format!(
            "The grades store changed after this report was built (synced, rejected, dead: \
             {} / {} / {} now, {} / {} / {} then): the per-school records and confirmed \
             columns are as of now, the other columns as of the report. A newer report \
             comes with the next sync or replay.",
            now.0, now.1, now.2, then.0, then.1, then.2
        )
    })
}

fn totals(page: &mut String, doc: &Doc, total: u64) {
    let s = &doc.counts.store;
    let confirmed = if doc.listing_read {
        plots::count_label(
            s.synced_in_store
                .saturating_sub(s.missing_at_api + s.hash_mismatches) as f64,
        )
    } else {
        "unverified".to_string()
    };
    let n = |v: u64| plots::count_label(v as f64);
    let tiles = [
        ("records", n(total), ""),
        ("confirmed at the API", confirmed, "ok"),
        ("rejected by the API", n(s.rejected), "bad"),
        ("dead-lettered", n(s.dead_lettered), "bad"),
        ("not sent", n(s.unsent), "bad"),
        ("missing at the API", n(s.missing_at_api), "bad"),
        ("different at the API", n(s.hash_mismatches), "bad"),
        ("unexpected at the API", n(s.unexpected_at_api), ""),
        ("repaired (sent again)", n(s.repaired), ""),
        ("batches sent", n(doc.counts.run.batches_sent), ""),
        ("retries", n(doc.counts.run.retries), ""),
        (
            "webhook posts failed",
            doc.webhook_failures.len().to_string(),
            "bad",
        ),
    ];
    page.push_str("<section id=\"totals\">\n");
    for (name, value, tone) in tiles {
        let tone = if tone == "bad" && value == "0" {
            ""
        } else {
            tone
        };
        let _ = writeln!(
            page,
            "<div class=\"tile {tone}\"><div class=\"n\">{}</div><div>{}</div></div>",
            escape(&value),
            escape(name)
        );
    }
    page.push_str("</section>\n");
}

fn school_table(page: &mut String, rows: &[SchoolRow], listing_read: bool) {
    let fine = rows.iter().filter(|r| !r.needs_attention()).count();
    let _ = write!(
        page,
        "<section id=\"schools\">\n<h2>Schools</h2>\n<p>{fine} of {} schools have every \
         record confirmed at the API.{}</p>\n<table>\n<thead><tr><th>School</th>\
         <th>Records</th><th>Confirmed</th><th>Rejected</th><th>Dead-lettered</th>\
         <th>Not sent</th><th>Missing at the API</th><th>Different at the API</th>\
         <th>Reasons</th></tr></thead>\n<tbody>\n",
        rows.len(),
        if listing_read {
            ""
        } else {
            " The API's listing could not be read, so no record is confirmed."
        }
    );
    for r in rows {
        let confirmed = r
            .confirmed
            .map_or_else(|| "unverified".to_string(), |n| n.to_string());
        let mut reasons = String::new();
        for (state, reason, n) in &r.reasons {
            let _ = write!(
                reasons,
                "<li><span class=\"st {}\">{}</span> {n} &times; {}</li>",
                escape(state),
                escape(state),
                escape(reason)
            );
        }
        let _ = writeln!(
            page,
            "<tr data-school=\"{id}\"{cls}><td>{id}</td><td class=\"n records\">{}</td>\
             <td class=\"n confirmed\">{}</td><td class=\"n rejected\">{}</td>\
             <td class=\"n dead\">{}</td><td class=\"n unsent\">{}</td>\
             <td class=\"n missing\">{}</td><td class=\"n mismatch\">{}</td>\
             <td class=\"reasons\">{}</td></tr>",
            r.records,
            escape(&confirmed),
            r.rejected,
            r.dead,
            r.unsent,
            r.missing,
            r.mismatch,
            if reasons.is_empty() {
                String::new()
            } else {
                format!("<ul>{reasons}</ul>")
            },
            id = escape(&r.school_id),
            cls = if r.needs_attention() {
                " class=\"attention\""
            } else {
                ""
            },
        );
    }
    page.push_str("</tbody>\n</table>\n</section>\n");
}

fn listed_records(page: &mut String, doc: &Doc, stamp: &str) {
    let n = doc.records.len();
    let _ = write!(
        page,
        "<section id=\"records\">\n<h2>Records not confirmed ({n})</h2>\n"
    );
    if n == 0 {
        page.push_str(
            "<p>None: every record of the quarter is confirmed at the API.</p>\n</section>\n",
        );
        return;
    }
    if n > LISTED_RECORDS {
        let _ = writeln!(
            page,
            "<p>The first {LISTED_RECORDS}; all {n} are in the CSV: <code>gradesync report \
             export --quarter {} --stamp {} --format csv</code>.</p>",
            escape(&doc.quarter),
            escape(stamp)
        );
    }
    page.push_str(
        "<table class=\"records\">\n<thead><tr><th>School</th><th>Record</th><th>State</th>\
         <th>Batch</th><th>Reason</th></tr></thead>\n<tbody>\n",
    );
    for r in doc.records.iter().take(LISTED_RECORDS) {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td><span class=\"st {s}\">{s}</span></td><td>{}</td>\
             <td>{}</td></tr>",
            escape(&r.school_id),
            escape(&r.record_id),
            escape(r.batch_id.as_deref().unwrap_or("")),
            escape(&r.reason),
            s = escape(&r.state)
        );
    }
    page.push_str("</tbody>\n</table>\n</section>\n");
}

/// `2 h 05 min`, `3 min 20 s`.
fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1000px;padding:16px 24px;color:#222;background:#fff}
h1{margin:4px 0 8px;font-size:34px;text-transform:uppercase;letter-spacing:.04em}
h2{margin:28px 0 8px;font-size:20px;border-bottom:1px solid #ddd;padding-bottom:4px}
.verdict{border-radius:8px;padding:16px 20px;color:#fff}
.verdict .what{font-size:14px;opacity:.9}
.verdict p{margin:6px 0;font-size:16px}
.v-complete{background:#1e7e34}.v-needs_correction{background:#b7791f}.v-incomplete{background:#b02a37}.v-empty{background:#5a6268}
#facts dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:16px 0}
#facts dt{color:#666}#facts dd{margin:0}
.warn{background:#fff3cd;border:1px solid #e0c36c;padding:8px 12px;border-radius:6px}
#totals{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px}
.tile{border:1px solid #ddd;border-radius:6px;padding:8px 10px;font-size:13px;color:#555}
.tile .n{font-size:22px;font-weight:bold;color:#222}
.tile.ok .n{color:#1e7e34}.tile.bad .n{color:#b02a37}
figure{margin:8px 0}figure svg{max-width:100%;height:auto}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e5e5e5;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.attention td:first-child{border-left:3px solid #b02a37}
td.reasons ul{margin:0;padding-left:16px}
.st{display:inline-block;padding:0 5px;border-radius:3px;background:#eee;font-size:12px}
.st.rejected{background:#fde2c8}.st.dead{background:#f8d0d4}.st.missing,.st.mismatch{background:#e2d4f0}
.small{font-size:12px;color:#666}
footer{margin-top:32px;font-size:12px;color:#777}
code{font-size:12px;background:#f3f3f3;padding:1px 4px;border-radius:3px}
";

#[cfg(test)]
mod tests;
