//! The report's two plots, on one time axis: records confirmed over time against the
//! deadline, and the API's answers to SendBatch by status class per minute (or per a few
//! minutes, so a 48-hour run stays a readable number of bars).

use std::collections::BTreeMap;

use crate::answer_class::AnswerClass;
use crate::store::AnswersInMinute;
use crate::svg_chart::{Chart, nice_ticks};
use crate::utc::{day_hour_minute, hour_minute, utc_minute};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 300.0;
/// At most this many points on the confirmed line (the rest are thinned out evenly).
const MAX_POINTS: usize = 600;
/// At most this many bars of answers.
const MAX_BARS: i64 = 240;
const MINUTE: i64 = 60_000;

/// The time axis both plots share (Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from: i64,
    pub to: i64,
}

impl Span {
    /// From the run's start (else the first event) to the last event, the deadline
    /// included when it falls within one more such span (otherwise it would squeeze the
    /// run into a sliver at the left; it is then marked at the right edge).
    pub fn of(
        started_ms: Option<i64>,
        deadline_ms: Option<i64>,
        confirmed: &[(i64, u64)],
        answers: &[AnswersInMinute],
    ) -> Option<Span> {
        let firsts = [
            confirmed.first().map(|(s, _)| s * 1000),
            answers.first().map(|a| a.minute_ms),
        ];
        let lasts = [
            confirmed.last().map(|(s, _)| s * 1000 + 1000),
            answers.last().map(|a| a.minute_ms + MINUTE),
        ];
        let first = firsts.into_iter().flatten().min()?;
        let last = lasts.into_iter().flatten().max()?;
        let from = started_ms.filter(|s| *s <= first).unwrap_or(first);
        let mut to = last.max(from + 1000);
        if let Some(d) = deadline_ms
            && d > to
            && d - from <= 2 * (to - from)
        {
            to = d + (d - from) / 50;
        }
        Some(Span { from, to })
    }

    fn range(self) -> (f64, f64) {
        (self.from as f64, self.to as f64)
    }
}

/// Cumulative records confirmed against the quarter's total and the deadline.
pub fn confirmed_svg(
    span: Option<Span>,
    confirmed: &[(i64, u64)],
    total: u64,
    deadline_ms: Option<i64>,
) -> String {
    let title = "Records confirmed over time";
    let Some(span) = span.filter(|_| !confirmed.is_empty()) else {
        return empty(title, "no record of this quarter was confirmed");
    };
    let done: u64 = confirmed.iter().map(|(_, n)| n).sum();
    let top = nice_ticks(total.max(done) as f64 * 1.05, 5);
    let mut chart = Chart::new(
        WIDTH,
        HEIGHT,
        span.range(),
        *top.last().unwrap_or(&1.0),
        title,
    );
    chart.y_grid(
        &top.iter()
            .map(|v| (*v, count_label(*v)))
            .collect::<Vec<_>>(),
    );
    time_axis(&mut chart, span);
    // Records confirmed before the axis starts (an earlier sync of the quarter) are the
    // line's starting value.
    let mut sum: u64 = confirmed
        .iter()
        .filter(|(s, _)| s * 1000 < span.from)
        .map(|(_, n)| n)
        .sum();
    let mut points = vec![(span.from as f64, sum as f64)];
    for &(s, n) in confirmed.iter().filter(|(s, _)| s * 1000 >= span.from) {
        sum += n;
        points.push(((s * 1000 + 1000) as f64, sum as f64));
    }
    chart.hline(
        total as f64,
        "#555",
        &format!("{} records in the quarter", count_label(total as f64)),
    );
    chart.line(&thin(points), "#1f77b4", "series confirmed", false);
    if let Some(d) = deadline_ms {
        let text = if d <= span.to {
            format!("deadline {}", utc_minute(d as u64))
        } else {
            format!("deadline {} →", utc_minute(d as u64))
        };
        chart.vline(d as f64, "#d62728", "deadline", &text);
    }
    chart.legend(&[("confirmed", "#1f77b4"), ("deadline", "#d62728")]);
    chart.finish()
}

/// Answers per bucket of minutes, stacked by status class.
pub fn answers_svg(span: Option<Span>, answers: &[AnswersInMinute]) -> String {
    let Some(span) = span.filter(|_| !answers.is_empty()) else {
        return empty(
            "API answers per minute",
            "no answers recorded (nothing was sent, or the report predates this record)",
        );
    };
    let bucket = bucket_minutes(span) * MINUTE;
    let mut buckets: BTreeMap<i64, BTreeMap<AnswerClass, u64>> = BTreeMap::new();
    for a in answers {
        let start = a.minute_ms - a.minute_ms.rem_euclid(bucket);
        *buckets
            .entry(start)
            .or_default()
            .entry(AnswerClass::parse(&a.class))
            .or_default() += a.answers;
    }
    let highest = buckets
        .values()
        .map(|c| c.values().sum::<u64>())
        .max()
        .unwrap_or(0);
    let title = match bucket / MINUTE {
        1 => "API answers per minute".to_string(),
        n => format!("API answers per {n} minutes"),
    };
    let top = nice_ticks(highest as f64 * 1.1, 5);
    let mut chart = Chart::new(
        WIDTH,
        HEIGHT,
        span.range(),
        *top.last().unwrap_or(&1.0),
        &title,
    );
    chart.y_grid(
        &top.iter()
            .map(|v| (*v, count_label(*v)))
            .collect::<Vec<_>>(),
    );
    time_axis(&mut chart, span);
    for (start, classes) in &buckets {
        let segments: Vec<(f64, &str, String)> = AnswerClass::ALL
            .iter()
            .filter_map(|c| {
                let n = *classes.get(c)?;
                Some((n as f64, color(*c), format!("bar c-{}", c.as_str())))
            })
            .collect();
        let segments: Vec<(f64, &str, &str)> = segments
            .iter()
            .map(|(v, c, k)| (*v, *c, k.as_str()))
            .collect();
        chart.stacked_bar(*start as f64, (*start + bucket) as f64, &segments);
    }
    let present: Vec<(&str, &str)> = AnswerClass::ALL
        .iter()
        .filter(|c| buckets.values().any(|b| b.contains_key(c)))
        .map(|c| (c.as_str(), color(*c)))
        .collect();
    chart.legend(&present);
    chart.finish()
}

/// The colour of a class, the same in the plot and the table.
pub fn color(class: AnswerClass) -> &'static str {
    match class {
        AnswerClass::Success => "#2ca02c",
        AnswerClass::ClientError => "#ff7f0e",
        AnswerClass::RateLimited => "#9467bd",
        AnswerClass::ServerError => "#d62728",
        AnswerClass::NoAnswer => "#7f7f7f",
        AnswerClass::Other => "#8c564b",
    }
}

/// The fewest minutes per bar (1, 2, 5, 10, 15, 30, 60, then hours) that keep the bars
/// at most [`MAX_BARS`].
fn bucket_minutes(span: Span) -> i64 {
    let minutes = (span.to - span.from) / MINUTE + 1;
    [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440]
        .into_iter()
        .find(|b| minutes / b <= MAX_BARS)
        .unwrap_or(1440)
}

/// About eight UTC ticks at round times.
fn time_axis(chart: &mut Chart, span: Span) {
    const STEPS: [i64; 15] = [
        1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000,
        3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000,
    ];
    let length = span.to - span.from;
    let step = STEPS
        .into_iter()
        .find(|s| length / s <= 8)
        .unwrap_or(86_400_000);
    let days = length > 86_400_000;
    let mut t = span.from + (step - span.from.rem_euclid(step)) % step;
    let mut ticks = Vec::new();
    while t <= span.to {
        let label = match (days, step < MINUTE) {
            (true, _) => day_hour_minute(t as u64),
            (false, true) => format!("{}:{:02}", hour_minute(t as u64), t / 1000 % 60),
            (false, false) => hour_minute(t as u64),
        };
        ticks.push((t as f64, label));
        t += step;
    }
    chart.x_ticks(&ticks);
    chart.x_label(&format!(
        "UTC, from {} to {}",
        utc_minute(span.from as u64),
        utc_minute(span.to as u64)
    ));
}

fn empty(title: &str, why: &str) -> String {
    let mut chart = Chart::new(WIDTH, 120.0, (0.0, 1.0), 1.0, title);
    chart.note(why);
    chart.finish()
}

/// Keeps at most [`MAX_POINTS`] points, evenly, always the first and the last.
fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let every = points.len().div_ceil(MAX_POINTS);
    let last = points.len() - 1;
    points
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0 || *i == last)
        .map(|(_, p)| p)
        .collect()
}

/// `1,250,000` for axis labels.
pub fn count_label(v: f64) -> String {
    let digits = format!("{}", v.round() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(minute_ms: i64, class: &str, answers: u64) -> AnswersInMinute {
        AnswersInMinute {
            minute_ms,
            class: class.into(),
            answers,
        }
    }

    const T0: i64 = 1_795_876_200_000;

    #[test]
    fn a_far_deadline_is_marked_at_the_edge_not_squeezing_the_run() {
        let confirmed = [(T0 / 1000 + 10, 100), (T0 / 1000 + 70, 50)];
        let far = T0 + 47 * 3_600_000;
        let span = Span::of(Some(T0), Some(far), &confirmed, &[]).unwrap();
        assert_eq!(span.from, T0);
        assert!(span.to < T0 + 3_600_000, "{span:?}");
        let svg = confirmed_svg(Some(span), &confirmed, 200, Some(far));
        assert!(
            svg.contains(r#"class="series confirmed" data-points="3""#),
            "{svg}"
        );
        assert!(svg.contains("deadline 2026-11-30 13:30 UTC →"), "{svg}");
        // A near one is inside the axis.
        let near = T0 + 100_000;
        let span = Span::of(Some(T0), Some(near), &confirmed, &[]).unwrap();
        assert!(span.to > near);
    }

    #[test]
    fn answers_stack_by_class_and_bucket() {
        let answers = [
            answer(T0, "2xx", 100),
            answer(T0, "5xx", 3),
            answer(T0 + MINUTE, "2xx", 110),
            answer(T0 + MINUTE, "429", 1),
        ];
        let span = Span::of(None, None, &[], &answers);
        let svg = answers_svg(span, &answers);
        assert_eq!(svg.matches(r#"class="bar c-2xx""#).count(), 2, "{svg}");
        assert_eq!(svg.matches(r#"class="bar c-5xx""#).count(), 1);
        assert_eq!(svg.matches(r#"class="bar c-429""#).count(), 1);
        assert!(svg.contains("API answers per minute"));
        // Two days of minutes go in bars of several minutes.
        let long = Span {
            from: T0,
            to: T0 + 2 * 86_400_000,
        };
        assert_eq!(bucket_minutes(long), 15);
    }

    #[test]
    fn empty_plots_say_why() {
        let svg = confirmed_svg(None, &[], 0, None);
        assert!(svg.contains("no record of this quarter was confirmed"));
        assert!(!svg.contains("series confirmed"));
        let svg = answers_svg(None, &[]);
        assert!(svg.contains("no answers recorded"));
        assert!(!svg.contains("class=\"bar"));
    }

    #[test]
    fn long_series_are_thinned_keeping_the_ends() {
        let points: Vec<_> = (0..5000).map(|i| (i as f64, i as f64)).collect();
        let thinned = thin(points);
        assert!(thinned.len() <= MAX_POINTS + 1);
        assert_eq!(thinned.first(), Some(&(0.0, 0.0)));
        assert_eq!(thinned.last(), Some(&(4999.0, 4999.0)));
        assert_eq!(count_label(1_250_000.0), "1,250,000");
        assert_eq!(count_label(999.0), "999");
    }
}
