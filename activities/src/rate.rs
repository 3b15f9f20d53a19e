//! The request pace shared by every worker process: each request to the government API
//! claims the next start slot from the grades store, so N workers together still start at
//! most `rate` requests per second. Temporal's task-queue rate limit is only an upper bound
//! and lets bursts through (see the SDK notes), so it cannot be what keeps us under the API's
//! strict window.
//!
//! Slots are cut on the store's clock: the database server's on PostgreSQL. Workers on
//! hosts whose clocks disagree by hundreds of ms would otherwise each start their requests
//! on their own idea of when a slot comes, and two from different hosts could land in one
//! window of the API. Each gate learns how far its host's clock is from the store's with
//! a round trip that reads the store's clock, and sleeps on the store's time.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use crate::gov::RateGate;
use crate::gov::departure::now_ms;
use crate::store::{Backend, Now, RateSlot, SlotReach, Store};

/// How often a gate learns the store's clock again: host clocks drift and get stepped.
const CLOCK_SYNC: Duration = Duration::from_secs(10);
/// The slowest clock read a gate learns from: its error is at most half of it.
const MAX_SYNC_RTT_MS: i64 = 4;

/// Limit name in `rate_lanes`: one budget per API.
const LIMIT: &str = "gov-api";

/// At most `capacity` request starts in any `window_ms`, claimed atomically in the store.
/// For the API's 2 requests per second that is 2 starts per 1 s + guard, spaced half a
/// window apart: the budget in use is 1000 / (1000 + guard) (98.5% at 15 ms).
///
/// A slot is claimed just before it is due, never seconds ahead: a request handed a slot
/// far ahead that woke a few ms late (a busy CPU) had to give it up, as the lane's next
/// start was already cut from it, and each slot given up was half a second of budget lost
/// (1-2 per 100 requests on a loaded 2-core machine). Claimed at the last moment, a late
/// wake only moves the start by the few ms it was late. The requests of one process queue
/// here in arrival order and only the first asks the store, so waiting costs no store
/// traffic. A batch that still left late (the HTTP client's connection task waited for a
/// thread) reports it through `departed`, and its lane's next start is cut from then.
pub struct StoreRateGate {
    store: Store,
    capacity: u32,
    window_ms: i64,
    /// How late after its slot a request may still start. A later one moves its slot to
    /// now if no later start was claimed, else claims another, rather than crowd the next
    /// window.
    tolerance_ms: i64,
    /// How late after its slot a request may leave before its lane is pushed back: small,
    /// as whatever is left uncorrected comes out of the guard the API's own jitter needs.
    /// Most batches leave 0-2 ms after their slot, a few 3-10 ms.
    depart_tolerance_ms: i64,
    /// A slot that passed this little ago is kept as it was cut, so starts do not drift
    /// later one late wake at a time.
    behind_ms: i64,
    /// How long a claim takes (moving average, in µs): slots are claimed twice that long
    /// before they are due, so the claim has committed when the slot comes.
    claim_us: AtomicI64,
    /// The store's clock minus this host's, learned every [`CLOCK_SYNC`].
    offset_ms: AtomicI64,
    /// When the offset was last learned; `None` before the first time.
    synced_at: std::sync::Mutex<Option<Instant>>,
    head: tokio::sync::Mutex<()>,
}

impl StoreRateGate {
    pub fn new(store: Store, rate_per_sec: f64, guard: Duration) -> Self {
        let (capacity, window) = window_for(rate_per_sec, guard);
        let guard_ms = guard.as_millis() as i64;
        Self {
            store,
            capacity,
            window_ms: window.as_millis() as i64,
            tolerance_ms: guard_ms / 2,
            depart_tolerance_ms: guard_ms / 5,
            behind_ms: guard_ms / 4,
            claim_us: AtomicI64::new(1_000),
            offset_ms: AtomicI64::new(0),
            synced_at: std::sync::Mutex::new(None),
            head: tokio::sync::Mutex::new(()),
        }
    }

    /// How far ahead of its slot the head claims it: twice the usual claim time, at most
    /// half the spacing between starts.
    fn lead_ms(&self) -> i64 {
        let spacing = self.window_ms / i64::from(self.capacity);
        (2 * self.claim_us.load(Ordering::Relaxed) / 1_000 + 1).min(spacing / 2)
    }

    /// Now, on the store's clock.
    fn now_ms(&self) -> i64 {
        now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Waits until `at` on the store's clock.
    async fn sleep_until_ms(&self, at: i64) {
        let wait = at - self.now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }

    /// Learns how far the store's clock is from this host's, as NTP does: the store's time
    /// against the midpoint of the round trip that read it, so the error is at most half
    /// of it. A slow round trip teaches little and is not used. SQLite's
    /// clock is this host's: nothing to learn.
    async fn sync_clock(&self) {
        if self.store.backend() != Backend::Postgres {
            return;
        }
        let due = self
            .synced_at
            .lock()
            .map(|at| at.is_none_or(|at| at.elapsed() >= CLOCK_SYNC))
            .unwrap_or(true);
        if !due {
            return;
        }
        // The best of a few round trips: the first on a connection is often the slowest.
        let mut best: Option<(i64, i64)> = None;
        for _ in 0..3 {
            let before = now_ms();
            let Ok(store_now) = self.store.clock_ms().await else {
                return;
            };
            let after = now_ms();
            let rtt = after - before;
            if best.is_none_or(|(best_rtt, _)| rtt < best_rtt) {
                best = Some((rtt, store_now - (before + after) / 2));
            }
        }
        let Some((rtt, offset)) = best.filter(|(rtt, _)| *rtt <= MAX_SYNC_RTT_MS) else {
            tracing::debug!("the store's clock took too long to read; keeping the last offset");
            return;
        };
        tracing::trace!(rtt, offset, "learned the store's clock");
        self.offset_ms.store(offset, Ordering::Relaxed);
        if let Ok(mut at) = self.synced_at.lock() {
            *at = Some(Instant::now());
        }
    }

    fn observe_claim(&self, took: Duration) {
        let sample = took.as_micros().min(1_000_000) as i64;
        let old = self.claim_us.load(Ordering::Relaxed);
        self.claim_us
            .store((7 * old + sample) / 8, Ordering::Relaxed);
    }

    /// The start the request may leave on now: the `granted` one when that is within the
    /// tolerance, or now after moving it (a stalled commit costs the few ms of the stall,
    /// not the slot). `None` when the slot is lost: claim another.
    async fn start_by(&self, granted: i64) -> Option<i64> {
        let mut start = granted;
        // Bounded: a store whose every commit outlasts the tolerance must not keep one
        // request moving its slot for ever.
        for _ in 0..3 {
            let late = self.now_ms() - start;
            if late <= self.tolerance_ms {
                return Some(start);
            }
            tracing::debug!(
                late_ms = late,
                "a rate slot passed while claimed; moving it"
            );
            match self
                .store
                .restart_rate_slot(LIMIT, self.window_ms, start, Now::Store)
                .await
            {
                Ok(Some(moved)) => start = moved,
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot move a rate slot; claiming another");
                    return None;
                }
            }
        }
        None
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
    fn acquire(&self) -> BoxFuture<'_, Option<i64>> {
        Box::pin(async move {
            let waited = Instant::now();
            let metrics = crate::metrics::get();
            // Tokio's mutex is fair: this process's requests take their turns in order.
            let _head = self.head.lock().await;
            self.sync_clock().await;
            loop {
                let lead = self.lead_ms();
                let reach = SlotReach {
                    ahead_ms: lead,
                    behind_ms: self.behind_ms,
                };
                let asked = Instant::now();
                let claim = self
                    .store
                    .claim_rate_slot(LIMIT, self.capacity, self.window_ms, Now::Store, reach)
                    .await;
                self.observe_claim(asked.elapsed());
                match claim {
                    Ok(RateSlot::Granted(slot)) => {
                        self.sleep_until_ms(slot).await;
                        if let Some(start) = self.start_by(slot).await {
                            metrics.rate_gate_slots.inc();
                            metrics
                                .rate_gate_wait
                                .observe(waited.elapsed().as_secs_f64());
                            return Some(start);
                        }
                    }
                    Ok(RateSlot::NotYet(at)) => self.sleep_until_ms(at - lead).await,
                    // Letting a request through unpaced could break the API's window: wait.
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim a rate slot; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        })
    }

    /// A request can leave well after the gate let it go: the HTTP client's connection
    /// task waits for a busy thread like any other. Its lane's next start is then cut from
    /// when it really left, as long as no later start was claimed meanwhile (half a window
    /// away at 2/s, so there is time); otherwise the API may count one too many.
    fn departed(&self, start: i64, left_at_ms: i64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // `left_at_ms` is on this host's clock; slots are on the store's.
            let left_at_ms = left_at_ms + self.offset_ms.load(Ordering::Relaxed);
            let late_ms = left_at_ms - start;
            tracing::trace!(late_ms, "a request left");
            if late_ms <= self.depart_tolerance_ms {
                return;
            }
            match self
                .store
                .restart_rate_slot(LIMIT, self.window_ms, start, Now::At(left_at_ms))
                .await
            {
                Ok(Some(_)) => {
                    tracing::debug!(late_ms, "a request left late; its lane counts from then");
                }
                Ok(None) => tracing::warn!(
                    late_ms,
                    "a request left late after a later start was claimed; the API may refuse one"
                ),
                Err(e) => tracing::warn!(error = %e, late_ms, "cannot move a late request's lane"),
            }
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
