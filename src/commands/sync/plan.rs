//! `gradesync sync plan`: what the next run of a quarter would send and how long that takes
//! at the configured rate, read from the store alone (no API, no Temporal, no write). With
//! a DynamoDB source the plan reads the table's pending items instead, through the index,
//! into a scratch database of its own: nothing is written to the table or to the store.

use clap::Args;
use gradesync_activities::model::Policy;
use gradesync_activities::source::Source;
use gradesync_activities::store::plan::{QuarterPlan, SchoolPlan};
use gradesync_activities::store::{BatchLimits, Store};
use gradesync_govapi::Quarter;
use serde::Serialize;

use super::eta_text::duration_text;
use super::parse_quarter;
use crate::errors::{CliError, CliResult};
use crate::settings::source_error;
use crate::settings::{DEFAULT_RATE_GUARD_MS, SourceArgs, StoreArgs};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Quarter to plan, e.g. 2026-Q4.
    #[arg(long, value_parser = parse_quarter)]
    pub quarter: Quarter,
    /// Requests per second the API allows (the workers' setting).
    #[arg(long, env = "GRADESYNC_RATE_PER_SEC", default_value_t = 2.0)]
    pub rate_per_sec: f64,
    /// Margin added to the API's 1 s window, in ms (the workers' setting).
    #[arg(long, env = "GRADESYNC_RATE_GUARD_MS", default_value_t = DEFAULT_RATE_GUARD_MS)]
    pub rate_guard_ms: u64,
    /// Print the plan as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// The plan as `--json` prints it.
#[derive(Debug, Serialize)]
struct PlanReport {
    quarter: String,
    /// Records still to go: in unsent batches, not yet batched, or too large to send.
    pending_records: u64,
    batches: u64,
    records: u64,
    bytes: u64,
    prepared_batches: u64,
    new_batches: u64,
    oversize_records: u64,
    rate_per_sec: f64,
    rate_guard_ms: u64,
    send_ms: u64,
    deadline_ms: u64,
    fits_deadline: bool,
    schools: Vec<SchoolPlan>,
}

/// How long sending `batches` takes under the rate gate, in ms. The gate lets at most
/// `rate` requests start in any window of (1000 ms + guard), so B batches need
/// ceil(B / rate) windows: send time ≈ ceil(B / rate) × (1 s + guard). A lower bound: token
/// requests, retries and Reconcile's reads share the same budget.
pub fn send_ms(batches: u64, rate_per_sec: f64, guard_ms: u64) -> u64 {
    let windows = (batches as f64 / rate_per_sec).ceil() as u64;
    windows.saturating_mul(1_000 + guard_ms)
}

pub async fn plan_command(args: PlanArgs) -> CliResult {
    if !args.rate_per_sec.is_finite() || args.rate_per_sec <= 0.0 {
        return Err(CliError::Usage(
            "--rate-per-sec must be greater than 0".into(),
        ));
    }
    let policy = Policy::default();
    let limits = BatchLimits {
        max_records: policy.max_batch_records,
        max_bytes: policy.max_batch_bytes,
    };
    let q = args.quarter;
    let source = args.source.connect().await?;
    // `_scratch` holds a source's items until the plan is read.
    let (store, _scratch) = match &source {
        None => (crate::worker::open_store(&args.store).await?, None),
        Some(source) => {
            let (dir, store) = read_source(source, &q).await?;
            (store, Some(dir))
        }
    };
    let plan = store
        .plan_batches(&q, limits)
        .await
        .map_err(|e| CliError::Unreachable(format!("cannot read the store: {e}")))?;
    if let Some(source) = &source
        && !plan.has_grades
    {
        return Err(CliError::Usage(format!(
            "no pending item of quarter {q} in {}; check the table, the index and the \
             quarter attribute",
            source.target().url()
        )));
    }
    if !plan.has_grades {
        return Err(CliError::Usage(format!(
            "no grades for quarter {q} in this database; import grades with \
             `gradesync import FILE.jsonl` or check GRADESYNC_DATABASE_URL"
        )));
    }
    let report = report(&q, plan, &args, policy.deadline_ms);
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::Other(anyhow::anyhow!("cannot encode the plan: {e}")))?;
        println!("{text}");
    } else {
        print_report(&report);
    }
    Ok(())
}

/// The table's pending items of `q` in a scratch SQLite database (the plan's input), with
/// progress on stderr and the bad items named by key.
async fn read_source(source: &Source, q: &Quarter) -> Result<(tempfile::TempDir, Store), CliError> {
    let dir = tempfile::tempdir()
        .map_err(|e| CliError::Other(anyhow::anyhow!("cannot make a scratch directory: {e}")))?;
    let url = format!("sqlite://{}", dir.path().join("plan.db").display());
    let store = Store::connect_for_bulk(&url)
        .await
        .map_err(|e| CliError::Other(anyhow::anyhow!("cannot open a scratch database: {e}")))?;
    let bar = crate::commands::progress::items_spinner("items read");
    let pulled = source
        .pull_pending(&store, Some(q), false, |n| bar.set_position(n))
        .await
        .map_err(source_error)?;
    bar.finish_and_clear();
    let r = &pulled.import;
    eprintln!(
        "read {} pending items of {q} from {} ({} bad)",
        r.lines,
        source.target().url(),
        r.bad_line_count
    );
    for bad in r.bad_lines.iter().take(20) {
        eprintln!("  {bad}");
    }
    if r.bad_line_count > 20 {
        eprintln!("  ... and {} more", r.bad_line_count - 20);
    }
    Ok((dir, store))
}

fn report(q: &Quarter, plan: QuarterPlan, args: &PlanArgs, deadline_ms: u64) -> PlanReport {
    let t = plan.totals();
    let send_ms = send_ms(t.batches(), args.rate_per_sec, args.rate_guard_ms);
    PlanReport {
        quarter: q.to_string(),
        pending_records: t.pending_records(),
        batches: t.batches(),
        records: t.records(),
        bytes: t.bytes(),
        prepared_batches: t.prepared_batches,
        new_batches: t.new_batches,
        oversize_records: t.oversize_records,
        rate_per_sec: args.rate_per_sec,
        rate_guard_ms: args.rate_guard_ms,
        send_ms,
        deadline_ms,
        fits_deadline: send_ms <= deadline_ms,
        schools: plan.schools,
    }
}

fn print_report(r: &PlanReport) {
    println!(
        "quarter {}: {} records pending in {} schools",
        r.quarter,
        r.pending_records,
        r.schools.len()
    );
    println!(
        "  would send {} batches ({} already cut, {} new): {} records, {:.2} MB",
        r.batches,
        r.prepared_batches,
        r.new_batches,
        r.records,
        r.bytes as f64 / 1e6
    );
    if r.oversize_records > 0 {
        println!(
            "  {} records are too large for any batch and would be rejected",
            r.oversize_records
        );
    }
    println!(
        "  at {} requests per {} ms: about {} of sending; deadline {} h: {}",
        r.rate_per_sec,
        1_000 + r.rate_guard_ms,
        duration_text(r.send_ms),
        r.deadline_ms / 3_600_000,
        if r.fits_deadline {
            "fits"
        } else {
            "does NOT fit: raise the rate or start earlier"
        }
    );
    println!(
        "{:<20} {:>9} {:>9} {:>12} {:>9}",
        "school", "batches", "records", "bytes", "too large"
    );
    for s in &r.schools {
        println!(
            "{:<20} {:>9} {:>9} {:>12} {:>9}",
            s.school_id,
            s.batches(),
            s.records(),
            s.bytes(),
            s.oversize_records
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_time_is_whole_windows_of_one_second_plus_guard() {
        assert_eq!(send_ms(0, 2.0, 15), 0);
        assert_eq!(send_ms(1, 2.0, 15), 1_015);
        assert_eq!(send_ms(2, 2.0, 15), 1_015);
        assert_eq!(send_ms(3, 2.0, 15), 2_030);
        // A full-size network: 50 schools x 20 000 records in batches of 100.
        assert_eq!(send_ms(10_000, 2.0, 15), 5_000 * 1_015);
        assert_eq!(send_ms(3, 0.5, 0), 6_000);
    }
}
