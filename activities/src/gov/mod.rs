//! The client of the government grades API: OAuth client-credentials tokens, paced
//! requests, and the one place (`GovClient::send_batch`) where HTTP answers to a batch
//! become decisions the workflow acts on. The wire shapes live in
//! `gradesync_govapi::contract`, shared with the simulator.

mod client;
mod credentials;
pub(crate) mod departure;
mod error;
mod excerpt;
mod outcome;
mod rate_gate;
mod tls;

pub use client::{GovClient, GovClientConfig, MAX_ANSWER_BYTES};
pub use credentials::{Credentials, Secret};
pub use error::GovError;
pub use outcome::{RetryReason, SendOutcome, parse_retry_after};
pub use rate_gate::{Departure, Granted, NoGate, RateGate, SpacingGate};
pub use tls::{GovTls, PemFile, TlsFileError, TlsProblem};
