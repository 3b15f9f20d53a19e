//! School quarters (`YYYY-Qn`) and the calendar arithmetic the scheduled run needs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A calendar quarter: Q1 = Jan–Mar … Q4 = Oct–Dec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Quarter {
    pub year: u16,
    pub q: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a quarter: use YYYY-Qn with n from 1 to 4, e.g. 2026-Q4")]
pub struct QuarterParseError(pub String);

impl Quarter {
    pub fn new(year: u16, q: u8) -> Option<Self> {
        (1..=4).contains(&q).then_some(Self { year, q })
    }

    /// The quarter containing the given day of year-month (month 1..=12).
    pub fn containing(year: u16, month: u8) -> Self {
        Self {
            year,
            q: (month.clamp(1, 12) - 1) / 3 + 1,
        }
    }

    pub fn previous(self) -> Self {
        if self.q == 1 {
            Self {
                year: self.year - 1,
                q: 4,
            }
        } else {
            Self {
                year: self.year,
                q: self.q - 1,
            }
        }
    }

    /// When the quarter begins: its first day at 00:00 UTC, in unix seconds.
    pub fn begins_at_unix_secs(self) -> i64 {
        days_from_civil(i64::from(self.year), 3 * (self.q - 1) + 1) * 86_400
    }

    /// The quarter the instant `unix_secs` (UTC) falls in.
    pub fn at(unix_secs: i64) -> Self {
        let (year, month) = civil_year_month(unix_secs.div_euclid(86_400));
        Self::containing(year, month)
    }

    /// The quarter that ended most recently before the instant `unix_secs` (UTC): what a
    /// scheduled run on the 1st of a quarter must sync.
    pub fn last_ended_before(unix_secs: i64) -> Self {
        Self::at(unix_secs).previous()
    }
}

/// Converts days since 1970-01-01 into (year, month), after Howard Hinnant's algorithm.
fn civil_year_month(days: i64) -> (u16, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as u16, month as u8)
}

/// Days since 1970-01-01 of the first day of (year, month), after Howard Hinnant's
/// algorithm.
fn days_from_civil(year: i64, month: u8) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for Quarter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-Q{}", self.year, self.q)
    }
}

impl FromStr for Quarter {
    type Err = QuarterParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || QuarterParseError(s.to_string());
        let (year, q) = s.split_once("-Q").ok_or_else(err)?;
        if year.len() != 4 || q.len() != 1 {
            return Err(err());
        }
        let year = year.parse::<u16>().map_err(|_| err())?;
        let q = q.parse::<u8>().map_err(|_| err())?;
        Self::new(year, q).ok_or_else(err)
    }
}

impl TryFrom<String> for Quarter {
    type Error = QuarterParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Quarter> for String {
    fn from(q: Quarter) -> String {
        q.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let q: Quarter = "2026-Q4".parse().unwrap();
        assert_eq!(q, Quarter { year: 2026, q: 4 });
        assert_eq!(q.to_string(), "2026-Q4");
        for bad in [
            "2026-Q0", "2026-Q5", "26-Q1", "2026Q1", "2026-Q12", "", "abcd-Q1",
        ] {
            assert!(bad.parse::<Quarter>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_quarter_begins_on_the_first_day_of_its_first_month() {
        let begins = |q: &str| q.parse::<Quarter>().unwrap().begins_at_unix_secs();
        assert_eq!(begins("1970-Q1"), 0);
        assert_eq!(begins("2026-Q4"), 1_790_812_800); // 2026-10-01T00:00:00Z
        assert_eq!(begins("2027-Q1"), 1_798_761_600); // 2027-01-01T00:00:00Z
        assert_eq!(begins("2024-Q2"), 1_711_929_600); // 2024-04-01T00:00:00Z (leap year)
        for q in ["1999-Q4", "2026-Q3", "2400-Q1"] {
            let q: Quarter = q.parse().unwrap();
            // The instant a quarter begins, the quarter before it has just ended.
            assert_eq!(
                Quarter::last_ended_before(q.begins_at_unix_secs()),
                q.previous()
            );
        }
    }

    #[test]
    fn scheduled_run_syncs_the_quarter_that_just_ended() {
        // 2026-10-01T02:00:00Z: the Q4 run syncs Q3.
        assert_eq!(
            Quarter::last_ended_before(1_790_820_000).to_string(),
            "2026-Q3"
        );
        // 2027-01-01T02:00:00Z: syncs 2026-Q4.
        assert_eq!(
            Quarter::last_ended_before(1_798_768_800).to_string(),
            "2026-Q4"
        );
        // 2024-02-29T00:00:00Z (leap day) is in Q1, so Q4 2023.
        assert_eq!(
            Quarter::last_ended_before(1_709_164_800).to_string(),
            "2023-Q4"
        );
    }
}
