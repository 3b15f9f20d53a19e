//! The retry ladder of one batch. The seed's Retry5s -> Retry15s -> Retry45s states become
//! durable workflow timers named after the step, so each wait is one visible event in the
//! history and costs nothing while it runs.

use std::time::Duration;

/// The wait before the next attempt after `failures` failed attempts, or `None` once the
/// ladder is exhausted (the batch goes to DeadLetter). A `Retry-After` the server sent
/// lengthens the step, up to `max_retry_after`; it never shortens it.
pub fn next_wait(
    steps_ms: &[u64],
    failures: usize,
    retry_after_ms: Option<u64>,
    max_retry_after_ms: u64,
) -> Option<Duration> {
    let step = *steps_ms.get(failures)?;
    let asked = retry_after_ms.unwrap_or(0).min(max_retry_after_ms);
    Some(Duration::from_millis(step.max(asked)))
}

/// The timer's summary in the history: `Retry5s` for the seed's first step, `Retry200ms` for
/// a compressed test step, with the server's wish appended when it lengthened the wait.
pub fn step_name(step_ms: u64, waited: Duration) -> String {
    let base = format!("Retry{}", human(step_ms));
    let waited_ms = waited.as_millis() as u64;
    if waited_ms > step_ms {
        format!("{base} (Retry-After {})", human(waited_ms))
    } else {
        base
    }
}

fn human(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: [u64; 3] = [5_000, 15_000, 45_000];

    #[test]
    fn ladder_is_the_seeds_then_exhausted() {
        let waits: Vec<_> = (0..4).map(|f| next_wait(&SEED, f, None, 900_000)).collect();
        assert_eq!(
            waits,
            vec![
                Some(Duration::from_secs(5)),
                Some(Duration::from_secs(15)),
                Some(Duration::from_secs(45)),
                None
            ]
        );
    }

    #[test]
    fn retry_after_lengthens_but_is_capped() {
        assert_eq!(
            next_wait(&SEED, 0, Some(30_000), 900_000),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            next_wait(&SEED, 1, Some(1_000), 900_000),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            next_wait(&SEED, 0, Some(10_000_000), 60_000),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn names_match_the_seed_states() {
        let names: Vec<_> = SEED
            .iter()
            .map(|&s| step_name(s, Duration::from_millis(s)))
            .collect();
        assert_eq!(names, ["Retry5s", "Retry15s", "Retry45s"]);
        assert_eq!(step_name(200, Duration::from_millis(200)), "Retry200ms");
        assert_eq!(
            step_name(5_000, Duration::from_secs(30)),
            "Retry5s (Retry-After 30s)"
        );
    }
}
