//! The deadline-aware ETA: how fast a run finishes records and when it will be done at that
//! pace. Pure arithmetic over `(workflow time, records done)` samples, so the workflow stays
//! deterministic (no clock is read here) and the math is unit-tested on its own.

use std::collections::VecDeque;

use gradesync_activities::model::Eta;
/// Records in a final state (synced, rejected, dead-lettered) at a point in workflow time;
/// the model's type, so a continued run carries the meter's samples as they are.
pub use gradesync_activities::model::RateSample as Sample;

/// How a projection is judged; durations come from the run's policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Judging {
    pub deadline_at_ms: u64,
    pub window_ms: u64,
    pub min_measure_ms: u64,
}

/// The samples of one run: where measuring started and those the window still needs.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    started: Option<Sample>,
    /// Oldest first; the front one is the base the rate is measured from.
    window: VecDeque<Sample>,
}

impl Meter {
    /// Starts measuring (once: a repair round keeps measuring from the first start).
    pub fn start(&mut self, at: Sample) {
        if self.started.is_none() {
            self.started = Some(at);
            self.window.push_back(at);
        }
    }

    /// The meter in at most three samples, for a run that continues as new: where measuring
    /// started, then the window's base and its newest sample. Empty before [`Meter::start`].
    pub fn compact(&self) -> Vec<Sample> {
        let Some(started) = self.started else {
            return Vec::new();
        };
        let mut samples = vec![started];
        samples.extend(self.window.front());
        if self.window.len() > 1 {
            samples.extend(self.window.back());
        }
        samples
    }

    /// A meter taken up from [`Meter::compact`]: judged from the first start, with the rate
    /// measured from the carried base, so a continued run does not begin blind (an empty
    /// window would read "nothing finished" and alert before its first report).
    pub fn resume(samples: &[Sample]) -> Self {
        let mut samples = samples.iter().copied();
        Self {
            started: samples.next(),
            window: samples.collect(),
        }
    }

    /// Adds `now` and projects the finish of `remaining` records; `None` before
    /// [`Meter::start`].
    pub fn observe(&mut self, now: Sample, remaining: u64, judging: Judging) -> Option<Eta> {
        let started = self.started?;
        match self.window.back_mut() {
            // Several reports in one workflow task: keep the latest count only.
            Some(last) if last.at_ms >= now.at_ms => last.done = last.done.max(now.done),
            _ => self.window.push_back(now),
        }
        // The base is the newest sample at or before the window's start: everything older
        // no longer counts.
        let cutoff = now.at_ms.saturating_sub(judging.window_ms);
        while self.window.len() > 1 && self.window[1].at_ms <= cutoff {
            self.window.pop_front();
        }
        let base = *self.window.front()?;
        let measured_ms = now.at_ms.saturating_sub(started.at_ms);
        project(
            base,
            now,
            remaining,
            judging.deadline_at_ms,
            measured_ms >= judging.min_measure_ms,
        )
    }
}

/// The rate between `base` and `now`, and when `remaining` records are done at that rate.
/// `judge` says whether enough has been measured to call the run on track or not.
/// `None` when no time has passed since `base`.
pub fn project(
    base: Sample,
    now: Sample,
    remaining: u64,
    deadline_at_ms: u64,
    judge: bool,
) -> Option<Eta> {
    let elapsed_ms = now.at_ms.checked_sub(base.at_ms).filter(|&ms| ms > 0)?;
    let finished = now.done.saturating_sub(base.done);
    let rate_per_sec = finished as f64 * 1000.0 / elapsed_ms as f64;
    let projected_finish_ms = if remaining == 0 {
        Some(now.at_ms)
    } else if finished == 0 {
        None // nothing finished in the window: at this pace the run never ends
    } else {
        // remaining / (finished / elapsed), rounded up, in integers: no float drift.
        let ms = (u128::from(remaining) * u128::from(elapsed_ms)).div_ceil(u128::from(finished));
        Some(
            now.at_ms
                .saturating_add(u64::try_from(ms).unwrap_or(u64::MAX)),
        )
    };
    Some(Eta {
        at_ms: now.at_ms,
        rate_per_sec,
        projected_finish_ms,
        on_track: judge.then(|| projected_finish_ms.is_some_and(|f| f <= deadline_at_ms)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_ms: u64, done: u64) -> Sample {
        Sample { at_ms, done }
    }

    fn judging(deadline_at_ms: u64) -> Judging {
        Judging {
            deadline_at_ms,
            window_ms: 60_000,
            min_measure_ms: 10_000,
        }
    }

    #[test]
    fn steady_rate_projects_the_remaining_records_at_that_rate() {
        let eta = project(s(1_000, 0), s(11_000, 1_000), 500, 20_000, true).unwrap();
        assert_eq!(eta.rate_per_sec, 100.0);
        assert_eq!(eta.projected_finish_ms, Some(16_000));
        assert_eq!(eta.on_track, Some(true));
        assert_eq!(eta.at_ms, 11_000);
    }

    #[test]
    fn projection_rounds_up_and_is_late_past_the_deadline() {
        // 3 records in 1 s, 1 left: 333.33.. ms -> 334.
        let eta = project(s(0, 0), s(1_000, 3), 1, 1_333, true).unwrap();
        assert_eq!(eta.projected_finish_ms, Some(1_334));
        assert_eq!(eta.on_track, Some(false));
    }

    #[test]
    fn no_progress_means_no_finish_and_off_track_once_judged() {
        let eta = project(s(0, 50), s(5_000, 50), 10, u64::MAX, true).unwrap();
        assert_eq!(eta.rate_per_sec, 0.0);
        assert_eq!(eta.projected_finish_ms, None);
        assert_eq!(eta.on_track, Some(false));
        let early = project(s(0, 50), s(5_000, 50), 10, u64::MAX, false).unwrap();
        assert_eq!(
            early.on_track, None,
            "not judged before the minimum measure"
        );
    }

    #[test]
    fn nothing_remaining_finishes_now() {
        let eta = project(s(0, 0), s(2_000, 0), 0, 3_000, true).unwrap();
        assert_eq!(eta.projected_finish_ms, Some(2_000));
        assert_eq!(eta.on_track, Some(true));
        let late = project(s(0, 0), s(4_000, 0), 0, 3_000, true).unwrap();
        assert_eq!(late.on_track, Some(false));
    }

    #[test]
    fn no_elapsed_time_gives_no_projection() {
        assert_eq!(project(s(5, 0), s(5, 10), 10, 100, true), None);
        assert_eq!(project(s(6, 0), s(5, 10), 10, 100, true), None);
    }

    #[test]
    fn meter_is_silent_until_started_and_judges_after_the_minimum_measure() {
        let mut m = Meter::default();
        assert_eq!(m.observe(s(1_000, 0), 100, judging(u64::MAX)), None);
        m.start(s(1_000, 0));
        let early = m.observe(s(6_000, 0), 100, judging(u64::MAX)).unwrap();
        assert_eq!(early.on_track, None);
        let judged = m.observe(s(11_000, 100), 100, judging(u64::MAX)).unwrap();
        assert_eq!(judged.rate_per_sec, 10.0);
        assert_eq!(judged.projected_finish_ms, Some(21_000));
        assert_eq!(judged.on_track, Some(true));
    }

    #[test]
    fn meter_sees_an_outage_once_it_fills_the_window() {
        let mut m = Meter::default();
        m.start(s(0, 0));
        // 100 records/s for a minute, then nothing.
        m.observe(s(60_000, 6_000), 10_000, judging(u64::MAX));
        let half = m
            .observe(s(90_000, 6_000), 10_000, judging(u64::MAX))
            .unwrap();
        // The window (60 s) still holds 30 s of the good minute: 6000 / 90 s from the base 0.
        assert!(half.rate_per_sec > 0.0, "{half:?}");
        assert_eq!(half.on_track, Some(true));
        let stalled = m
            .observe(s(121_000, 6_000), 10_000, judging(u64::MAX))
            .unwrap();
        assert_eq!(stalled.rate_per_sec, 0.0);
        assert_eq!(stalled.projected_finish_ms, None);
        assert_eq!(stalled.on_track, Some(false));
        // Progress again: the rate comes back.
        let back = m
            .observe(s(131_000, 7_000), 9_000, judging(u64::MAX))
            .unwrap();
        assert!(back.rate_per_sec > 0.0);
        assert_eq!(back.on_track, Some(true));
    }

    #[test]
    fn compacted_meter_resumes_with_the_same_start_and_rate_base() {
        let mut m = Meter::default();
        assert!(m.compact().is_empty());
        m.start(s(0, 0));
        for (at, done) in [(30_000, 3_000), (61_000, 6_000), (90_000, 9_000)] {
            m.observe(s(at, done), 10_000, judging(u64::MAX));
        }
        // Window base: the newest sample at or before 90 s - 60 s, i.e. 30 s.
        assert_eq!(m.compact(), [s(0, 0), s(30_000, 3_000), s(90_000, 9_000)]);
        let mut resumed = Meter::resume(&m.compact());
        resumed.start(s(95_000, 9_000)); // the continued run's own start is ignored
        let eta = resumed
            .observe(s(100_000, 10_000), 1_000, judging(u64::MAX))
            .unwrap();
        assert_eq!(eta.rate_per_sec, 100.0, "measured from the carried base");
        assert_eq!(eta.on_track, Some(true), "judged: measured since 0 s");
    }

    #[test]
    fn meter_keeps_one_sample_per_instant_and_start_only_once() {
        let mut m = Meter::default();
        m.start(s(0, 0));
        m.start(s(50_000, 0)); // a repair round: still measured from the first start
        m.observe(s(10_000, 100), 0, judging(u64::MAX));
        let eta = m.observe(s(10_000, 300), 0, judging(u64::MAX)).unwrap();
        assert_eq!(eta.rate_per_sec, 30.0);
        assert_eq!(m.window.len(), 2);
        assert_eq!(
            eta.on_track,
            Some(true),
            "measured 10 s since the first start"
        );
    }
}
