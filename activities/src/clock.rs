//! This host's wall clock, in Unix milliseconds, the unit of every timestamp we keep. A
//! test can set it off by a fixed skew (`--fault-clock-skew-ms`) to play a host whose
//! clock is wrong: the rate budget must hold anyway, as it is cut on the database's clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static SKEW_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the Unix epoch on this host, plus any injected skew.
pub fn now_ms() -> i64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    wall + SKEW_MS.load(Ordering::Relaxed)
}

/// Sets this process's clock `skew_ms` off the real time (fault injection).
pub fn set_skew_ms(skew_ms: i64) {
    SKEW_MS.store(skew_ms, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_moves_the_clock_by_its_amount() {
        let before = now_ms();
        set_skew_ms(400);
        let skewed = now_ms();
        set_skew_ms(0);
        let after = now_ms();
        assert!(
            skewed - before >= 400 && skewed - after >= 399,
            "{before} {skewed} {after}"
        );
    }
}
