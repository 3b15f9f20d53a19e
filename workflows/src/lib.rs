//! The deterministic half of gradesync: Temporal workflows only, no I/O, no clocks, no
//! randomness. Every side effect is an activity from `gradesync-activities`.
//!
//! - [`QuarterlySync`]: one quarter of every school; enforces the 47 h deadline, fans out one
//!   [`SchoolSync`] child per school, then reconciles.
//! - [`SchoolSync`]: PrepBatch -> SendBatch -> MarkSynced / ClientError / DeadLetter for one
//!   school, continuing as new so its history stays bounded.
//! - [`backoff`]: the Retry5s -> Retry15s -> Retry45s steps as one visible list.
//! - [`eta`]: the measured rate and projected finish behind the early deadline alert.
//! - [`search_attributes`]: quarter, phase, verdict and counts for the Web UI's list.

pub mod backoff;
pub mod eta;
mod options;
pub mod quarterly;
pub mod redrive;
pub mod school;
pub mod search_attributes;
mod timers;

pub use quarterly::QuarterlySync;
pub use school::{SchoolInput, SchoolSync};

/// Workflow type names as the Web UI and `temporal workflow start --type` see them.
pub const QUARTERLY_SYNC: &str = "QuarterlySync";
pub const SCHOOL_SYNC: &str = "SchoolSync";
