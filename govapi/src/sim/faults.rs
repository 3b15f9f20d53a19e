//! What can go wrong, and the dice that decide when: the fault settings of the simulator
//! and the per-request roll drawn from one seeded generator, so that a given sequence of
//! requests meets the same faults on every run with the same seed.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::SimError;

/// The faults the simulator injects. `Default` is a well-behaved API that still enforces
/// the real rate limit (2 requests per second); [`Faults::none`] lifts even that.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Faults {
    /// Seeds every random fault decision.
    pub seed: u64,
    /// Requests admitted in any `rate_window_ms` sliding window; 0 = unlimited.
    pub rate_limit: u32,
    pub rate_window_ms: u64,
    /// Every `/v1` request waits `latency_ms ± latency_jitter_ms` (uniform).
    pub latency_ms: u64,
    pub latency_jitter_ms: u64,
    /// Probability that a batch POST is answered 503.
    pub p_503: f64,
    /// Probability that a batch POST is answered 500, 502 or 504.
    pub p_5xx: f64,
    /// Probability that a batch POST is answered `403 Forbidden` with an HTML page, as a
    /// gateway in front of the API does: nothing looked at, nothing committed.
    pub p_403_html: f64,
    /// Probability that a batch POST is answered 400 with a problem whose `errors[]` names
    /// a record id that is not in the batch: nothing committed.
    pub p_400_unnamed: f64,
    /// Probability that a receipt lookup (`GET /v1/grade-batches/{id}`) is answered 503,
    /// so the client cannot tell whether the batch was committed.
    pub p_lookup_503: f64,
    /// `Retry-After` seconds sent with 503s, when set.
    pub retry_after_secs: Option<u64>,
    /// When > 0, every `/v1` request is answered 503 for this long after the faults are set.
    pub outage_ms: u64,
    /// Probability that a committed batch is answered only after `hang_ms`.
    pub p_hang: f64,
    pub hang_ms: u64,
    /// Probability that a committed batch gets no answer: the connection is closed.
    pub p_commit_drop: f64,
    /// Fraction of the records of an accepted batch that are silently not stored.
    pub p_silent_loss: f64,
    /// Records matching any rule make their batch fail with 400.
    pub reject_rules: Vec<RejectRule>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            seed: 0,
            rate_limit: 2,
            rate_window_ms: 1000,
            latency_ms: 0,
            latency_jitter_ms: 0,
            p_503: 0.0,
            p_5xx: 0.0,
            p_403_html: 0.0,
            p_400_unnamed: 0.0,
            p_lookup_503: 0.0,
            retry_after_secs: None,
            outage_ms: 0,
            p_hang: 0.0,
            hang_ms: 30_000,
            p_commit_drop: 0.0,
            p_silent_loss: 0.0,
            reject_rules: Vec::new(),
        }
    }
}

/// A record whose `field` equals `equals` is rejected with `message`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RejectRule {
    pub field: String,
    pub equals: String,
    #[serde(default)]
    pub message: String,
}

impl RejectRule {
    /// Parses the CLI form `FIELD=VALUE`.
    pub fn parse(spec: &str) -> Result<Self, SimError> {
        match spec.split_once('=') {
            Some((field, equals)) if !field.is_empty() => Ok(Self {
                field: field.to_string(),
                equals: equals.to_string(),
                message: String::new(),
            }),
            _ => Err(SimError::BadRejectRule(spec.to_string())),
        }
    }

    /// Whether the record carries the rule's value; non-string values compare by their JSON.
    pub fn matches(&self, record: &Value) -> bool {
        match record.get(&self.field) {
            Some(Value::String(s)) => *s == self.equals,
            Some(other) => serde_json::from_str::<Value>(&self.equals).is_ok_and(|v| v == *other),
            None => false,
        }
    }

    pub fn message(&self) -> String {
        if self.message.is_empty() {
            format!(
                "rejected by the registry: `{}` is `{}`",
                self.field, self.equals
            )
        } else {
            self.message.clone()
        }
    }
}

impl Faults {
    /// No faults at all, not even the rate limit.
    pub fn none() -> Self {
        Self {
            rate_limit: 0,
            ..Self::default()
        }
    }

    /// Checks that every probability is within [0, 1].
    pub fn validate(&self) -> Result<(), SimError> {
        let probabilities = [
            ("p_503", self.p_503),
            ("p_5xx", self.p_5xx),
            ("p_403_html", self.p_403_html),
            ("p_400_unnamed", self.p_400_unnamed),
            ("p_lookup_503", self.p_lookup_503),
            ("p_hang", self.p_hang),
            ("p_commit_drop", self.p_commit_drop),
            ("p_silent_loss", self.p_silent_loss),
        ];
        for (name, value) in probabilities {
            if !(0.0..=1.0).contains(&value) {
                return Err(SimError::BadProbability { name, value });
            }
        }
        if self.rate_limit > 0 && self.rate_window_ms == 0 {
            return Err(SimError::ZeroRateWindow);
        }
        Ok(())
    }

    pub(crate) fn rng(&self) -> StdRng {
        StdRng::seed_from_u64(self.seed)
    }

    /// The wait of one request given its roll.
    pub(crate) fn latency(&self, roll: &Roll) -> Duration {
        let offset = (roll.jitter * self.latency_jitter_ms as f64).round() as i64;
        let ms = (self.latency_ms as i64).saturating_add(offset).max(0);
        Duration::from_millis(ms as u64)
    }
}

/// The random draws of one request. Every API request takes exactly one roll, whatever
/// happens to it, so the stream of rolls depends only on the order of arrivals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Roll {
    pub p503: f64,
    pub p5xx: f64,
    pub which_5xx: u8,
    /// In [-1, 1): scales `latency_jitter_ms`.
    pub jitter: f64,
    pub hang: f64,
    pub drop: f64,
    /// Seeds the per-record silent-loss draws of the batch.
    pub loss_seed: u64,
    pub p403: f64,
    pub p400: f64,
}

impl Roll {
    pub fn draw(rng: &mut StdRng) -> Self {
        Self {
            p503: rng.random(),
            p5xx: rng.random(),
            which_5xx: rng.random_range(0..3),
            jitter: rng.random_range(-1.0..1.0),
            hang: rng.random(),
            drop: rng.random(),
            loss_seed: rng.random(),
            p403: rng.random(),
            p400: rng.random(),
        }
    }

    pub fn server_error(&self) -> u16 {
        [500, 502, 504][usize::from(self.which_5xx)]
    }

    /// Which of `n` records are silently lost, given the loss probability.
    pub fn lost(&self, n: usize, p: f64) -> Vec<bool> {
        let mut rng = StdRng::seed_from_u64(self.loss_seed);
        (0..n).map(|_| rng.random::<f64>() < p).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rolls_are_reproducible_from_the_seed() {
        let f = Faults {
            seed: 7,
            ..Faults::default()
        };
        let (mut a, mut b) = (f.rng(), f.rng());
        for _ in 0..10 {
            assert_eq!(Roll::draw(&mut a), Roll::draw(&mut b));
        }
    }

    #[test]
    fn latency_stays_within_jitter() {
        let f = Faults {
            latency_ms: 100,
            latency_jitter_ms: 20,
            ..Faults::default()
        };
        let mut rng = f.rng();
        for _ in 0..100 {
            let ms = f.latency(&Roll::draw(&mut rng)).as_millis();
            assert!((80..=120).contains(&ms), "{ms}");
        }
    }

    #[test]
    fn rules_match_strings_and_json() {
        let rule = RejectRule::parse("grade=F").unwrap();
        assert!(rule.matches(&json!({"grade": "F"})));
        assert!(!rule.matches(&json!({"grade": "A"})));
        assert!(
            RejectRule::parse("score=9.5")
                .unwrap()
                .matches(&json!({"score": 9.5}))
        );
        assert!(RejectRule::parse("=x").is_err());
        assert!(RejectRule::parse("nothing").is_err());
    }

    #[test]
    fn validation_names_the_bad_probability() {
        let f = Faults {
            p_hang: 1.5,
            ..Faults::default()
        };
        assert!(f.validate().unwrap_err().to_string().contains("p_hang"));
        assert!(Faults::default().validate().is_ok());
    }
}
