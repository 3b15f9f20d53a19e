//! Client-side pacing of requests to the government API. The API counts every request
//! (token, POST and GET alike) against one small per-client budget and answers 429 past
//! it, so the client asks a `RateGate` for a start slot before each request instead of
//! finding the limit by hitting it, and tells the gate when that request really left.
//! `SpacingGate` paces one process; a gate shared by several worker processes implements
//! the same trait.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

/// Hands out permission to start one HTTP request. `acquire` resolves when the caller may
/// start; it cannot fail, so a gate backed by shared storage must ride out its own errors
/// (wait and retry) rather than let requests through unpaced.
pub trait RateGate: Send + Sync + Debug {
    /// Resolves when the caller may start a request that leaves within `leave_within` of
    /// the start or not at all. A gate that cuts later starts from this one returns it, and
    /// must then hear what became of the request ([`RateGate::departed`]): until it does,
    /// later starts that depend on it wait, at most until the request's deadline.
    fn acquire(&self, leave_within: Duration) -> BoxFuture<'_, Option<Granted>>;

    /// What became of the request `granted` was for. A gate whose later starts wait for it
    /// cuts them from when it really left.
    fn departed(&self, granted: Granted, departure: Departure) -> BoxFuture<'_, ()> {
        let _ = (granted, departure);
        Box::pin(async {})
    }
}

/// A start a gate granted, to be handed back with what became of its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// Which of the gate's lanes the start holds.
    pub lane: u32,
    /// The start, in ms since the epoch on the gate's clock.
    pub start_ms: i64,
    /// The request leaves by then or never (ms on the gate's clock): a gate that has not
    /// heard from it counts it as leaving then.
    pub departs_by_ms: i64,
    /// The same deadline on this host's monotonic clock: a request that has not left when
    /// it comes must not leave at all.
    pub leave_by: Instant,
}

/// What became of a granted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// Its head went to the socket then: ms since the epoch on this host's clock (which
    /// may be off; the gate converts it to its own).
    Left { at_ms: i64 },
    /// It never left (the slot was given up, or the connection failed first).
    NotSent,
}

/// A granted start while its request is being made, so that it is answered for even when
/// the request never goes: dropped unspent (a slot given up, a caller cancelled before
/// sending), it tells the gate that nothing left.
pub(crate) struct HeldSlot {
    gate: Arc<dyn RateGate>,
    granted: Option<Granted>,
}

impl HeldSlot {
    /// Waits for a start from `gate`.
    pub(crate) async fn acquire(gate: &Arc<dyn RateGate>, leave_within: Duration) -> Self {
        Self {
            gate: gate.clone(),
            granted: gate.acquire(leave_within).await,
        }
    }

    /// The gate and the start, for whoever will report the request's departure instead.
    pub(crate) fn into_parts(mut self) -> (Arc<dyn RateGate>, Option<Granted>) {
        (self.gate.clone(), self.granted.take())
    }
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        let Some(granted) = self.granted.take() else {
            return;
        };
        // Drop cannot wait: the report goes on a task of its own. Without a runtime (the
        // process is ending) the gate counts the start as leaving at its deadline.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let gate = self.gate.clone();
            runtime.spawn(async move { gate.departed(granted, Departure::NotSent).await });
        }
    }
}

/// No pacing at all: for tests that want to provoke 429s, and for unlimited endpoints.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGate;

impl RateGate for NoGate {
    fn acquire(&self, _leave_within: Duration) -> BoxFuture<'_, Option<Granted>> {
        Box::pin(async { None })
    }
}

/// Start slots spaced `1/rate + guard` apart, handed out in call order. Spacing (rather
/// than a token bucket) means no burst ever starts, so at most `rate` requests start in
/// any one-second window however many tasks call concurrently; `guard` absorbs the jitter
/// between our start and the server's clock. It paces starts only and hears nothing of
/// departures: for one-off requests (`gradesync check` without a store) and tests; workers
/// use the store's gate.
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
    fn acquire(&self, _leave_within: Duration) -> BoxFuture<'_, Option<Granted>> {
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
                    gate.acquire(Duration::from_secs(1)).await;
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
        gate.acquire(Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = Instant::now();
        gate.acquire(Duration::from_secs(1)).await;
        assert_eq!(Instant::now(), before);
    }

    /// Grants every start and keeps what it hears.
    #[derive(Debug, Default)]
    struct Recording {
        heard: Mutex<Vec<(Granted, Departure)>>,
    }

    fn granted() -> Granted {
        Granted {
            lane: 1,
            start_ms: 1_000,
            departs_by_ms: 2_000,
            leave_by: Instant::now(),
        }
    }

    impl RateGate for Recording {
        fn acquire(&self, _leave_within: Duration) -> BoxFuture<'_, Option<Granted>> {
            Box::pin(async { Some(granted()) })
        }

        fn departed(&self, granted: Granted, departure: Departure) -> BoxFuture<'_, ()> {
            self.heard.lock().unwrap().push((granted, departure));
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn a_slot_dropped_unspent_tells_the_gate_nothing_left() {
        let recording = Arc::new(Recording::default());
        let gate: Arc<dyn RateGate> = recording.clone();
        let held = HeldSlot::acquire(&gate, Duration::from_secs(1)).await;
        let start = held.granted.expect("granted");
        drop(held);
        for _ in 0..100 {
            if !recording.heard.lock().unwrap().is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            *recording.heard.lock().unwrap(),
            [(start, Departure::NotSent)]
        );

        // Handed over, the report is the new holder's to make.
        let (_, handed) = HeldSlot::acquire(&gate, Duration::from_secs(1))
            .await
            .into_parts();
        assert!(handed.is_some());
        tokio::task::yield_now().await;
        assert_eq!(recording.heard.lock().unwrap().len(), 1);
    }

    #[test]
    #[should_panic(expected = "positive")]
    fn zero_rate_is_a_bug() {
        let _ = SpacingGate::new(0.0, Duration::ZERO);
    }
}
