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

/// Spacing of `1000 / rate` ms plus `guard_ms`, claimed atomically in the store.
pub struct StoreRateGate {
    store: Store,
    spacing_ms: i64,
}

impl StoreRateGate {
    pub fn new(store: Store, rate_per_sec: f64, guard: Duration) -> Self {
        let spacing_ms =
            (1000.0 / rate_per_sec.max(0.001)).ceil() as i64 + guard.as_millis() as i64;
        Self { store, spacing_ms }
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
                        return;
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
