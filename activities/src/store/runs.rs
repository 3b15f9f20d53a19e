//! The record of each quarterly run, and the rate-limit slots that every worker process
//! sharing the database draws from so together they stay under the API's request rate.

use gradesync_govapi::Quarter;
use sqlx::{Any, Transaction};

use super::batches::parse_quarter;
use super::model::{Now, QuarterRun, RateSlot, SlotReach};
use super::{Backend, Store, StoreError, now_ms};

/// How a run may end. `discrepancies` is the verdict of older builds, still accepted so a
/// worker finishing a run started by one is not refused.
const FINISHED: [&str; 5] = [
    "complete",
    "incomplete",
    "needs_correction",
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

    /// Claims a start time under the named limit of at most `capacity` requests in any
    /// `window_ms`. The limit has `capacity` lanes, each free again one window after its
    /// last start; the claim takes the earliest-free lane, so any window holds at most one
    /// start per lane. Starts are also spread `window_ms / capacity` apart: a window's
    /// requests leave one by one instead of as a burst, whose late arrivals at the API
    /// could crowd the next window (at 20/s a burst of 20 was seen as 28 in one second).
    ///
    /// One write transaction (the write lock is held from its first statement), so
    /// callers in any number of tasks, processes or hosts never share a lane slot. `now` is
    /// read once the lock is held: a claim that waited for another writer must not be
    /// handed a start that passed while it waited. [`Now::Store`] reads the database
    /// server's clock on PostgreSQL, so workers on hosts whose clocks disagree still cut
    /// starts on one clock. `reach` says which slots the caller takes: one too far ahead is
    /// left, and the answer is [`RateSlot::NotYet`] with the time to ask again.
    pub async fn claim_rate_slot(
        &self,
        name: &str,
        capacity: u32,
        window_ms: i64,
        now: Now,
        reach: SlotReach,
    ) -> Result<RateSlot, StoreError> {
        if window_ms < 0 || capacity == 0 {
            return Err(StoreError::InvalidArgument(
                "a rate limit needs at least one lane and a non-negative window".into(),
            ));
        }
        let mut tx = self.write_tx().await?;
        let now_ms = self.read_now(&mut tx, now).await?;
        insert_lanes(&mut tx, name, capacity).await?;
        let (lane, free_at, last_free_at): (i64, i64, i64) = sqlx::query_as(
            "SELECT lane, free_at_ms, (SELECT MAX(free_at_ms) FROM rate_lanes WHERE name = $1) \
             FROM rate_lanes WHERE name = $1 AND lane < $2 ORDER BY free_at_ms, lane LIMIT 1",
        )
        .bind(name)
        .bind(i64::from(capacity))
        .fetch_one(&mut *tx)
        .await?;
        // The latest start of any lane was one window before its lane frees again.
        let spaced = last_free_at - window_ms + window_ms / i64::from(capacity);
        let due = free_at.max(spaced);
        let slot = if now_ms - due <= reach.behind_ms {
            due
        } else {
            now_ms
        };
        if slot - now_ms > reach.ahead_ms {
            tx.commit().await?;
            return Ok(RateSlot::NotYet(slot));
        }
        sqlx::query("UPDATE rate_lanes SET free_at_ms = $1 WHERE name = $2 AND lane = $3")
            .bind(slot + window_ms)
            .bind(name)
            .bind(lane)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RateSlot::Granted(slot))
    }

    /// Moves a granted start that passed before its request could leave (the claim's
    /// commit or the caller's wake ran late) to now, provided no later start was claimed
    /// since: every other start is then earlier than ours and only grows further from it,
    /// and the next ones are cut from the new start. Returns the new start, or `None` when
    /// a later start exists and the slot is lost.
    pub async fn restart_rate_slot(
        &self,
        name: &str,
        window_ms: i64,
        granted: i64,
        now: Now,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.write_tx().await?;
        let now_ms = self.read_now(&mut tx, now).await?;
        if now_ms <= granted {
            return Ok(Some(granted));
        }
        let moved = sqlx::query(
            "UPDATE rate_lanes SET free_at_ms = $1 WHERE name = $2 AND free_at_ms = $3 \
             AND (SELECT MAX(free_at_ms) FROM rate_lanes WHERE name = $2) = $3",
        )
        .bind(now_ms + window_ms)
        .bind(name)
        .bind(granted + window_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((moved > 0).then_some(now_ms))
    }
}

impl Store {
    /// Now on the clock rate slots are cut on (see [`Now::Store`]), outside any
    /// transaction: for a gate to learn how far its host's clock is from it.
    pub async fn clock_ms(&self) -> Result<i64, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(now_ms()),
            Backend::Postgres => Ok(sqlx::query_scalar(DB_NOW).fetch_one(&self.pool).await?),
        }
    }

    /// What time it is on the clock rate slots are cut on: the database server's for
    /// PostgreSQL (`clock_timestamp()`, the time of this statement, not of the
    /// transaction's start), this host's for SQLite, which only one host opens.
    async fn read_now(
        &self,
        tx: &mut Transaction<'static, Any>,
        now: Now,
    ) -> Result<i64, StoreError> {
        match (now, self.backend) {
            (Now::At(ms), _) => Ok(ms),
            (Now::Store, Backend::Sqlite) => Ok(now_ms()),
            (Now::Store, Backend::Postgres) => {
                Ok(sqlx::query_scalar(DB_NOW).fetch_one(&mut **tx).await?)
            }
        }
    }
}

/// The PostgreSQL server's wall clock in Unix ms, at this statement (not the transaction's
/// start, which `now()` would give).
const DB_NOW: &str = "SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)";

/// Creates the lanes of a limit that are missing: on first use, or when the capacity grew
/// since the last run. One statement, as it runs on every claim.
async fn insert_lanes(
    tx: &mut Transaction<'static, Any>,
    name: &str,
    capacity: u32,
) -> Result<(), StoreError> {
    sqlx::query(
        "WITH RECURSIVE lanes (lane) AS \
           (SELECT 0 UNION ALL SELECT lane + 1 FROM lanes WHERE lane + 1 < $2) \
         INSERT INTO rate_lanes (name, lane, free_at_ms) SELECT $1, lane, 0 FROM lanes WHERE true \
         ON CONFLICT (name, lane) DO NOTHING",
    )
    .bind(name)
    .bind(i64::from(capacity))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
