//! Client-side pacing of requests to the government API. The API counts every request
//! (token, POST and GET alike) against one small per-client budget and answers 429 past
//! it, so the client asks a `RateGate` for a start slot before each request instead of
//! finding the limit by hitting it. `SpacingGate` paces one process; a gate shared by
//! several worker processes implements the same trait.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

/// Hands out permission to start one HTTP request. `acquire` resolves when the caller may
/// start; it cannot fail, so a gate backed by shared storage must ride out its own errors
/// (wait and retry) rather than let requests through unpaced.
pub trait RateGate: Send + Sync + Debug {
    /// Resolves when the caller may start. Returns the start (ms since the epoch) when the
    /// gate cuts later starts from it, so the caller can report when the request really
    /// left.
    fn acquire(&self) -> BoxFuture<'_, Option<i64>>;

    /// The request given `start` left at `left_at_ms` (its head handed to the socket).
    /// A gate whose later starts assume it left on time may move them.
    fn departed(&self, start: i64, left_at_ms: i64) -> BoxFuture<'_, ()> {
        let _ = (start, left_at_ms);
        Box::pin(async {})
    }
}

/// No pacing at all: for tests that want to provoke 429s, and for unlimited endpoints.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGate;

impl RateGate for NoGate {
    fn acquire(&self) -> BoxFuture<'_, Option<i64>> {
        Box::pin(async { None })
    }
}

/// Start slots spaced `1/rate + guard` apart, handed out in call order. Spacing (rather
/// than a token bucket) means no burst ever starts, so at most `rate` requests start in
/// any one-second window however many tasks call concurrently; `guard` absorbs the jitter
/// between our start and the server's clock.
#[derive(Debug)]
pub struct SpacingGate {
    interval: Duration,
    next_slot: Mutex<Option<Instant>>,
}

impl SpacingGate {
    /// # Panics
    /// If `rate_per_sec` is not a positive finite number: that is a configuration bug.
    pub fn new(rate_per_sec: f64, guard: Duration) -> Self {
        assert!(
            rate_per_sec.is_finite() && rate_per_sec > 0.0,
            "rate_per_sec must be a positive number, got {rate_per_sec}"
        );
        Self {
            interval: Duration::from_secs_f64(1.0 / rate_per_sec) + guard,
            next_slot: Mutex::new(None),
        }
    }

    /// Time between two consecutive start slots.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Reserves the next free slot. The lock is held only for this arithmetic, never
    /// across an await, so a cancelled caller merely leaves its slot unused.
    fn reserve(&self) -> Instant {
        let now = Instant::now();
        let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + self.interval);
        slot
    }
}

impl RateGate for SpacingGate {
    fn acquire(&self) -> BoxFuture<'_, Option<i64>> {
        let slot = self.reserve();
        Box::pin(async move {
            tokio::time::sleep_until(slot).await;
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_get_evenly_spaced_slots() {
        let gate = Arc::new(SpacingGate::new(2.0, Duration::from_millis(50)));
        let start = Instant::now();
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move {
                    gate.acquire().await;
                    Instant::now() - start
                })
            })
            .collect();
        let mut offsets = Vec::new();
        for t in tasks {
            offsets.push(t.await.unwrap());
        }
        offsets.sort();
        let expected: Vec<_> = (0..5).map(|i| Duration::from_millis(550 * i)).collect();
        assert_eq!(offsets, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_gate_lets_the_next_request_start_at_once() {
        let gate = SpacingGate::new(2.0, Duration::ZERO);
        gate.acquire().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = Instant::now();
        gate.acquire().await;
        assert_eq!(Instant::now(), before);
    }

    #[test]
    #[should_panic(expected = "positive")]
    fn zero_rate_is_a_bug() {
        let _ = SpacingGate::new(0.0, Duration::ZERO);
    }
}
