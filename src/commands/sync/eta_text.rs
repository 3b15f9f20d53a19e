//! The run's projection as people read it: UTC minutes, a rate, and a verdict; and how
//! long a finished run took.

use gradesync_activities::model::Progress;
use gradesync_activities::utc::utc_minute;

fn rate(records_per_sec: f64) -> String {
    if records_per_sec >= 10.0 {
        format!("{records_per_sec:.0}")
    } else {
        format!("{records_per_sec:.1}")
    }
}

fn verdict(on_track: Option<bool>) -> &'static str {
    match on_track {
        Some(true) => "on track",
        Some(false) => "AT RISK",
        None => "too early to judge",
    }
}

/// One line for `sync status`, e.g. `rate 196 records/s, ETA 2026-11-28 14:05 UTC, deadline
/// 2026-11-30 01:00 UTC: on track`; `None` for a run that predates the ETA.
pub fn status_line(p: &Progress) -> Option<String> {
    if p.deadline_at_ms == 0 {
        return None;
    }
    let deadline = utc_minute(p.deadline_at_ms);
    Some(match p.eta {
        None => format!("rate not measured yet, deadline {deadline}"),
        Some(eta) => {
            let finish = eta
                .projected_finish_ms
                .map_or_else(|| "never at this rate".to_string(), utc_minute);
            format!(
                "rate {} records/s, ETA {finish}, deadline {deadline}: {}",
                rate(eta.rate_per_sec),
                verdict(eta.on_track)
            )
        }
    })
}

/// `1 h 02 min 05 s`, `3 min 20 s`, `15 s`.
pub fn duration_text(ms: u64) -> String {
    let secs = ms.div_ceil(1_000);
    let (h, m, s) = (secs / 3_600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s:02} s"),
        _ => format!("{h} h {m:02} min {s:02} s"),
    }
}

/// `sync status` of a run that has ended: how long it took, in place of a projection, e.g.
/// `finished 2026-11-28 14:05 UTC after 1 h 02 min 05 s, deadline 2026-11-30 01:00 UTC`.
pub fn finished_line(started_ms: i64, finished_ms: i64, deadline_at_ms: u64) -> String {
    let took = duration_text(finished_ms.saturating_sub(started_ms).max(0) as u64);
    let finished = utc_minute(finished_ms.max(0) as u64);
    if deadline_at_ms == 0 {
        format!("finished {finished} after {took}")
    } else {
        format!(
            "finished {finished} after {took}, deadline {}",
            utc_minute(deadline_at_ms)
        )
    }
}

/// The progress bar's message: projected finish against the deadline.
pub fn bar_message(p: &Progress) -> String {
    match (p.eta, p.deadline_at_ms) {
        (_, 0) => String::new(),
        (None, deadline) => format!("deadline {}", utc_minute(deadline)),
        (Some(eta), deadline) => format!(
            "ETA {} vs deadline {}: {}",
            eta.projected_finish_ms
                .map_or_else(|| "never".to_string(), utc_minute),
            utc_minute(deadline),
            verdict(eta.on_track)
        ),
    }
}

#[cfg(test)]
mod tests {
    use gradesync_activities::model::Eta;

    use super::*;

    fn progress(eta: Option<Eta>) -> Progress {
        Progress {
            started_ms: 1_795_876_200_000,
            deadline_at_ms: 1_795_876_200_000 + 47 * 3_600_000,
            eta,
            ..Progress::default()
        }
    }

    #[test]
    fn status_line_reads_rate_finish_deadline_and_verdict() {
        let eta = Eta {
            at_ms: 1_795_876_200_000,
            rate_per_sec: 196.4,
            projected_finish_ms: Some(1_795_876_200_000 + 3_600_000),
            on_track: Some(true),
        };
        assert_eq!(
            status_line(&progress(Some(eta))).unwrap(),
            "rate 196 records/s, ETA 2026-11-28 15:30 UTC, deadline 2026-11-30 13:30 UTC: on track"
        );
        let stalled = Eta {
            rate_per_sec: 0.0,
            projected_finish_ms: None,
            on_track: Some(false),
            ..eta
        };
        assert_eq!(
            status_line(&progress(Some(stalled))).unwrap(),
            "rate 0.0 records/s, ETA never at this rate, deadline 2026-11-30 13:30 UTC: AT RISK"
        );
        assert!(bar_message(&progress(Some(stalled))).contains("AT RISK"));
        assert_eq!(
            status_line(&progress(None)).unwrap(),
            "rate not measured yet, deadline 2026-11-30 13:30 UTC"
        );
        assert_eq!(
            status_line(&Progress::default()),
            None,
            "a run from before the ETA"
        );
    }

    #[test]
    fn durations_read_in_hours_minutes_seconds() {
        assert_eq!(duration_text(15_000), "15 s");
        assert_eq!(duration_text(200_500), "3 min 21 s");
        assert_eq!(duration_text(5_075_000), "1 h 24 min 35 s");
    }

    #[test]
    fn a_finished_run_says_when_and_how_long_not_an_eta() {
        let started = 1_795_876_200_000;
        assert_eq!(
            finished_line(
                started,
                started + 3_725_000,
                started as u64 + 47 * 3_600_000
            ),
            "finished 2026-11-28 15:32 UTC after 1 h 02 min 05 s, deadline 2026-11-30 13:30 UTC"
        );
        assert_eq!(
            finished_line(started, started + 52_400, 0),
            "finished 2026-11-28 14:30 UTC after 53 s"
        );
    }
}
