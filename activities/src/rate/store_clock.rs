//! What this host knows of the store's clock. Each reading of the store's time, taken in
//! a round trip, bounds the offset between the two clocks: the store read its clock
//! somewhere in that trip. As NTP's filters do, the gate keeps the offsets consistent with
//! every reading so far (each allowed to have drifted since it was taken): the bound
//! tightens to the quickest round trips seen, and a reading that fits none of it means a
//! clock was stepped, and starts afresh. A database 20 ms away is still learned, within
//! about those 20 ms: the gate waits until the latest time a slot may truly be, and
//! reports a departure at the latest time it may truly have been.

use std::time::{Duration, Instant};

/// How fast the two clocks may drift apart: NTP slews a clock by at most 500 ppm.
const DRIFT_PPM: u64 = 500;

pub use crate::store::ClockReading as Reading;

/// The offsets (store minus host, ms) a reading allows: the store read its clock between
/// `sent` and `received`, and every clock here reads whole ms. `None` for a reading whose
/// host clock went back in the trip.
fn bounds(r: &Reading) -> Option<(i64, i64)> {
    (r.received_ms >= r.sent_ms)
        .then(|| (r.store_ms - r.received_ms - 1, r.store_ms - r.sent_ms + 1))
}

/// The store's clock as seen from this host: `store = host + offset_ms ± error_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreClock {
    pub offset_ms: i64,
    pub error_ms: i64,
}

impl StoreClock {
    fn within(lo: i64, hi: i64) -> Self {
        let offset_ms = (lo + hi).div_euclid(2);
        Self {
            offset_ms,
            error_ms: (hi - offset_ms).max(offset_ms - lo),
        }
    }

    /// The store's time at the earliest it can be, for host time `host_ms`.
    pub fn earliest(&self, host_ms: i64) -> i64 {
        host_ms + self.offset_ms - self.error_ms
    }

    /// The store's time at the latest it can be, for host time `host_ms` (read in whole
    /// ms, so up to a ms later in truth).
    pub fn latest(&self, host_ms: i64) -> i64 {
        host_ms + self.offset_ms + self.error_ms + 1
    }

    /// The best guess of the store's time, for host time `host_ms`.
    pub fn estimate(&self, host_ms: i64) -> i64 {
        host_ms + self.offset_ms
    }
}

/// The offsets consistent with every reading taken since the clocks last jumped.
#[derive(Debug, Clone, Default)]
pub struct ClockFilter {
    bounds: Option<(i64, i64, Instant)>,
}

impl ClockFilter {
    /// Takes a reading made at `at` in. Returns `false` when it fits none of what was known
    /// (a clock was stepped): it is then all that is known.
    pub fn take(&mut self, reading: Reading, at: Instant) -> bool {
        let Some((lo, hi)) = bounds(&reading) else {
            return true;
        };
        let (bounds, fits) = match self.widened(at) {
            Some((l, h)) if l.max(lo) <= h.min(hi) => ((l.max(lo), h.min(hi)), true),
            Some(_) => ((lo, hi), false),
            None => ((lo, hi), true),
        };
        self.bounds = Some((bounds.0, bounds.1, at));
        fits
    }

    /// The store's clock as known at `at`; `None` before any reading.
    pub fn clock(&self, at: Instant) -> Option<StoreClock> {
        self.widened(at).map(|(lo, hi)| StoreClock::within(lo, hi))
    }

    /// The bounds, widened by the drift since they were last narrowed.
    fn widened(&self, at: Instant) -> Option<(i64, i64)> {
        self.bounds.map(|(lo, hi, then)| {
            let drift = drift_ms(at.saturating_duration_since(then));
            (lo - drift, hi + drift)
        })
    }
}

fn drift_ms(elapsed: Duration) -> i64 {
    let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    i64::try_from(ms.saturating_mul(DRIFT_PPM).div_ceil(1_000_000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(sent_ms: i64, store_ms: i64, received_ms: i64) -> Reading {
        Reading {
            sent_ms,
            store_ms,
            received_ms,
        }
    }

    #[test]
    fn a_round_trip_teaches_the_offset_within_half_of_it() {
        // A store 400 ms ahead, 20 ms away each way: it read its clock mid-trip.
        let at = Instant::now();
        let mut filter = ClockFilter::default();
        assert!(filter.take(reading(2_000, 2_420, 2_040), at));
        let clock = filter.clock(at).unwrap();
        assert_eq!(
            clock,
            StoreClock {
                offset_ms: 400,
                error_ms: 21
            }
        );
        // Wherever in that trip the store read its clock, the truth is in the bounds.
        for read_at in 2_000..=2_040 {
            let offset = 2_420 - read_at;
            assert!(
                (offset - clock.offset_ms).abs() <= clock.error_ms,
                "{offset} vs {clock:?}"
            );
        }
        assert_eq!(clock.earliest(10_000), 10_379);
        assert_eq!(clock.latest(10_000), 10_422);
        assert_eq!(clock.estimate(10_000), 10_400);
    }

    #[test]
    fn readings_whose_trips_were_uneven_narrow_the_bound_together() {
        let at = Instant::now();
        let mut filter = ClockFilter::default();
        // Offset 400; the first reading's way back was slow, the second's way out.
        assert!(filter.take(reading(1_000, 1_405, 1_045), at));
        assert!(filter.take(reading(2_000, 2_440, 2_045), at));
        let clock = filter.clock(at).unwrap();
        assert!(clock.error_ms <= 6, "{clock:?}");
        assert!((clock.offset_ms - 400).abs() <= clock.error_ms, "{clock:?}");
    }

    #[test]
    fn the_bound_widens_as_the_clocks_may_drift_and_a_step_starts_afresh() {
        let at = Instant::now();
        let mut filter = ClockFilter::default();
        assert!(filter.take(reading(5_400, 5_000, 5_400), at));
        // SQLite: the host's own clock, read in no time, 400 ms behind a skewed worker's.
        assert_eq!(
            filter.clock(at),
            Some(StoreClock {
                offset_ms: -400,
                error_ms: 1
            })
        );
        // 10 s later, up to 5 ms of drift either way.
        let later = at + Duration::from_secs(10);
        assert_eq!(
            filter.clock(later),
            Some(StoreClock {
                offset_ms: -400,
                error_ms: 6
            })
        );
        // The host's clock was stepped 100 ms: nothing known fits, the new reading rules.
        assert!(!filter.take(reading(15_500, 15_000, 15_502), later));
        let stepped = filter.clock(later).unwrap();
        assert!(
            (stepped.offset_ms + 501).abs() <= stepped.error_ms && stepped.error_ms <= 2,
            "{stepped:?}"
        );
    }

    #[test]
    fn no_reading_teaches_nothing() {
        let mut filter = ClockFilter::default();
        assert_eq!(filter.clock(Instant::now()), None);
        // A host clock stepped back mid-trip gives no bound.
        assert!(filter.take(reading(10, 5, 3), Instant::now()));
        assert_eq!(filter.clock(Instant::now()), None);
    }
}
