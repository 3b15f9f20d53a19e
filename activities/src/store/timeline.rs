//! What happened when during a quarter, for the HTML report's plots: the API's answers to
//! SendBatch per minute and status class (counted as they come, by whichever worker sent),
//! and when records were confirmed (the time MarkSynced set them synced).

use gradesync_govapi::Quarter;

use super::{Store, StoreError, count, now_ms};

/// Answers of one status class in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswersInMinute {
    /// Start of the minute, Unix ms.
    pub minute_ms: i64,
    pub class: String,
    pub answers: u64,
}

impl Store {
    /// Adds one answer of `class` to the current minute of the quarter.
    pub async fn count_api_answer(&self, quarter: &Quarter, class: &str) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO api_answers (quarter, minute_ms, class, answers) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (quarter, minute_ms, class) \
             DO UPDATE SET answers = api_answers.answers + 1",
        )
        .bind(quarter.to_string())
        .bind(now - now.rem_euclid(60_000))
        .bind(class)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The quarter's answers per minute and class, oldest first.
    pub async fn api_answers(&self, quarter: &Quarter) -> Result<Vec<AnswersInMinute>, StoreError> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT minute_ms, class, answers FROM api_answers WHERE quarter = $1 \
             ORDER BY minute_ms, class",
        )
        .bind(quarter.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(minute_ms, class, answers)| AnswersInMinute {
                minute_ms,
                class,
                answers: count(answers),
            })
            .collect())
    }

    /// The quarter's synced records by the second they were confirmed (Unix seconds,
    /// records), oldest first.
    pub async fn confirmed_per_second(
        &self,
        quarter: &Quarter,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT updated_at / 1000, COUNT(*) FROM grades \
             WHERE quarter = $1 AND status = 'synced' GROUP BY updated_at / 1000 ORDER BY 1",
        )
        .bind(quarter.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(s, n)| (s, count(n))).collect())
    }
}
