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

/// Slot name in `rate_slots`: one budget per API.
const SLOT: &str = "gov-api";

/// Spacing of `1000 / rate` ms plus a guard, claimed atomically in the store.
pub struct StoreRateGate {
    store: Store,
    spacing_ms: i64,
    /// How late after its slot a request may still start. The next slot was cut assuming
    /// we start on time, so a request that missed its slot by more (a slow store, a busy
    /// CPU) gives it up and claims a new one rather than crowd the next request.
    tolerance_ms: i64,
}

impl StoreRateGate {
    pub fn new(store: Store, rate_per_sec: f64, guard: Duration) -> Self {
        let guard_ms = guard.as_millis() as i64;
        let spacing_ms = (1000.0 / rate_per_sec.max(0.001)).ceil() as i64 + guard_ms;
        Self {
            store,
            spacing_ms,
            tolerance_ms: guard_ms / 2,
        }
    }

    pub fn spacing(&self) -> Duration {
        Duration::from_millis(self.spacing_ms as u64)
    }
}

impl fmt::Debug for StoreRateGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreRateGate")
            .field("spacing_ms", &self.spacing_ms)
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
                    .claim_rate_slot(SLOT, self.spacing_ms, now_ms())
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
