//! This host's wall clock, in Unix milliseconds, the unit of every timestamp we keep. A
//! test can set this process's clock off by a fixed skew (`--fault-clock-skew-ms`) to play
//! a host whose clock is wrong: the rate budget must hold anyway, as it is cut on the
//! store's clock, which the skew does not move (the database server's on PostgreSQL, the
//! host's own on SQLite, read by [`host_wall_ms`]).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static SKEW_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the Unix epoch on this host, plus any injected skew.
pub fn now_ms() -> i64 {
    host_wall_ms() + SKEW_MS.load(Ordering::Relaxed)
}

/// Milliseconds since the Unix epoch on this host's real clock, which no injected skew
/// moves: a SQLite store's clock. Every process on the host shares it, as they share the
/// database file; a skewed worker must learn how far its own clock is from it, as it does
/// from a PostgreSQL server's.
pub fn host_wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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
        let wall = host_wall_ms();
        set_skew_ms(0);
        let after = now_ms();
        assert!(
            skewed - before >= 400 && skewed - after >= 399,
            "{before} {skewed} {after}"
        );
        assert!(
            (before..=after).contains(&wall),
            "the host's wall clock ({wall}) does not move with the skew"
        );
    }
}
