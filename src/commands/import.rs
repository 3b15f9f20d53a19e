//! `gradesync import PATH`: load grade records into the store from JSON Lines, a CSV file
//! or a OneRoster 1.2 export ([`crate::sis`]); `gradesync import --from dynamodb://...`
//! from the pending items of the Step Functions design's table. Valid records are upserted (a changed record
//! goes back to pending); each bad line or row is reported with its file, number and
//! reason, and never costs a valid neighbour. This module only picks the reader and prints.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use gradesync_activities::store::{ImportReport, Store};
use gradesync_govapi::Quarter;
use indicatif::ProgressBar;
use tokio::io::BufReader;

use crate::commands::progress::items_spinner;
use crate::errors::{CliError, CliResult};
use crate::settings::StoreArgs;
use crate::sis::csv_rows::{ColumnMap, CsvRows};
use crate::sis::oneroster::OneRoster;
use crate::sis::{self, ImportError, SisError, SisReport};

const FORMATS: &str = "\
Formats (by default from PATH: `.csv` is csv, a folder or `.zip` is oneroster, anything
else jsonl; `-` reads standard input, as jsonl unless --format csv):
  jsonl      one JSON record per line
               gradesync import grades.jsonl
  csv        a header row, then one record per row; the six required fields found by
             column name (or --map COLUMN=FIELD), every other column kept as metadata
               gradesync import notas.csv --map nota=grade --map alumno=student_id
  oneroster  a OneRoster 1.2 CSV export (folder or zip), one record per results.csv row,
             joined through lineItems.csv, classes.csv and orgs.csv
               gradesync import --format oneroster export.zip
  --from     the pending items of a DynamoDB table, read through its sync_status index
             (the table is only read; the worker's --source marks items synced there)
               gradesync import --from 'dynamodb://grades?index=sync_status-index'

Bad rows are listed as `FILE line N: reason` and the command exits 4; every good row is
imported. Importing the same data again leaves unchanged records alone.";

#[derive(Debug, Args)]
#[command(after_help = FORMATS)]
pub struct ImportArgs {
    /// A JSON Lines or CSV file (`-` for standard input), or a OneRoster export's folder
    /// or zip.
    #[arg(value_name = "PATH", required_unless_present = "from")]
    pub file: Option<PathBuf>,
    /// Read the pending items of a DynamoDB table instead of a file:
    /// `dynamodb://TABLE?index=GSI_NAME` (see `gradesync worker --help`, --source). With
    /// --quarter, that quarter's items only. AWS credentials and region come from the
    /// standard chain; AWS_ENDPOINT_URL points at a local endpoint.
    #[arg(long, value_name = "URL", conflicts_with_all = ["file", "format", "maps"])]
    pub from: Option<String>,
    /// The input's format [default: from PATH].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// (csv) Column COLUMN gives the record's field FIELD, e.g. `--map nota=grade`.
    /// Repeatable.
    #[arg(long = "map", value_name = "COLUMN=FIELD")]
    pub maps: Vec<ColumnMap>,
    /// (csv, oneroster) The quarter of every record: for a CSV file without a quarter
    /// column, or instead of the OneRoster grading periods' titles. (--from) Only this
    /// quarter's items.
    #[arg(long, value_name = "YYYY-Qn")]
    pub quarter: Option<Quarter>,
    /// Show at most this many bad lines (all are counted).
    #[arg(long, default_value_t = 50)]
    pub max_errors_shown: usize,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
    Oneroster,
}

impl Format {
    /// What one unit of input is called in the summary.
    fn unit(self) -> &'static str {
        match self {
            Format::Jsonl => "lines",
            Format::Csv => "rows",
            Format::Oneroster => "results",
        }
    }

    /// What a bad unit is called in the closing message.
    fn bad_unit(self) -> &'static str {
        match self {
            Format::Jsonl => "lines",
            Format::Csv | Format::Oneroster => "rows",
        }
    }
}

impl ImportArgs {
    /// The file or folder read (`-`, standard input, when none is named).
    fn path(&self) -> &Path {
        self.file.as_deref().unwrap_or(Path::new("-"))
    }
}

pub async fn run(args: ImportArgs) -> CliResult {
    if let Some(url) = &args.from {
        return import_table(&args, url).await;
    }
    let format = format_of(&args)?;
    let report = match format {
        Format::Jsonl => import_jsonl(&args).await?,
        Format::Csv => {
            let (path, maps, quarter) =
                (args.path().to_path_buf(), args.maps.clone(), args.quarter);
            let source = sis::open(move || open_csv(&path, &maps, quarter))
                .await
                .map_err(usage)?;
            import_sis(&args, format, source).await?
        }
        Format::Oneroster => {
            let (path, quarter) = (args.path().to_path_buf(), args.quarter);
            let source = sis::open(move || OneRoster::open(&path, quarter))
                .await
                .map_err(usage)?;
            import_sis(&args, format, source).await?
        }
    };
    let label = args.path().display().to_string();
    print_report(&args, &label, format.unit(), format.bad_unit(), &report)
}

/// `--from dynamodb://...`: the table's pending items into the store; nothing is written
/// to the table.
async fn import_table(args: &ImportArgs, url: &str) -> CliResult {
    let target = url
        .parse::<gradesync_activities::source::DynamoTarget>()
        .map_err(|e| CliError::Usage(format!("--from: {e}")))?;
    let source = crate::settings::connect_source(target).await?;
    let store = connect(args).await?;
    let bar = items_spinner("items read");
    let pulled = source
        .pull_pending(&store, args.quarter.as_ref(), false, |n| {
            bar.set_position(n)
        })
        .await
        .map_err(crate::settings::source_error)?;
    bar.finish_and_clear();
    let report = SisReport {
        import: pulled.import,
        ..SisReport::default()
    };
    print_report(
        args,
        &source.target().url(),
        "pending items",
        "items",
        &report,
    )
}

/// The format `--format` names or PATH implies, and the flags that go with it.
fn format_of(args: &ImportArgs) -> CliResult<Format> {
    let stdin = args.path().as_os_str() == "-";
    let format = args.format.unwrap_or_else(|| {
        let ext = args.path().extension().and_then(|e| e.to_str());
        match ext.map(str::to_ascii_lowercase).as_deref() {
            _ if stdin => Format::Jsonl,
            Some("csv") => Format::Csv,
            Some("zip") => Format::Oneroster,
            _ if args.path().is_dir() => Format::Oneroster,
            _ => Format::Jsonl,
        }
    });
    if !args.maps.is_empty() && format != Format::Csv {
        return Err(CliError::Usage(
            "--map is for CSV files (add --format csv if the file has another extension)"
                .to_string(),
        ));
    }
    if args.quarter.is_some() && format == Format::Jsonl {
        return Err(CliError::Usage(
            "--quarter is for CSV files and OneRoster exports; a JSON record carries its own"
                .to_string(),
        ));
    }
    if stdin && format == Format::Oneroster {
        return Err(CliError::Usage(
            "a OneRoster export is a folder or a zip file, not standard input".to_string(),
        ));
    }
    Ok(format)
}

fn open_csv(
    path: &Path,
    maps: &[ColumnMap],
    quarter: Option<Quarter>,
) -> Result<CsvRows, SisError> {
    if path.as_os_str() == "-" {
        return CsvRows::open(Box::new(std::io::stdin()), "standard input", maps, quarter);
    }
    let file = std::fs::File::open(path).map_err(|source| SisError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    CsvRows::open(Box::new(file), &path.display().to_string(), maps, quarter)
}

async fn connect(args: &ImportArgs) -> CliResult<Store> {
    Store::connect_for_bulk(&args.store.database_url)
        .await
        .map_err(|e| CliError::Unreachable(e.to_string()))
}

fn spinner(format: Format) -> ProgressBar {
    items_spinner(&format!("{} read", format.unit()))
}

async fn import_jsonl(args: &ImportArgs) -> CliResult<SisReport> {
    let store = connect(args).await?;
    let bar = spinner(Format::Jsonl);
    let on_progress = |n: u64| bar.set_position(n);
    let report = if args.path().as_os_str() == "-" {
        store
            .import_jsonl(BufReader::new(tokio::io::stdin()), on_progress)
            .await
    } else {
        let file = tokio::fs::File::open(args.path())
            .await
            .map_err(|e| CliError::Usage(format!("cannot open {}: {e}", args.path().display())))?;
        store
            .import_jsonl(BufReader::with_capacity(1 << 20, file), on_progress)
            .await
    }
    .map_err(|e| CliError::Unreachable(e.to_string()))?;
    bar.finish_and_clear();
    Ok(SisReport {
        import: report,
        ..SisReport::default()
    })
}

async fn import_sis(
    args: &ImportArgs,
    format: Format,
    source: impl sis::Source,
) -> CliResult<SisReport> {
    let store = connect(args).await?;
    let bar = spinner(format);
    let result = sis::import(&store, source, |n| bar.set_position(n)).await;
    bar.finish_and_clear();
    result.map_err(|e| match e {
        ImportError::Source(e) => usage(e),
        ImportError::Store(e) => CliError::Unreachable(e.to_string()),
    })
}

fn usage(e: SisError) -> CliError {
    CliError::Usage(e.to_string())
}

/// The summary line on stdout, the bad lines on stderr, exit 4 when some were skipped.
fn print_report(
    args: &ImportArgs,
    label: &str,
    unit: &str,
    bad_unit: &str,
    report: &SisReport,
) -> CliResult {
    let ImportReport {
        lines,
        inserted,
        updated,
        unchanged,
        bad_line_count: bad,
        held,
        ..
    } = report.import;
    let after = match held {
        0 => String::new(),
        n => format!("; {n} of them once the batch in flight with their old content is answered"),
    };
    let mut summary = format!(
        "{label}: {lines} {unit}, {inserted} new, {updated} changed (back to pending{after}), {unchanged} unchanged, {bad} bad",
    );
    if report.bad_references > 0 {
        summary.push_str(&format!(
            " ({} of them in the files results refer to)",
            report.bad_references
        ));
    }
    if report.deleted > 0 {
        summary.push_str(&format!(
            ", {} marked tobedeleted (not imported)",
            report.deleted
        ));
    }
    println!("{summary}");
    let listed = &report.import.bad_lines;
    for bad in listed.iter().take(args.max_errors_shown) {
        eprintln!("  {bad}");
    }
    let shown = listed.len().min(args.max_errors_shown) as u64;
    if bad > shown {
        eprintln!("  ... and {} more", bad - shown);
    }
    if bad == 0 {
        return Ok(());
    }
    Err(CliError::Attention(format!(
        "{bad} bad {bad_unit} were skipped (every valid one was imported); fix them and import again"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        import: ImportArgs,
    }

    fn format(argv: &[&str]) -> CliResult<Format> {
        let cli = Cli::try_parse_from(std::iter::once("import").chain(argv.iter().copied()))
            .map_err(|e| CliError::Usage(e.to_string()))?;
        format_of(&cli.import)
    }

    #[test]
    fn the_format_comes_from_the_flag_or_the_path() {
        assert_eq!(format(&["g.jsonl"]).unwrap(), Format::Jsonl);
        assert_eq!(format(&["G.CSV"]).unwrap(), Format::Csv);
        assert_eq!(format(&["export.zip"]).unwrap(), Format::Oneroster);
        assert_eq!(format(&["-"]).unwrap(), Format::Jsonl);
        assert_eq!(format(&["-", "--format", "csv"]).unwrap(), Format::Csv);
        assert_eq!(
            format(&["x.txt", "--format", "csv", "--map", "a=grade"]).unwrap(),
            Format::Csv
        );
    }

    #[test]
    fn flags_that_do_not_fit_the_format_are_usage_errors() {
        for argv in [
            &["g.jsonl", "--map", "a=grade"][..],
            &["g.jsonl", "--quarter", "2026-Q3"],
            &["-", "--format", "oneroster"],
            &["g.csv", "--map", "nota"],
        ] {
            assert!(matches!(format(argv), Err(CliError::Usage(_))), "{argv:?}");
        }
    }
}
