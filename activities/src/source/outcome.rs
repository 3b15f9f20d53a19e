//! What the source's calls report, the same with or without the `dynamodb` feature.

use serde::{Deserialize, Serialize};

use crate::store::ImportReport;

/// What one read of the pending items did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pulled {
    /// Items read (as `lines`), stored new, changed, unchanged, and the bad ones by key.
    pub import: ImportReport,
    /// Pending items whose record the API had already confirmed, marked synced now.
    pub marked: u64,
    /// Items that are no valid record, kept as rejected records of the quarter.
    pub rejected: u64,
}

/// What one MarkSynced did in the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marked {
    /// Items marked synced by this call.
    pub marked: u64,
    /// Items already synced with what was sent (an earlier attempt, or another batch).
    pub already: u64,
    /// Items whose record changed since it was sent: back to pending in the store.
    pub requeued: u64,
    /// Records with no item in the table (deleted, or imported from elsewhere).
    pub missing: u64,
    /// Items left as they are: another status than pending, or no longer a valid record.
    pub left: u64,
}

/// What `gradesync check` says of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStatus {
    pub table_status: String,
    pub index_status: String,
    pub items: Option<i64>,
}
