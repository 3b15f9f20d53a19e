//! `gradesync report show|export|list --quarter Q`: Reconcile's reports, read from the
//! grades database, so any host that reaches the database shows or exports them, whichever
//! worker ran Reconcile. Only the database is needed, not Temporal.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use clap::{Args, Subcommand, ValueEnum};
use gradesync_activities::html_report;
use gradesync_activities::model::{Counts, ReconcileSummary, Verdict};
use gradesync_activities::store::{Store, StoreError, StoredReport};
use gradesync_govapi::Quarter;
use serde_json::Value;

use crate::commands::sync::{parse_quarter, print_counts, verdict_exit};
use crate::errors::{CliError, CliResult};
use crate::settings::StoreArgs;

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// The latest report's verdict, counts and first records. Exits like `sync start
    /// --wait`: 0 when the quarter is `complete`, 4 when `incomplete` or `needs_correction`.
    Show(ShowArgs),
    /// Write a stored report's JSON or CSV, byte for byte as Reconcile built it, or the
    /// compliance team's one-page HTML (verdict, counts, plots, a table per school).
    Export(ExportArgs),
    /// List the quarter's stored reports (one per Reconcile round).
    List(QuarterArgs),
}

#[derive(Debug, Args)]
pub struct QuarterArgs {
    /// Quarter, e.g. 2026-Q4.
    #[arg(long, value_parser = parse_quarter)]
    pub quarter: Quarter,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub quarter: QuarterArgs,
    /// How many of the records not confirmed at the API to print.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Which report (see `report list`); the latest by default.
    #[arg(long)]
    pub stamp: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub quarter: QuarterArgs,
    /// The document: the whole report as JSON, the CSV of every record not confirmed, or a
    /// self-contained HTML page (verdict, counts, plots over time, a table per school).
    #[arg(long, value_enum)]
    pub format: Format,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Which report (see `report list`); the latest by default.
    #[arg(long)]
    pub stamp: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Csv,
    Html,
}

pub async fn run(cmd: ReportCommand) -> CliResult {
    match cmd {
        ReportCommand::Show(a) => show(a).await,
        ReportCommand::Export(a) => export(a).await,
        ReportCommand::List(a) => list(a).await,
    }
}

async fn show(a: ShowArgs) -> CliResult {
    let store = crate::worker::open_store(&a.quarter.store).await?;
    let q = a.quarter.quarter;
    let report = find(&store, &q, a.stamp.as_deref()).await?;
    let stored = store
        .reports(&q)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))?;
    let place = match stored.last() {
        Some(latest) if latest.stamp == report.stamp => {
            format!("the latest of {} stored", stored.len())
        }
        Some(latest) => format!("{} stored; the latest is {}", stored.len(), latest.stamp),
        None => "not stored any more".to_string(),
    };
    let verdict: Verdict = report.verdict.parse().map_err(|e| {
        CliError::Other(anyhow::anyhow!(
            "report {} of quarter {q} is damaged: {e}",
            report.stamp
        ))
    })?;
    let doc: Value = serde_json::from_str(&report.json).map_err(|e| {
        CliError::Other(anyhow::anyhow!(
            "report {} of quarter {q} is not valid JSON: {e}; export it with `gradesync \
             report export` to inspect it",
            report.stamp
        ))
    })?;
    // Typed, so a renamed field fails here instead of printing 0.
    let counts = serde_json::from_value::<(Counts, ReconcileSummary)>(serde_json::json!([
        doc["counts"]["run"],
        doc["counts"]["store"]
    ]))
    .map_err(|e| {
        CliError::Other(anyhow::anyhow!(
            "report {} of quarter {q} has counts this build cannot read: {e}; export it with \
             `gradesync report export` to inspect it",
            report.stamp
        ))
    })?;
    print_report(&report, &doc, &counts, &place, a.limit);
    verdict_exit(
        &q.to_string(),
        verdict,
        &format!("by `gradesync report export --quarter {q} --format csv`"),
    )
}

/// The human view: the verdict, the counts, the records by state and the first `limit`
/// records.
fn print_report(
    report: &StoredReport,
    doc: &Value,
    counts: &(Counts, ReconcileSummary),
    place: &str,
    limit: usize,
) {
    println!("quarter {}: {}", report.quarter, report.verdict);
    println!(
        "  report {} ({place}), built {} by workflow {}",
        report.stamp,
        when(report.generated_at),
        report.workflow_id
    );
    if let Some(at) = doc["source_read_at_ms"].as_i64() {
        println!(
            "  source last read {}: the verdict counts what it owed then",
            when(at)
        );
    }
    let (totals, r) = counts;
    print_counts(totals, r);
    println!(
        "  not at the API: {} rejected, {} dead-lettered, {} not sent, {} unverified; {} repaired",
        r.rejected, r.dead_lettered, r.unsent, r.unverified, r.repaired
    );
    if doc["listing_read"] == Value::Bool(false) {
        println!("  the API's listing could not be read: synced records are unverified");
    }
    let failures = doc["webhook_failures"].as_array().map_or(0, Vec::len);
    if failures > 0 {
        println!("  {failures} webhook posts failed (alerts or the compliance report)");
    }
    let records = doc["records"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    println!("  records listed: {}{}", records.len(), by_state(records));
    if records.is_empty() {
        return;
    }
    println!(
        "{:<16} {:<26} {:<10} {:<36} reason",
        "school", "record", "state", "batch"
    );
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    for row in records.iter().take(limit) {
        println!(
            "{:<16} {:<26} {:<10} {:<36} {}",
            text(&row["school_id"]),
            text(&row["record_id"]),
            text(&row["state"]),
            text(&row["batch_id"]),
            text(&row["reason"])
        );
    }
    if records.len() > limit {
        println!(
            "… {} more: `gradesync report export --quarter {} --stamp {} --format csv`",
            records.len() - limit,
            report.quarter,
            report.stamp
        );
    }
}

/// ` (2 rejected, 10 dead)`, states in the order they first appear; empty for no records.
fn by_state(records: &[Value]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for state in records.iter().map(|r| r["state"].as_str().unwrap_or("?")) {
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state, 1)),
        }
    }
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<_> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!(" ({})", parts.join(", "))
}

async fn export(a: ExportArgs) -> CliResult {
    let store = crate::worker::open_store(&a.quarter.store).await?;
    let q = a.quarter.quarter;
    let report = find(&store, &q, a.stamp.as_deref()).await?;
    let html;
    let body = match a.format {
        Format::Json => report.json.as_bytes(),
        Format::Csv => report.csv.as_bytes(),
        Format::Html => {
            html = html_page(&store, &report).await?;
            html.as_bytes()
        }
    };
    match &a.output {
        Some(path) => {
            std::fs::write(path, body).map_err(|e| {
                CliError::Usage(format!(
                    "cannot write the report to {}: {e}; check --output",
                    path.display()
                ))
            })?;
            eprintln!(
                "report {} of quarter {q} ({}) written to {}",
                report.stamp,
                report.verdict,
                path.display()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(body).and_then(|()| out.flush()) {
                Ok(()) => {}
                // A reader that stopped early (`| head`) wanted no more.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => {
                    return Err(CliError::Other(anyhow::anyhow!(
                        "cannot write the report to standard output: {e}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The report's HTML page, with the store's per-school counts and timeline read now.
pub async fn html_page(store: &Store, report: &StoredReport) -> Result<String, CliError> {
    let q = &report.quarter;
    let unreachable = |e: StoreError| CliError::Unreachable(e.to_string());
    let schools = store.status_counts(q).await.map_err(unreachable)?;
    let confirmed = store.confirmed_per_second(q).await.map_err(unreachable)?;
    let answers = store.api_answers(q).await.map_err(unreachable)?;
    let built_at_ms = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    html_report::render(&html_report::Inputs {
        stamp: &report.stamp,
        report_json: &report.json,
        schools: &schools,
        confirmed_per_second: &confirmed,
        answers: &answers,
        built_at_ms,
    })
    .map_err(|e| {
        CliError::Other(anyhow::anyhow!(
            "report {} of quarter {q}: {e}",
            report.stamp
        ))
    })
}

async fn list(a: QuarterArgs) -> CliResult {
    let store = crate::worker::open_store(&a.store).await?;
    let q = a.quarter;
    let reports = store
        .reports(&q)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))?;
    let Some(latest) = reports.last() else {
        return Err(no_report(&store, &q));
    };
    println!("{:<15} {:<31} {:<17} workflow", "stamp", "built", "verdict");
    for r in &reports {
        println!(
            "{:<15} {:<31} {:<17} {}",
            r.stamp,
            when(r.generated_at),
            r.verdict,
            r.workflow_id
        );
    }
    let count = match reports.len() {
        1 => "1 report".to_string(),
        n => format!("{n} reports"),
    };
    println!(
        "{count} of {q}; the latest, {}, is what `report show` and `report export` read \
         unless given --stamp",
        latest.stamp
    );
    Ok(())
}

/// The report under `stamp`, or the quarter's latest.
async fn find(store: &Store, q: &Quarter, stamp: Option<&str>) -> Result<StoredReport, CliError> {
    let found = match stamp {
        Some(stamp) => store.report(q, stamp).await,
        None => store.latest_report(q).await,
    }
    .map_err(|e| CliError::Unreachable(e.to_string()))?;
    match (found, stamp) {
        (Some(report), _) => Ok(report),
        (None, Some(stamp)) => Err(CliError::Usage(format!(
            "no report {stamp} for quarter {q} in {}; `gradesync report list --quarter {q}` \
             lists the stored ones",
            store.location()
        ))),
        (None, None) => Err(no_report(store, q)),
    }
}

fn no_report(store: &Store, q: &Quarter) -> CliError {
    CliError::Usage(format!(
        "no report for quarter {q} in {}; run the sync first or check GRADESYNC_DATABASE_URL",
        store.location()
    ))
}

/// Unix ms as an HTTP date (the report's own `generated_at` format).
fn when(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms))
}
