//! The grades source's one error type. Messages name the table, the index and the
//! operation, say what to do, and never carry an item's content.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The table, the index or the credentials are not what gradesync needs: no retry can
    /// help until someone changes the configuration.
    #[error("{0}")]
    Configuration(String),

    /// A call that failed after the SDK's own retries (throttling, a 5xx, the network):
    /// worth another attempt later.
    #[error(
        "DynamoDB {operation} on table {table} failed: {message}; check the endpoint \
         (AWS_ENDPOINT_URL, AWS_REGION), the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...) \
         and the table's capacity"
    )]
    Call {
        operation: &'static str,
        table: String,
        message: String,
    },

    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SourceError {
    /// True when another attempt later may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Configuration(_) => false,
            SourceError::Call { .. } => true,
            SourceError::Store(e) => !e.is_fatal(),
        }
    }
}
