//! When a run redrives its own dead letters. The seed parks a batch in the DLQ after
//! Retry45s and waits for a person; here the run tries the dead batches again by itself, in
//! waves (5 min, 15 min, 45 min, then hourly), same batch ids and same bytes, for as long
//! as a wave, the resending and Reconcile still fit before the deadline. Pure functions, so
//! the deadline guard is tested without a server.

use std::time::Duration;

use gradesync_activities::model::Policy;

/// What resending one record costs at the API's limit (2 requests of 100 records a
/// second: 5 ms), with a margin for retries and jitter.
const RESEND_MS_PER_RECORD: u64 = 7;

/// The wait before wave `done + 1`, or `None` when no wave is left: the list and the
/// hourly waves are spent, or the wave would end too close to `end_ms` (unix ms) to resend
/// `dead` records and reconcile.
pub fn next_wave(
    policy: &Policy,
    done: u32,
    now_ms: u64,
    end_ms: u64,
    dead: u64,
) -> Option<Duration> {
    let wait = match policy.redrive_waves_ms.get(done as usize) {
        Some(&wait) => wait,
        None if policy.redrive_every_ms > 0 => policy.redrive_every_ms,
        None => return None,
    };
    let finish = now_ms
        .saturating_add(wait)
        .saturating_add(dead.saturating_mul(RESEND_MS_PER_RECORD))
        .saturating_add(policy.redrive_reserve_ms);
    (finish <= end_ms).then(|| Duration::from_millis(wait.max(1)))
}

/// The wave's timer name in the history: `Redrive5m`, `Redrive1h`, `Redrive2s`.
pub fn wave_name(wait: Duration) -> String {
    let ms = wait.as_millis() as u64;
    let human = if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    };
    format!("Redrive{human}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000;

    #[test]
    fn waves_are_the_list_then_hourly() {
        let p = Policy::default();
        let waits: Vec<_> = (0..5)
            .map(|done| next_wave(&p, done, 0, 47 * H, 100).map(wave_name))
            .collect();
        let names: Vec<_> = waits.iter().map(|w| w.as_deref().unwrap()).collect();
        assert_eq!(
            names,
            [
                "Redrive5m",
                "Redrive15m",
                "Redrive45m",
                "Redrive1h",
                "Redrive1h"
            ]
        );
    }

    #[test]
    fn no_wave_that_would_end_past_the_deadline() {
        let p = Policy::default();
        // 45 h in, 2 h left: a 5 min wave plus the reserve (1 h) fits, a 1 h wave does not.
        let now = 45 * H;
        assert!(next_wave(&p, 0, now, 47 * H, 100).is_some());
        assert_eq!(next_wave(&p, 3, now, 47 * H, 100), None);
        // The resend of many dead records counts too: 1M records need ~1.9 h at 2 req/s.
        assert_eq!(next_wave(&p, 0, now, 47 * H, 1_000_000), None);
    }

    #[test]
    fn an_empty_list_without_hourly_waves_never_redrives() {
        let p = Policy {
            redrive_waves_ms: vec![],
            redrive_every_ms: 0,
            ..Policy::default()
        };
        assert_eq!(next_wave(&p, 0, 0, 47 * H, 1), None);
    }
}
