//! `gradesync import FILE.jsonl`: load grade records into the store. Valid lines are
//! upserted (a changed record goes back to pending); each bad line is reported with its
//! number and reason, and never costs a valid neighbour.

use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::BufReader;

use crate::errors::{CliError, CliResult};
use crate::settings::StoreArgs;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSON Lines file, one grade record per line (`-` for standard input).
    pub file: PathBuf,
    /// Show at most this many bad lines (all are counted).
    #[arg(long, default_value_t = 50)]
    pub max_errors_shown: usize,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub async fn run(args: ImportArgs) -> CliResult {
    let store = gradesync_activities::store::Store::connect_for_bulk(&args.store.database_url)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos} lines read ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let on_progress = |n: u64| bar.set_position(n);
    let report = if args.file.as_os_str() == "-" {
        store
            .import_jsonl(BufReader::new(tokio::io::stdin()), on_progress)
            .await
    } else {
        let file = tokio::fs::File::open(&args.file)
            .await
            .map_err(|e| CliError::Usage(format!("cannot open {}: {e}", args.file.display())))?;
        store
            .import_jsonl(BufReader::with_capacity(1 << 20, file), on_progress)
            .await
    }
    .map_err(|e| CliError::Unreachable(e.to_string()))?;
    bar.finish_and_clear();
    println!(
        "{}: {} lines, {} new, {} changed (back to pending), {} unchanged, {} bad",
        args.file.display(),
        report.lines,
        report.inserted,
        report.updated,
        report.unchanged,
        report.bad_lines.len()
    );
    for bad in report.bad_lines.iter().take(args.max_errors_shown) {
        eprintln!("  {bad}");
    }
    if report.bad_lines.len() > args.max_errors_shown {
        eprintln!(
            "  ... and {} more",
            report.bad_lines.len() - args.max_errors_shown
        );
    }
    if report.bad_lines.is_empty() {
        Ok(())
    } else {
        Err(CliError::Attention(format!(
            "{} bad lines were skipped (every valid line was imported); fix them and import the file again",
            report.bad_lines.len()
        )))
    }
}
