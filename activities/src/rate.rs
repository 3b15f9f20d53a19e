//! The request pace shared by every worker process: each request to the government API
//! claims the next start slot from the grades store, so N workers together still start at
//! most `rate` requests per second. Temporal's task-queue rate limit is only an upper bound
//! and lets bursts through (see the SDK notes), so it cannot be what keeps us under the API's
//! strict window.
//!
//! The budget is `capacity` lanes, and a lane's next start comes at least a window after
//! its last request really left: every request reports its departure, and a claim on a
//! lane whose last departure is not known yet waits for it, or for the deadline by which
//! that request leaves or never does (see `store::rate_lanes`). Slots are cut on the
//! store's clock: the database server's on PostgreSQL, the host's real one on SQLite. Each
//! gate learns how far its process's clock is from it, with the round trip's uncertainty
//! (`store_clock`), waits until the latest moment a slot may truly be, and reports a
//! departure at the latest moment it may truly have been.

mod store_clock;

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

pub use store_clock::{ClockFilter, StoreClock};

use crate::gov::departure::now_ms;
use crate::gov::{Departure, Granted, RateGate};
use crate::store::{LaneStart, Now, RateSlot, SlotReach, Store};

/// How often a gate learns the store's clock again: host clocks drift and get stepped.
const CLOCK_SYNC: Duration = Duration::from_secs(10);
/// Round trips a gate reads the store's clock in each time.
const CLOCK_READINGS: usize = 3;

/// Limit name in `rate_lanes`: one budget per API.
const LIMIT: &str = "gov-api";

/// At most `capacity` request starts in any `window_ms`, claimed atomically in the store.
/// For the API's 2 requests per second that is 2 starts per 1 s + guard, spaced half a
/// window apart: the budget in use is at most 1000 / (1000 + guard) (98.5% at 15 ms), less
/// the time requests leave after their slot and twice the clock's uncertainty.
///
/// A slot is claimed just before it is due, never seconds ahead: a request handed a slot
/// far ahead that woke late would push its lane back by as much. The requests of one
/// process queue here in arrival order and only the first asks the store, so waiting costs
/// no store traffic.
pub struct StoreRateGate {
    store: Store,
    capacity: u32,
    window_ms: i64,
    /// A slot that passed this little ago is kept as it was cut, so starts do not drift
    /// later one late wake at a time.
    behind_ms: i64,
    /// How often a claim that finds its lane waiting for a departure report asks again
    /// (a report of this process wakes it at once).
    unsettled_poll: Duration,
    /// How long a claim takes (moving average, in µs): slots are claimed twice that long
    /// before they are due, so the claim has committed when the slot comes.
    claim_us: AtomicI64,
    /// What is known of the store's clock, and when it was last read (`None`: never).
    clock: std::sync::Mutex<(ClockFilter, Option<Instant>)>,
    head: tokio::sync::Mutex<()>,
    /// Woken by this process's departure reports, for a claim waiting on one.
    settled: tokio::sync::Notify,
}

impl StoreRateGate {
    pub fn new(store: Store, rate_per_sec: f64, guard: Duration) -> Self {
        let (capacity, window) = window_for(rate_per_sec, guard);
        let guard_ms = guard.as_millis() as i64;
        Self {
            store,
            capacity,
            window_ms: window.as_millis() as i64,
            behind_ms: guard_ms / 4,
            unsettled_poll: guard.max(Duration::from_millis(1)),
            claim_us: AtomicI64::new(1_000),
            clock: std::sync::Mutex::new((ClockFilter::default(), None)),
            head: tokio::sync::Mutex::new(()),
            settled: tokio::sync::Notify::new(),
        }
    }

    /// How far ahead of its slot the head claims it: twice the usual claim time (a store
    /// tens of ms away takes a few round trips), at most the spacing between starts. A
    /// slot claimed early costs nothing but the lateness of its request, which its
    /// departure report accounts for.
    fn lead_ms(&self) -> i64 {
        let spacing = self.window_ms / i64::from(self.capacity);
        (2 * self.claim_us.load(Ordering::Relaxed) / 1_000 + 1).min(spacing)
    }

    /// The store's clock as known now.
    fn clock(&self) -> Option<StoreClock> {
        self.clock
            .lock()
            .ok()
            .and_then(|c| c.0.clock(Instant::now()))
    }

    /// Waits until the store's time, as `to` reads it off this host's, is `at`.
    async fn sleep_until_store(&self, at: i64, to: impl Fn(&StoreClock, i64) -> i64) {
        loop {
            let Some(clock) = self.clock() else { return };
            let wait = at - to(&clock, now_ms());
            if wait <= 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }

    /// Reads the store's clock when it is due (every [`CLOCK_SYNC`]): each reading bounds
    /// the offset by its round trip, however slow, and narrows what is known (see
    /// `store_clock`). Returns the clock known afterwards.
    async fn sync_clock(&self) -> Option<StoreClock> {
        let due = self
            .clock
            .lock()
            .map(|c| c.1.is_none_or(|at| at.elapsed() >= CLOCK_SYNC))
            .unwrap_or(true);
        if !due {
            return self.clock();
        }
        for _ in 0..CLOCK_READINGS {
            let reading = match self.store.read_clock().await {
                Ok(reading) => reading,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the store's clock; keeping what is known");
                    break;
                }
            };
            if let Ok(mut c) = self.clock.lock() {
                if !c.0.take(reading, Instant::now()) {
                    tracing::warn!("the store's clock or this host's jumped; learning it afresh");
                }
                c.1 = Some(Instant::now());
            }
        }
        let clock = self.clock();
        tracing::trace!(?clock, "learned the store's clock");
        clock
    }

    fn observe_claim(&self, took: Duration) {
        let sample = took.as_micros().min(1_000_000) as i64;
        let old = self.claim_us.load(Ordering::Relaxed);
        self.claim_us
            .store((7 * old + sample) / 8, Ordering::Relaxed);
    }

    /// Waits for the granted start, at the latest it may truly be on the store's clock,
    /// and names it with its deadline on this host's clock.
    async fn start(&self, slot: LaneStart) -> Granted {
        self.sleep_until_store(slot.start_ms, StoreClock::earliest)
            .await;
        let until_deadline = self
            .clock()
            .map_or(0, |c| slot.departs_by_ms - c.latest(now_ms()));
        Granted {
            lane: slot.lane,
            start_ms: slot.start_ms,
            departs_by_ms: slot.departs_by_ms,
            leave_by: tokio::time::Instant::now()
                + Duration::from_millis(until_deadline.max(0) as u64),
        }
    }
}

/// `rate` requests per second as "at most `capacity` starts per window": the whole
/// requests of one second share a window of `capacity / rate` s, plus the guard that
/// absorbs jitter between our clock and the API's (0.5/s gives 1 per 2 s + guard).
pub fn window_for(rate_per_sec: f64, guard: Duration) -> (u32, Duration) {
    let rate = rate_per_sec.max(0.001);
    let capacity = (rate.floor() as u32).max(1);
    let window_ms = (f64::from(capacity) * 1000.0 / rate).ceil() as u64;
    (capacity, Duration::from_millis(window_ms) + guard)
}

impl fmt::Debug for StoreRateGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreRateGate")
            .field("capacity", &self.capacity)
            .field("window_ms", &self.window_ms)
            .finish()
    }
}

impl RateGate for StoreRateGate {
    fn acquire(&self, leave_within: Duration) -> BoxFuture<'_, Option<Granted>> {
        Box::pin(async move {
            let waited = Instant::now();
            let metrics = crate::metrics::get();
            let leave_within_ms = leave_within.as_millis() as i64;
            // Tokio's mutex is fair: this process's requests take their turns in order.
            let _head = self.head.lock().await;
            loop {
                // A start cannot be kept without knowing the store's clock.
                if self.clock().is_none() && self.sync_clock().await.is_none() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                let lead = self.lead_ms();
                let reach = SlotReach {
                    ahead_ms: lead,
                    behind_ms: self.behind_ms,
                };
                let asked = Instant::now();
                // The clock is learned again beside the claim, on another connection: its
                // round trips then cost the head no time.
                let (_, claim) = futures::join!(
                    self.sync_clock(),
                    self.store.claim_rate_slot(
                        LIMIT,
                        self.capacity,
                        self.window_ms,
                        Now::Store,
                        reach,
                        leave_within_ms,
                    )
                );
                self.observe_claim(asked.elapsed());
                match claim {
                    Ok(RateSlot::Granted(slot)) => {
                        let granted = self.start(slot).await;
                        tracing::trace!(
                            lane = slot.lane,
                            start_ms = slot.start_ms,
                            clock = ?self.clock(),
                            "a request may start"
                        );
                        metrics.rate_gate_slots.inc();
                        metrics
                            .rate_gate_wait
                            .observe(waited.elapsed().as_secs_f64());
                        return Some(granted);
                    }
                    Ok(RateSlot::NotYet(at)) => {
                        self.sleep_until_store(at - lead, StoreClock::estimate)
                            .await
                    }
                    Ok(RateSlot::Unsettled(by)) => {
                        tracing::debug!(
                            deadline = by,
                            "the lane due waits to hear when its last request left"
                        );
                        let _ = tokio::time::timeout(self.unsettled_poll, self.settled.notified())
                            .await;
                    }
                    // Letting a request through unpaced could break the API's window: wait.
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim a rate slot; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        })
    }

    /// The lane's next start is cut from when the request left, at the latest it may
    /// truly have been on the store's clock; a request that never left frees its lane as
    /// cut. Until this is heard, the lane waits (at most until the request's deadline).
    fn departed(&self, granted: Granted, departure: Departure) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let left_at_ms = match departure {
                Departure::Left { at_ms } => Some(match self.clock() {
                    Some(clock) => clock.latest(at_ms),
                    None => granted.departs_by_ms,
                }),
                Departure::NotSent => None,
            };
            let slot = LaneStart {
                lane: granted.lane,
                start_ms: granted.start_ms,
                departs_by_ms: granted.departs_by_ms,
            };
            let late_ms = left_at_ms.map(|at| at - granted.start_ms);
            match self
                .store
                .settle_rate_slot(LIMIT, self.window_ms, slot, left_at_ms)
                .await
            {
                Ok(true) => tracing::trace!(
                    lane = granted.lane,
                    start_ms = granted.start_ms,
                    ?left_at_ms,
                    ?late_ms,
                    "a request's departure is in"
                ),
                Ok(false) if left_at_ms.is_some_and(|at| at > granted.departs_by_ms) => {
                    tracing::warn!(
                        ?late_ms,
                        "a request left after its deadline, when its lane had moved on; the API may refuse one"
                    )
                }
                Ok(false) => tracing::debug!(?late_ms, "a departure came after its lane moved on"),
                Err(e) => tracing::warn!(
                    error = %e,
                    ?late_ms,
                    "cannot record a request's departure; its lane waits until its deadline"
                ),
            }
            self.settled.notify_waiters();
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_rates_share_one_window_of_a_second_plus_guard() {
        let guard = Duration::from_millis(15);
        assert_eq!(window_for(2.0, guard), (2, Duration::from_millis(1015)));
        assert_eq!(window_for(20.0, guard), (20, Duration::from_millis(1015)));
    }

    #[test]
    fn slow_and_fractional_rates_keep_their_average() {
        let guard = Duration::from_millis(15);
        assert_eq!(window_for(0.5, guard), (1, Duration::from_millis(2015)));
        // 2.5/s: 2 per 800 ms is 2.5/s on average.
        assert_eq!(window_for(2.5, guard), (2, Duration::from_millis(815)));
    }
}
