//! RFC 5322 §3.3 date-time in UTC, from unix seconds. No clock: the time is
//! always an argument.

/// The last second RFC 5322 can write with a four-digit year:
/// 9999-12-31T23:59:59Z.
const MAX_SECS: i64 = 253_402_300_799;

const SECS_PER_DAY: i64 = 86_400;

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `Thu, 29 Feb 2024 12:34:56 +0000`. RFC 5322 §3.3: day-of-week, day,
/// month, four-digit year, time, zone; `+0000` because the time is known to
/// be UTC (`-0000` would mean "zone unknown"). Times before the epoch are
/// written as the epoch and times past year 9999 as its last second, so the
/// year always has four digits.
pub fn rfc5322_date(unix_secs: i64) -> String {
    let secs = unix_secs.clamp(0, MAX_SECS);
    let days = secs / SECS_PER_DAY;
    let of_day = secs % SECS_PER_DAY;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 4).
    let weekday = WEEKDAYS[((days + 4) % 7) as usize];
    let month = MONTHS[(month - 1) as usize];
    let (hour, minute, second) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    format!("{weekday}, {day:02} {month} {year:04} {hour:02}:{minute:02}:{second:02} +0000")
}

/// Proleptic Gregorian (year, month 1..=12, day 1..=31) of a count of days
/// since 1970-01-01, for days ≥ 0.
///
/// The calendar is counted in 400-year cycles of 146 097 days whose years
/// start on 1 March, so the leap day is the last day of a cycle year and the
/// month lengths from March on follow a fixed 153-days-per-5-months pattern.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // Days from 0000-03-01 to 1970-01-01.
    let shifted = days + 719_468;
    let cycle = shifted.div_euclid(146_097);
    let day_of_cycle = shifted.rem_euclid(146_097);
    // Years into the cycle: remove the leap days seen so far (one every 4
    // years, except every 100, except every 400), then divide.
    let year_of_cycle = (day_of_cycle - day_of_cycle / 1_460 + day_of_cycle / 36_524 - day_of_cycle / 146_096) / 365;
    let day_of_year = day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100);
    // Month counted from March = 0.
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 { march_month + 3 } else { march_month - 9 };
    let year = year_of_cycle + cycle * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
    }

    #[test]
    fn leap_days() {
        assert_eq!(rfc5322_date(1_709_210_096), "Thu, 29 Feb 2024 12:34:56 +0000");
        // 2000 is a leap year (divisible by 400).
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        // 2100 is not (divisible by 100, not by 400).
        assert_eq!(rfc5322_date(4_107_542_399), "Sun, 28 Feb 2100 23:59:59 +0000");
        assert_eq!(rfc5322_date(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 +0000");
    }

    #[test]
    fn year_ends_and_bounds() {
        assert_eq!(rfc5322_date(946_684_799), "Fri, 31 Dec 1999 23:59:59 +0000");
        assert_eq!(rfc5322_date(MAX_SECS), "Fri, 31 Dec 9999 23:59:59 +0000");
        assert_eq!(rfc5322_date(i64::MAX), "Fri, 31 Dec 9999 23:59:59 +0000");
        assert_eq!(rfc5322_date(-1), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(i64::MIN), "Thu, 01 Jan 1970 00:00:00 +0000");
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // Walk 1970..2100 day by day: the day of month either grows by one or
        // restarts at 1 with the next month, and month lengths are right.
        let mut previous = civil_from_days(0);
        assert_eq!(previous, (1970, 1, 1));
        for days in 1..47_482 {
            let current = civil_from_days(days);
            let (py, pm, pd) = previous;
            let leap = (py % 4 == 0 && py % 100 != 0) || py % 400 == 0;
            let length = match pm {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let expected = if pd < length {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!(current, expected, "day {days}");
            previous = current;
        }
    }
}
