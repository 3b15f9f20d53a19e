//! A schedule's calendar as cron text again. Temporal keeps a cron string as a structured
//! calendar (ranges per field), so `describe` reads the ranges back into the five fields
//! people wrote: `0 2 1 */3 *`.

use temporalio_common::protos::temporal::api::schedule::v1::{Range, StructuredCalendarSpec};

/// `minute hour day-of-month month day-of-week`, with the seconds first when they are
/// not 0, as `temporal schedule` would accept it back.
pub fn cron_text(c: &StructuredCalendarSpec) -> String {
    let fields = [
        field(&c.minute, 0, 59),
        field(&c.hour, 0, 23),
        field(&c.day_of_month, 1, 31),
        field(&c.month, 1, 12),
        field(&c.day_of_week, 0, 6),
    ]
    .join(" ");
    let on_second_0 = matches!(c.second.as_slice(), [r] if r.start == 0 && r.end <= 0);
    let mut text = if on_second_0 {
        fields
    } else {
        format!("{} {fields}", field(&c.second, 0, 59))
    };
    if !c.year.is_empty() {
        text.push_str(&format!(" (years {})", field(&c.year, i32::MIN, i32::MAX)));
    }
    text
}

/// One field: ranges joined by commas; `*` for the whole span. A field with no range
/// matches nothing, which Temporal allows and cron cannot say.
fn field(ranges: &[Range], min: i32, max: i32) -> String {
    if ranges.is_empty() {
        return "(never)".to_string();
    }
    ranges
        .iter()
        .map(|r| {
            // Temporal reads an end below the start as the start, and a step of 0 as 1.
            let end = r.end.max(r.start);
            let step = r.step.max(1);
            let span = match (r.start, end) {
                (s, e) if s == min && e == max => "*".to_string(),
                (s, e) if s == e => return s.to_string(),
                (s, e) => format!("{s}-{e}"),
            };
            if step == 1 {
                span
            } else {
                format!("{span}/{step}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: i32, end: i32, step: i32) -> Range {
        Range { start, end, step }
    }

    /// As the dev server stores the seed's `0 2 1 */3 *`.
    fn quarterly() -> StructuredCalendarSpec {
        StructuredCalendarSpec {
            second: vec![range(0, 0, 0)],
            minute: vec![range(0, 0, 0)],
            hour: vec![range(2, 0, 0)],
            day_of_month: vec![range(1, 0, 0)],
            month: vec![range(1, 12, 3)],
            day_of_week: vec![range(0, 6, 1)],
            ..Default::default()
        }
    }

    #[test]
    fn the_seeds_cron_reads_back_as_written() {
        assert_eq!(cron_text(&quarterly()), "0 2 1 */3 *");
    }

    #[test]
    fn lists_spans_steps_seconds_and_years_read_back() {
        let c = StructuredCalendarSpec {
            second: vec![range(30, 30, 1)],
            minute: vec![range(0, 0, 0), range(15, 45, 15)],
            hour: vec![range(8, 17, 1)],
            month: vec![range(3, 12, 3)],
            year: vec![range(2027, 2027, 0)],
            ..quarterly()
        };
        assert_eq!(cron_text(&c), "30 0,15-45/15 8-17 1 3-12/3 * (years 2027)");
        let never = StructuredCalendarSpec {
            day_of_week: vec![],
            ..quarterly()
        };
        assert_eq!(cron_text(&never), "0 2 1 */3 (never)");
    }
}
