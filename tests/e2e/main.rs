//! End-to-end tests: real workflows on a real Temporal dev server, a real store (SQLite,
//! or PostgreSQL in the second pass of `scripts/test.sh`) and the government API simulator
//! over loopback. Each test asserts what the API's ledger and the store say, never what
//! the code intended.

mod cli;
mod corrections;
mod durability;
mod dynamodb;
mod eta;
mod faults;
mod gov_tls;
mod helpers;
mod history;
mod loaded;
mod moto;
mod ops;
mod plan;
mod postgres;
mod report;
mod secrets;
mod sis;
mod sync;
mod temporal_tls;
mod verdict;
mod webui;
