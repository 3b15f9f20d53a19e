//! The record of each quarterly run: when it started, under which workflow, and how it
//! ended.

use gradesync_govapi::Quarter;

use super::batches::parse_quarter;
use super::model::QuarterRun;
use super::{Store, StoreError, now_ms};

/// How a run may end. `discrepancies` is the verdict of older builds, still accepted so a
/// worker finishing a run started by one is not refused.
const FINISHED: [&str; 6] = [
    "complete",
    "incomplete",
    "needs_correction",
    "empty",
    "failed",
    "discrepancies",
];

type RunRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
);

impl Store {
    /// Marks the quarter's run as running under `workflow_id`. Calling it again from the
    /// same running workflow keeps the original start time; a new workflow starts afresh.
    pub async fn start_run(&self, quarter: &Quarter, workflow_id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO quarter_runs (quarter, workflow_id, status, started_at) \
             VALUES ($1, $2, 'running', $3) \
             ON CONFLICT (quarter) DO UPDATE SET \
               started_at = CASE WHEN quarter_runs.workflow_id = excluded.workflow_id \
                 AND quarter_runs.status = 'running' \
                 THEN quarter_runs.started_at ELSE excluded.started_at END, \
               workflow_id = excluded.workflow_id, status = 'running', \
               report_path = NULL, summary = NULL, finished_at = NULL",
        )
        .bind(quarter.to_string())
        .bind(workflow_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records how the quarter's run ended: `status` is one of complete, incomplete,
    /// needs_correction or failed (discrepancies for older callers), `summary_json` a JSON
    /// document of counts.
    pub async fn finish_run(
        &self,
        quarter: &Quarter,
        status: &str,
        report_path: Option<&str>,
        summary_json: &str,
    ) -> Result<(), StoreError> {
        if !FINISHED.contains(&status) {
            return Err(StoreError::InvalidArgument(format!(
                "a run finishes as one of {FINISHED:?}, not `{status}`"
            )));
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(summary_json).is_err() {
            return Err(StoreError::InvalidArgument(
                "the run summary must be JSON".into(),
            ));
        }
        let changed = sqlx::query(
            "UPDATE quarter_runs SET status = $1, report_path = $2, summary = $3, finished_at = $4 \
             WHERE quarter = $5",
        )
        .bind(status)
        .bind(report_path)
        .bind(summary_json)
        .bind(now_ms())
        .bind(quarter.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::RunNotStarted(quarter.to_string()));
        }
        Ok(())
    }

    /// The quarter's run, if one was ever started.
    pub async fn run(&self, quarter: &Quarter) -> Result<Option<QuarterRun>, StoreError> {
        let row: Option<RunRow> = sqlx::query_as(
            "SELECT quarter, workflow_id, status, report_path, summary, started_at, finished_at \
             FROM quarter_runs WHERE quarter = $1",
        )
        .bind(quarter.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(
            |(q, workflow_id, status, report_path, summary, started_at, finished_at)| {
                Ok(QuarterRun {
                    quarter: parse_quarter(&q)?,
                    workflow_id,
                    status,
                    report_path,
                    summary,
                    started_at,
                    finished_at,
                })
            },
        )
        .transpose()
    }

    /// The quarters whose run is going on, oldest first: what the worker's metrics watch.
    pub async fn running_runs(&self) -> Result<Vec<(Quarter, String)>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT quarter, workflow_id FROM quarter_runs WHERE status = 'running' \
             ORDER BY started_at, quarter",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(q, workflow_id)| Ok((parse_quarter(&q)?, workflow_id)))
            .collect()
    }
}
