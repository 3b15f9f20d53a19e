//! The `gradesync` binary's library: configuration, the Temporal connection, the worker and
//! the CLI commands. `main.rs` only parses flags and maps errors to exit codes.
//!
//! Where things live:
//! - `govapi/`: the government API contract and its simulator (`gradesync gov-sim`).
//! - `activities/`: all I/O (store, API client, webhooks, reports) and the activities.
//! - `workflows/`: the deterministic workflows (`QuarterlySync`, `SchoolSync`).
//! - here: [`settings`] (flags and environment), [`temporal`] (client connection),
//!   [`worker`] (the two task-queue workers), [`commands`] (one module per subcommand),
//!   [`sis`] (reading CSV files and OneRoster exports for `gradesync import`).

pub mod cli;
pub mod commands;
pub mod datagen;
pub mod devserver;
pub mod errors;
pub mod ops;
pub mod secret_file;
pub mod settings;
pub mod sis;
pub mod temporal;
pub mod worker;
