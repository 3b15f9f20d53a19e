//! Everything gradesync does that touches the outside world.
//!
//! - [`store`]: the grades store (SQLite by default): records, batches, dead letters, runs,
//!   the cross-process rate slots; and the JSONL import.
//! - [`gov`]: the government API client: every HTTP answer becomes one decision here.
//! - [`acts`]: the Temporal activities (`QueryPending`, `PrepBatch`, `SendBatch`,
//!   `MarkSynced`, `ClientError`, `DeadLetter`, `Reconcile`, `DeadlineAtRisk`).
//! - [`alert`]: Slack-compatible webhooks for alerts and compliance reports.
//! - [`http`]: how HTTP clients are built (TLS provider).
//! - [`log_span`]: the ids every log line of an activity carries.
//! - [`metrics`]: gradesync's Prometheus series (outcomes, API answers, rate budget, ETA).
//! - [`settle`]: receipt lookups that settle a batch whose answer did not say whether the
//!   API applied it; [`redrive`]: a wave over the dead letters; [`rejection`]: what a 400
//!   naming records leaves for `ClientError`.
//! - [`report`]: the reconciliation report (JSON + CSV); [`html_report`]: its HTML page.
//! - [`model`]: the ids-and-counts values that cross Temporal payloads.
//!
//! Workflows (in `gradesync-workflows`) name these activities; nothing here depends on them.

pub mod acts;
pub mod alert;
pub mod answer_class;
pub mod clock;
pub mod drain;
pub mod gov;
pub mod html_report;
pub mod http;
pub mod log_span;
pub mod metrics;
pub mod model;
pub mod rate;
pub mod read_ahead;
pub mod redrive;
pub mod rejection;
pub mod report;
pub mod settle;
pub mod source;
pub mod store;
pub mod svg_chart;
pub mod utc;
