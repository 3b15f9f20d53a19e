//! User-facing failures of the CLI, each with an exit code, so scripts can tell "fix your
//! input" from "a service is down" from "the run found problems".

/// A failure the user can act on; the message reads after "gradesync: ".
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flags or input: fix the command line or the file.
    #[error("{0}")]
    Usage(String),
    /// Temporal, the database or the API did not answer: start it or fix its address.
    #[error("{0}")]
    Unreachable(String),
    /// The command ran but the outcome needs attention (bad import lines, discrepancies).
    #[error("{0}")]
    Attention(String),
    /// Anything else, with its context chain.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) => 3,
            CliError::Attention(_) => 4,
            CliError::Other(_) => 1,
        }
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;
