//! UTC times as people read them (`2026-11-28 14:05 UTC`), from Unix milliseconds:
//! proleptic Gregorian, no time-zone database needed.

/// `2026-11-28 14:05 UTC`.
pub fn utc_minute(unix_ms: u64) -> String {
    let (y, m, d, minute_of_day) = parts(unix_ms);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

/// `14:05`, the time of day alone (for a plot's ticks).
pub fn hour_minute(unix_ms: u64) -> String {
    let (.., minute_of_day) = parts(unix_ms);
    format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60)
}

/// `11-28 14:05`, for ticks of a plot that spans days.
pub fn day_hour_minute(unix_ms: u64) -> String {
    let (_, m, d, minute_of_day) = parts(unix_ms);
    format!(
        "{m:02}-{d:02} {:02}:{:02}",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

fn parts(unix_ms: u64) -> (i64, u32, u32, u64) {
    let minutes = unix_ms / 60_000;
    let (days, minute_of_day) = (minutes / 1_440, minutes % 1_440);
    let (y, m, d) = civil_from_days(days as i64);
    (y, m, d, minute_of_day)
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_minutes_across_leap_days_and_centuries() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_minute(1_795_876_200_000), "2026-11-28 14:30 UTC");
        assert_eq!(utc_minute(951_868_799_000), "2000-02-29 23:59 UTC");
        assert_eq!(utc_minute(4_102_444_740_000), "2099-12-31 23:59 UTC");
        assert_eq!(hour_minute(1_795_876_200_000), "14:30");
        assert_eq!(day_hour_minute(951_868_799_000), "02-29 23:59");
    }
}
