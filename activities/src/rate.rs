//! The request pace shared by every worker process: each request to the government API
//! claims the next start slot from the grades store, so N workers together still start at
//! most `rate` requests per second. Temporal's task-queue rate limit is only an upper bound
//! and lets bursts through (see the SDK notes), so it cannot be what keeps us under the API's
//! strict window.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;

use crate::gov::RateGate;
use crate::store::Store;

/// Limit name in `rate_lanes`: one budget per API.
const LIMIT: &str = "gov-api";

/// At most `capacity` request starts in any `window_ms`, claimed atomically in the store.
/// For the API's 2 requests per second that is 2 starts per 1 s + guard: requests may go
/// out in pairs, and the budget in use is 1000 / (1000 + guard) (98.5% at 15 ms), where
/// evenly spaced slots of 1/rate + guard would cap it at 97%.
pub struct StoreRateGate {
    store: Store,
    capacity: u32,
    window_ms: i64,
    /// How late after its slot a request may still start. The lane's next slot was cut
    /// assuming we start on time, so a request that missed its slot by more (a slow store,
    /// a busy CPU) gives it up and claims a new one rather than crowd the next window.
    tolerance_ms: i64,
}

impl StoreRateGate {
    pub fn new(store: Store, rate_per_sec: f64, guard: Duration) -> Self {
        let (capacity, window) = window_for(rate_per_sec, guard);
        Self {
            store,
            capacity,
            window_ms: window.as_millis() as i64,
            tolerance_ms: (guard.as_millis() / 2) as i64,
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl RateGate for StoreRateGate {
    fn acquire(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                match self
                    .store
                    .claim_rate_slot(LIMIT, self.capacity, self.window_ms, now_ms())
                    .await
                {
                    Ok(slot) => {
                        let wait = slot - now_ms();
                        if wait > 0 {
                            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                        }
                        if now_ms() - slot <= self.tolerance_ms {
                            return;
                        }
                        tracing::debug!(
                            late_ms = now_ms() - slot,
                            "missed a rate slot; claiming another"
                        );
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
