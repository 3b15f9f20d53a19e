//! Grade records from a school information system's export: a CSV file with a header
//! ([`csv_rows`]) or a OneRoster 1.2 bulk CSV export, as a folder or a zip ([`oneroster`]).
//! Each source is opened first (every usage error, such as a missing column, is found
//! before anything is stored), then read on a blocking thread that hands [`Item`]s over a
//! channel to [`import`], which feeds the store's [`Importer`]: a bad row is reported by
//! file and line, quotes none of its values, and never costs a good row.
//!
//! [`Importer`]: gradesync_activities::store::Importer

pub mod csv_rows;
mod export;
pub mod oneroster;
mod table;

use std::path::PathBuf;

use gradesync_activities::store::{ImportReport, Store, StoreError};
use serde_json::Value;

/// What a reader makes of one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A row that makes a record, still to be validated with the API contract.
    Record {
        origin: Option<&'static str>,
        line: u64,
        value: Value,
    },
    /// A row of the main file (the CSV, `results.csv`) that makes no record.
    Bad {
        origin: Option<&'static str>,
        line: u64,
        reason: String,
    },
    /// An unusable row of a file the main one refers to (a OneRoster line item, class or
    /// org): reported, but not counted as a row read.
    BadReference {
        origin: &'static str,
        line: u64,
        reason: String,
    },
    /// A row marked `tobedeleted`: not imported, counted.
    Deleted,
}

/// Where a reader sends its items; an error means the import stopped (stop reading).
pub type Emit<'a> = dyn FnMut(Item) -> Result<(), SisError> + 'a;

/// An opened source: reading it emits one item per row.
pub trait Source: Send + 'static {
    fn read(self, emit: &mut Emit<'_>) -> Result<(), SisError>;
}

/// Why a source cannot be read. All are the input's or the command line's to fix.
#[derive(Debug, thiserror::Error)]
pub enum SisError {
    /// Check the path.
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A disk or archive error part-way: the rows before it were imported; import again.
    #[error("cannot read {table}: {source}")]
    Read {
        table: String,
        source: std::io::Error,
    },
    /// A header row is required.
    #[error("{table} is empty: a header row is required")]
    Empty { table: String },
    #[error("the header of {table} is not valid UTF-8 (column {column})")]
    HeaderNotUtf8 { table: String, column: usize },
    /// Add the column, or (CSV) name the column that holds it with `--map COLUMN=FIELD`.
    #[error("{table} has no `{column}` column; its columns: {found}")]
    MissingColumn {
        table: String,
        column: String,
        found: String,
    },
    /// A CSV file without a column for a required field: add it, or map one to it.
    #[error(
        "{table} has no column for field `{field}` (name one with --map COLUMN={field}); its columns: {found}"
    )]
    MissingField {
        table: String,
        field: String,
        found: String,
    },
    /// One column given two fields.
    #[error("--map gives column `{column}` two fields: {fields}")]
    MapTwice { column: String, fields: String },
    /// A `--map` names a column the header does not have.
    #[error("--map {column}={field}: {table} has no column `{column}`; its columns: {found}")]
    UnknownMapColumn {
        table: String,
        column: String,
        field: String,
        found: String,
    },
    /// Two columns (after `--map`) would give a record the same field.
    #[error(
        "{table}: columns `{first}` and `{second}` both give field `{field}`; rename one with --map"
    )]
    FieldTwice {
        table: String,
        field: String,
        first: String,
        second: String,
    },
    /// `--quarter` and a quarter column both say which quarter a row is in.
    #[error("{table} has a `quarter` column; drop it or --quarter")]
    QuarterTwice { table: String },
    /// Not a OneRoster 1.2 CSV export, or not one with grades.
    #[error("{path}: {reason}")]
    NotOneRoster { path: PathBuf, reason: String },
    #[error("{path} is not a readable zip archive: {source}")]
    Zip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
    /// The store stopped taking rows (its error is the one to report).
    #[error("the import stopped")]
    Stopped,
}

/// An import from a SIS export: the store's report, and the rows left out on purpose.
#[derive(Debug, Default)]
pub struct SisReport {
    pub import: ImportReport,
    /// Rows marked `tobedeleted` (OneRoster): not imported.
    pub deleted: u64,
    /// Bad rows of the files the main one refers to (also in `import.bad_lines`).
    pub bad_references: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Source(#[from] SisError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Items per hand-over between the reading thread and the store: enough to make the
/// channel's cost vanish, few enough that progress moves smoothly.
const ITEMS_PER_SEND: usize = 512;

/// Opens a source on a blocking thread (opening reads headers and, for OneRoster, the
/// lookup files).
pub async fn open<S, F>(open: F) -> Result<S, SisError>
where
    S: Send + 'static,
    F: FnOnce() -> Result<S, SisError> + Send + 'static,
{
    tokio::task::spawn_blocking(open)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Reads `source` on a blocking thread and upserts every good record. `on_progress` gets
/// the number of rows read so far. A read error part-way is returned after what was read
/// before it is stored.
pub async fn import(
    store: &Store,
    source: impl Source,
    mut on_progress: impl FnMut(u64),
) -> Result<SisReport, ImportError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Item>>(4);
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(ITEMS_PER_SEND);
        let send = |batch: &mut Vec<Item>| {
            tx.blocking_send(std::mem::take(batch))
                .map_err(|_| SisError::Stopped)
        };
        source.read(&mut |item| {
            batch.push(item);
            if batch.len() >= ITEMS_PER_SEND {
                send(&mut batch)?;
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            send(&mut batch)?;
        }
        Ok::<_, SisError>(())
    });
    let mut importer = store.importer();
    let mut report = SisReport::default();
    while let Some(items) = rx.recv().await {
        for item in items {
            match item {
                Item::Record {
                    origin,
                    line,
                    value,
                } => {
                    importer.line_read();
                    importer.record(origin, line, &value).await?;
                }
                Item::Bad {
                    origin,
                    line,
                    reason,
                } => {
                    importer.line_read();
                    importer.bad(origin, line, reason);
                }
                Item::BadReference {
                    origin,
                    line,
                    reason,
                } => {
                    report.bad_references += 1;
                    importer.bad(Some(origin), line, reason);
                }
                Item::Deleted => {
                    importer.line_read();
                    report.deleted += 1;
                }
            }
        }
        on_progress(importer.report().lines);
    }
    let read = reader
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    report.import = importer.finish().await?;
    on_progress(report.import.lines);
    read?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Emits `n` records, a bad row, a deleted row and a bad reference.
    struct Fixed(u64);

    impl Source for Fixed {
        fn read(self, emit: &mut Emit<'_>) -> Result<(), SisError> {
            for i in 0..self.0 {
                emit(Item::Record {
                    origin: Some("results.csv"),
                    line: i + 2,
                    value: json!({"record_id": format!("r{i}"), "school_id": "s", "student_id": "x",
                        "course_code": "M", "quarter": "2026-Q3", "grade": "A"}),
                })?;
            }
            emit(Item::Bad {
                origin: Some("results.csv"),
                line: self.0 + 2,
                reason: "no grade".into(),
            })?;
            emit(Item::Deleted)?;
            emit(Item::BadReference {
                origin: "classes.csv",
                line: 3,
                reason: "unknown school".into(),
            })
        }
    }

    #[tokio::test]
    async fn import_stores_every_record_across_hand_overs_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("g.db").display());
        let store = Store::connect(&url).await.unwrap();
        let n = ITEMS_PER_SEND as u64 * 2 + 7;
        let mut progress = Vec::new();
        let report = import(&store, Fixed(n), |p| progress.push(p))
            .await
            .unwrap();
        assert_eq!(report.import.inserted, n);
        assert_eq!(
            report.import.lines,
            n + 2,
            "records, the bad row and the deleted row"
        );
        assert_eq!((report.deleted, report.bad_references), (1, 1));
        let bad: Vec<String> = report
            .import
            .bad_lines
            .iter()
            .map(|b| b.to_string())
            .collect();
        assert_eq!(
            bad,
            [
                format!("results.csv line {}: no grade", n + 2),
                "classes.csv line 3: unknown school".to_string()
            ]
        );
        assert!(progress.len() >= 3 && progress.is_sorted(), "{progress:?}");
        assert_eq!(progress.last(), Some(&(n + 2)));
        let again = import(&store, Fixed(n), |_| {}).await.unwrap();
        assert_eq!((again.import.inserted, again.import.unchanged), (0, n));
    }
}
