//! The government grades API as both sides see it.
//!
//! - [`contract`]: the wire shapes, limits and the record hash (one definition for the
//!   client and the simulator).
//! - [`quarter`]: `YYYY-Qn` parsing and the quarter a scheduled run syncs.
//! - [`sim`]: a real HTTP server implementing the contract, with fault injection, used by
//!   the demo and the tests (`gradesync gov-sim`).

pub mod contract;
pub mod quarter;
pub mod sim;

pub use quarter::Quarter;
