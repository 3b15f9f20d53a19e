//! Reconcile's reports, kept in the database so any host can show or export them: a file
//! written on whichever worker ran Reconcile is out of reach of the others. Each report is
//! stored whole (its JSON and CSV text, byte for byte as built) under its quarter and
//! stamp; Temporal may run Reconcile again for the same round, which rewrites the same row.

use gradesync_govapi::Quarter;

use crate::model::Verdict;

use super::batches::parse_quarter;
use super::model::{ReportInfo, StoredReport};
use super::{Store, StoreError};

type InfoRow = (String, String, String, String, i64);
type ReportRow = (String, String, String, String, i64, String, String);

impl Store {
    /// Keeps `report`. Saving a report under a quarter and stamp already stored replaces
    /// it, so a retried Reconcile neither fails nor leaves two copies.
    pub async fn save_report(&self, report: &StoredReport) -> Result<(), StoreError> {
        if let Err(e) = report.verdict.parse::<Verdict>() {
            return Err(StoreError::InvalidArgument(format!(
                "a report's verdict: {e}"
            )));
        }
        if report.stamp.is_empty() {
            return Err(StoreError::InvalidArgument(
                "a report needs a stamp to be stored under".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO reports (quarter, stamp, workflow_id, verdict, generated_at, json, csv) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (quarter, stamp) DO UPDATE SET workflow_id = excluded.workflow_id, \
               verdict = excluded.verdict, generated_at = excluded.generated_at, \
               json = excluded.json, csv = excluded.csv",
        )
        .bind(report.quarter.to_string())
        .bind(&report.stamp)
        .bind(&report.workflow_id)
        .bind(&report.verdict)
        .bind(report.generated_at)
        .bind(&report.json)
        .bind(&report.csv)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The quarter's newest report (by the time it was built, then by stamp), if any.
    pub async fn latest_report(
        &self,
        quarter: &Quarter,
    ) -> Result<Option<StoredReport>, StoreError> {
        let row: Option<ReportRow> = sqlx::query_as(
            "SELECT quarter, stamp, workflow_id, verdict, generated_at, json, csv FROM reports \
             WHERE quarter = $1 ORDER BY generated_at DESC, stamp DESC LIMIT 1",
        )
        .bind(quarter.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(stored_report).transpose()
    }

    /// The quarter's report stored under `stamp`, if any.
    pub async fn report(
        &self,
        quarter: &Quarter,
        stamp: &str,
    ) -> Result<Option<StoredReport>, StoreError> {
        let row: Option<ReportRow> = sqlx::query_as(
            "SELECT quarter, stamp, workflow_id, verdict, generated_at, json, csv FROM reports \
             WHERE quarter = $1 AND stamp = $2",
        )
        .bind(quarter.to_string())
        .bind(stamp)
        .fetch_optional(&self.pool)
        .await?;
        row.map(stored_report).transpose()
    }

    /// The quarter's reports without their bodies, oldest first.
    pub async fn reports(&self, quarter: &Quarter) -> Result<Vec<ReportInfo>, StoreError> {
        let rows: Vec<InfoRow> = sqlx::query_as(
            "SELECT quarter, stamp, workflow_id, verdict, generated_at FROM reports \
             WHERE quarter = $1 ORDER BY generated_at, stamp",
        )
        .bind(quarter.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(q, stamp, workflow_id, verdict, generated_at)| {
                Ok(ReportInfo {
                    quarter: parse_quarter(&q)?,
                    stamp,
                    workflow_id,
                    verdict,
                    generated_at,
                })
            })
            .collect()
    }
}

fn stored_report(
    (q, stamp, workflow_id, verdict, generated_at, json, csv): ReportRow,
) -> Result<StoredReport, StoreError> {
    Ok(StoredReport {
        quarter: parse_quarter(&q)?,
        stamp,
        workflow_id,
        verdict,
        generated_at,
        json,
        csv,
    })
}
