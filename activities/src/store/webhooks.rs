//! Webhook POSTs that failed after their retries. The run does not wait on a webhook;
//! what was not delivered is kept here for the report and the operator.

use gradesync_govapi::Quarter;

use super::model::WebhookFailure;
use super::{MAX_TEXT, Store, StoreError, now_ms, truncate};

impl Store {
    /// Notes that the webhook `hook` (alerts, compliance, ...) could not be delivered for
    /// the quarter. `error` must not carry the webhook's URL or record content.
    pub async fn record_webhook_failure(
        &self,
        quarter: &Quarter,
        hook: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhook_failures (quarter, hook, error, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(quarter.to_string())
        .bind(truncate(hook, MAX_TEXT))
        .bind(truncate(error, MAX_TEXT))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The quarter's webhook failures, oldest first.
    pub async fn webhook_failures(
        &self,
        quarter: &Quarter,
    ) -> Result<Vec<WebhookFailure>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT hook, error, created_at FROM webhook_failures WHERE quarter = $1 \
             ORDER BY created_at, id",
        )
        .bind(quarter.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(hook, error, created_at)| WebhookFailure {
                hook,
                error,
                created_at,
            })
            .collect())
    }
}
