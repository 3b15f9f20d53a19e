//! The status class of the API's answer to one SendBatch, as the HTML report plots them
//! per minute: `2xx`, `4xx`, `429`, `5xx`, `timeout` (no answer: timed out or the
//! connection broke) and `other` (1xx, 3xx). Counted per attempt, by the answer that
//! decided it (after the client's one token refresh or receipt lookup).

use crate::gov::{RetryReason, SendOutcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnswerClass {
    Success,
    ClientError,
    RateLimited,
    ServerError,
    NoAnswer,
    Other,
}

impl AnswerClass {
    /// Every class, in the order the report stacks and lists them.
    pub const ALL: [AnswerClass; 6] = [
        AnswerClass::Success,
        AnswerClass::ClientError,
        AnswerClass::RateLimited,
        AnswerClass::ServerError,
        AnswerClass::NoAnswer,
        AnswerClass::Other,
    ];

    /// The class of an HTTP status.
    pub fn of_status(status: u16) -> AnswerClass {
        match status {
            200..=299 => AnswerClass::Success,
            429 => AnswerClass::RateLimited,
            400..=499 => AnswerClass::ClientError,
            500..=599 => AnswerClass::ServerError,
            _ => AnswerClass::Other,
        }
    }

    /// The class of the answer behind a send's outcome.
    pub fn of_outcome(outcome: &SendOutcome) -> AnswerClass {
        match outcome {
            SendOutcome::Sent { .. } => AnswerClass::Success,
            SendOutcome::Retry { reason, .. } => match *reason {
                RetryReason::Unavailable => AnswerClass::ServerError,
                RetryReason::ServerError(s)
                | RetryReason::BadAnswer(s)
                | RetryReason::Refused(s) => AnswerClass::of_status(s),
                RetryReason::RateLimited => AnswerClass::RateLimited,
                RetryReason::InFlight | RetryReason::Forbidden => AnswerClass::ClientError,
                RetryReason::Timeout | RetryReason::ConnectionLost => AnswerClass::NoAnswer,
            },
            SendOutcome::Rejected { status, .. } | SendOutcome::TokenRefused { status, .. } => {
                AnswerClass::of_status(*status)
            }
            SendOutcome::TooLarge { .. } | SendOutcome::AuthFailed { .. } => {
                AnswerClass::ClientError
            }
        }
    }

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerClass::Success => "2xx",
            AnswerClass::ClientError => "4xx",
            AnswerClass::RateLimited => "429",
            AnswerClass::ServerError => "5xx",
            AnswerClass::NoAnswer => "timeout",
            AnswerClass::Other => "other",
        }
    }

    /// The class stored under `name`; an unknown name (a newer build's) is `Other`.
    pub fn parse(name: &str) -> AnswerClass {
        AnswerClass::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .unwrap_or(AnswerClass::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_in_their_class() {
        assert_eq!(AnswerClass::of_status(201), AnswerClass::Success);
        assert_eq!(AnswerClass::of_status(429), AnswerClass::RateLimited);
        assert_eq!(AnswerClass::of_status(400), AnswerClass::ClientError);
        assert_eq!(AnswerClass::of_status(503), AnswerClass::ServerError);
        assert_eq!(AnswerClass::of_status(302), AnswerClass::Other);
        let timeout = SendOutcome::Retry {
            reason: RetryReason::Timeout,
            after: None,
            excerpt: None,
        };
        assert_eq!(AnswerClass::of_outcome(&timeout), AnswerClass::NoAnswer);
        let throttled = SendOutcome::Retry {
            reason: RetryReason::RateLimited,
            after: None,
            excerpt: None,
        };
        assert_eq!(
            AnswerClass::of_outcome(&throttled),
            AnswerClass::RateLimited
        );
        let unavailable = SendOutcome::Retry {
            reason: RetryReason::Unavailable,
            after: None,
            excerpt: None,
        };
        assert_eq!(
            AnswerClass::of_outcome(&unavailable),
            AnswerClass::ServerError
        );
    }

    #[test]
    fn names_round_trip() {
        for c in AnswerClass::ALL {
            assert_eq!(AnswerClass::parse(c.as_str()), c);
        }
        assert_eq!(AnswerClass::parse("7xx"), AnswerClass::Other);
    }
}
