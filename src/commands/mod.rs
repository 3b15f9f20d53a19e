//! One module per `gradesync` subcommand.

pub mod check;
pub mod demo;
pub mod dlq;
pub mod import;
pub mod progress;
pub mod report;
pub mod schedule;
pub mod setup;
pub mod sync;
