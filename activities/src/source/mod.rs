//! Where grades come from besides an import file: the Step Functions design's DynamoDB
//! table (`dynamodb://TABLE?index=GSI_NAME`). QueryPending reads its pending items into the
//! store; MarkSynced marks them synced there once the API confirmed them. The store stays
//! the record of batches, attempts and dead letters; the table keeps the state the school's
//! other systems read.
//!
//! Built with the `dynamodb` feature (on by default); without it a source URL is refused
//! with a message that says so.

#[cfg(feature = "dynamodb")]
mod dynamo;
mod error;
mod outcome;
pub mod url;

pub use error::SourceError;
pub use outcome::{Marked, Pulled, TableStatus};
pub use url::{BadSourceUrl, DynamoTarget};

#[cfg(feature = "dynamodb")]
pub use dynamo::DynamoSource as Source;

#[cfg(not(feature = "dynamodb"))]
pub use absent::Source;

/// The same API in a build without the AWS SDK: nothing can be connected.
#[cfg(not(feature = "dynamodb"))]
mod absent {
    use gradesync_govapi::Quarter;

    use super::{DynamoTarget, Marked, Pulled, SourceError, TableStatus};
    use crate::store::{SentRecord, Store};

    #[derive(Debug, Clone)]
    pub struct Source {
        never: std::convert::Infallible,
    }

    impl Source {
        pub async fn connect(target: DynamoTarget) -> Result<Self, SourceError> {
            Err(SourceError::Configuration(format!(
                "this gradesync was built without DynamoDB support, so it cannot read {}; \
                 build it with the default features (or --features dynamodb)",
                target.url()
            )))
        }

        pub fn target(&self) -> &DynamoTarget {
            match self.never {}
        }

        pub async fn status(&self) -> Result<TableStatus, SourceError> {
            match self.never {}
        }

        pub async fn pull_pending(
            &self,
            _: &Store,
            _: Option<&Quarter>,
            _: bool,
            _: impl FnMut(u64),
        ) -> Result<Pulled, SourceError> {
            match self.never {}
        }

        pub async fn mark_synced(
            &self,
            _: &Store,
            _: &[SentRecord],
        ) -> Result<Marked, SourceError> {
            match self.never {}
        }
    }
}
