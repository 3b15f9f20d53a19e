//! The strict sliding-window rate limit and the arrival statistics that let a test prove a
//! client never exceeded it. Both look at arrival instants only, before any latency.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// What an arrival asked for, so a tight span can say which requests made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalKind {
    Token,
    Send,
    Read,
}

/// One of the tightest spans of `limit + 1` arrivals: when it ended, and the kinds of its
/// first and last request (a read or token request leaving late shows up as `first`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TightSpan {
    pub span_ms: f64,
    /// When the span's last request arrived, in ms since the simulator started.
    pub at_ms: f64,
    pub first: ArrivalKind,
    pub last: ArrivalKind,
}

/// A tight span as kept: `at` is when it ended, since the statistics started.
#[derive(Debug, Clone, Copy)]
struct Tight {
    span: Duration,
    at: Duration,
    first: ArrivalKind,
    last: ArrivalKind,
}

/// How many of the tightest spans are kept.
const TIGHT_KEPT: usize = 5;

/// Admits a request when fewer than `limit` admitted requests arrived in the half-open
/// window `(t - window, t]`.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    admitted: VecDeque<Instant>,
}

/// What the `RateLimit` headers report after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    pub limit: u32,
    pub window_secs: u64,
    pub remaining: u32,
    /// Seconds until a slot frees up (0 when one is free now).
    pub reset_secs: u64,
}

impl RateLimiter {
    /// `Ok` when admitted; `Err` when over the limit. `None` inside means unlimited.
    pub fn admit(
        &mut self,
        now: Instant,
        limit: u32,
        window: Duration,
    ) -> Result<Option<Quota>, Quota> {
        if limit == 0 {
            self.admitted.clear();
            return Ok(None);
        }
        expire(&mut self.admitted, now, window);
        let admitted = self.admitted.len() < limit as usize;
        if admitted {
            self.admitted.push_back(now);
        }
        let full = self.admitted.len() >= limit as usize;
        let quota = Quota {
            limit,
            window_secs: ceil_secs(window).max(1),
            remaining: limit.saturating_sub(self.admitted.len() as u32),
            reset_secs: match self.admitted.front() {
                Some(oldest) if full => ceil_secs(*oldest + window - now).max(1),
                _ => 0,
            },
        };
        if admitted {
            Ok(Some(quota))
        } else {
            Err(quota)
        }
    }
}

/// Every API arrival, admitted or not: the busiest window seen, the tightest span of
/// `limit + 1` arrivals (how close a client came to the limit) and a per-second histogram.
#[derive(Debug)]
pub(crate) struct ArrivalStats {
    started: Instant,
    recent: VecDeque<Instant>,
    /// The last `limit` arrivals, whatever their age.
    last: VecDeque<(Instant, ArrivalKind)>,
    pub max_in_window: u32,
    /// The few tightest spans, tightest first.
    tightest: Vec<Tight>,
    pub per_second: Vec<u32>,
}

impl ArrivalStats {
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            recent: VecDeque::new(),
            last: VecDeque::new(),
            max_in_window: 0,
            tightest: Vec::new(),
            per_second: Vec::new(),
        }
    }

    /// Counts an arrival; `limit` is the rate limit (0 = unlimited, no span kept).
    pub fn arrive(&mut self, now: Instant, kind: ArrivalKind, window: Duration, limit: u32) {
        expire(&mut self.recent, now, window);
        self.recent.push_back(now);
        self.max_in_window = self.max_in_window.max(self.recent.len() as u32);
        if limit > 0 {
            // `limit + 1` arrivals inside one window are one too many: the span from the
            // oldest of the last `limit` to now is the margin a client kept (or missed).
            while self.last.len() > limit as usize {
                self.last.pop_front();
            }
            if self.last.len() == limit as usize
                && let Some((oldest, first)) = self.last.pop_front()
            {
                self.keep_if_tight(Tight {
                    span: now.duration_since(oldest),
                    at: now.duration_since(self.started),
                    first,
                    last: kind,
                });
            }
            self.last.push_back((now, kind));
        }
        let second = now.duration_since(self.started).as_secs() as usize;
        if self.per_second.len() <= second {
            self.per_second.resize(second + 1, 0);
        }
        self.per_second[second] += 1;
    }
}

impl ArrivalStats {
    /// The shortest time in which `limit + 1` requests arrived, if that many did.
    pub fn tightest_span(&self) -> Option<Duration> {
        self.tightest.first().map(|t| t.span)
    }

    pub fn tightest_spans(&self) -> Vec<TightSpan> {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        self.tightest
            .iter()
            .map(|t| TightSpan {
                span_ms: ms(t.span),
                at_ms: ms(t.at),
                first: t.first,
                last: t.last,
            })
            .collect()
    }

    fn keep_if_tight(&mut self, span: Tight) {
        self.tightest.push(span);
        self.tightest.sort_by_key(|t| t.span);
        self.tightest.truncate(TIGHT_KEPT);
    }
}

/// Drops the instants that are no longer in `(now - window, now]`.
fn expire(instants: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while instants.front().is_some_and(|t| *t + window <= now) {
        instants.pop_front();
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(1000);

    #[test]
    fn admits_up_to_the_limit_per_sliding_window() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::default();
        assert!(rl.admit(t0, 2, W).is_ok());
        assert!(rl.admit(t0 + Duration::from_millis(100), 2, W).is_ok());
        let refused = rl.admit(t0 + Duration::from_millis(200), 2, W).unwrap_err();
        assert_eq!((refused.remaining, refused.reset_secs), (0, 1));
        // The window is half-open: at exactly t0 + 1 s the first arrival has left it.
        assert!(rl.admit(t0 + W, 2, W).is_ok());
        assert!(rl.admit(t0 + W, 2, W).is_err());
    }

    #[test]
    fn refused_requests_do_not_take_slots() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::default();
        for i in 0..10 {
            let _ = rl.admit(t0 + Duration::from_millis(i), 2, W);
        }
        assert!(rl.admit(t0 + W + Duration::from_millis(1), 2, W).is_ok());
    }

    #[test]
    fn stats_count_every_arrival() {
        let t0 = Instant::now();
        let mut stats = ArrivalStats::new(t0);
        for ms in [0, 10, 20, 1500, 2600] {
            stats.arrive(t0 + Duration::from_millis(ms), ArrivalKind::Send, W, 2);
        }
        assert_eq!(stats.max_in_window, 3);
        assert_eq!(stats.per_second, vec![3, 1, 1]);
        // 0, 10, 20: three arrivals in 20 ms.
        assert_eq!(stats.tightest_span(), Some(Duration::from_millis(20)));
    }

    #[test]
    fn the_tightest_span_shows_the_margin_of_a_paced_client() {
        let t0 = Instant::now();
        let mut stats = ArrivalStats::new(t0);
        // Two per 1015 ms, half a window apart, one start 4 ms late.
        for ms in [0, 508, 1015, 1527, 2030, 2537] {
            stats.arrive(t0 + Duration::from_millis(ms), ArrivalKind::Send, W, 2);
        }
        assert_eq!(stats.max_in_window, 2);
        // 1527 - 508 = 1019, 2030 - 1015 = 1015, 2537 - 1527 = 1010.
        assert_eq!(stats.tightest_span(), Some(Duration::from_millis(1010)));
    }

    #[test]
    fn the_tightest_spans_name_the_requests_that_made_them() {
        let t0 = Instant::now();
        let mut stats = ArrivalStats::new(t0);
        let arrivals = [
            (0, ArrivalKind::Token),
            (508, ArrivalKind::Send),
            (1006, ArrivalKind::Read),
            (1523, ArrivalKind::Send),
            (2030, ArrivalKind::Send),
        ];
        for (ms, kind) in arrivals {
            stats.arrive(t0 + Duration::from_millis(ms), kind, W, 2);
        }
        // Spans: token..read 1006, send..send 1015, read..send 1024.
        let kept: Vec<_> = stats
            .tightest_spans()
            .iter()
            .map(|s| {
                (
                    s.span_ms.round() as u64,
                    s.first,
                    s.last,
                    s.at_ms.round() as u64,
                )
            })
            .collect();
        assert_eq!(
            kept,
            vec![
                (1006, ArrivalKind::Token, ArrivalKind::Read, 1006),
                (1015, ArrivalKind::Send, ArrivalKind::Send, 1523),
                (1024, ArrivalKind::Read, ArrivalKind::Send, 2030),
            ]
        );
    }

    #[test]
    fn no_span_without_a_limit_or_before_enough_arrivals() {
        let t0 = Instant::now();
        let mut unlimited = ArrivalStats::new(t0);
        let mut limited = ArrivalStats::new(t0);
        for ms in [0, 1, 2] {
            unlimited.arrive(t0 + Duration::from_millis(ms), ArrivalKind::Send, W, 0);
        }
        for ms in [0, 1] {
            limited.arrive(t0 + Duration::from_millis(ms), ArrivalKind::Send, W, 2);
        }
        assert_eq!(
            (unlimited.tightest_span(), limited.tightest_span()),
            (None, None)
        );
    }
}
