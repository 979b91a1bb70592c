//! Dates as Ukraine sees them.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};

/// The last Sunday of a month, at 01:00 UTC: when EU summer time starts
/// (March) and ends (October).
fn last_sunday_at_one_utc(year: i32, month: u32) -> DateTime<Utc> {
    let first_of_next =
        if month == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { NaiveDate::from_ymd_opt(year, month + 1, 1) }
            .unwrap_or(NaiveDate::MIN);
    let mut day = first_of_next - Duration::days(1);
    while day.weekday() != Weekday::Sun {
        day -= Duration::days(1);
    }
    Utc.from_utc_datetime(&day.and_hms_opt(1, 0, 0).unwrap_or_default())
}

/// Kyiv's offset from UTC at an instant: +3 in summer time, +2 otherwise
/// (Ukraine follows the EU rule).
pub fn kyiv_offset_hours(instant: DateTime<Utc>) -> i64 {
    let year = instant.year();
    let summer = instant >= last_sunday_at_one_utc(year, 3) && instant < last_sunday_at_one_utc(year, 10);
    if summer { 3 } else { 2 }
}

/// The wall-clock time in Kyiv at an instant.
pub fn kyiv_time(instant: DateTime<Utc>) -> chrono::NaiveDateTime {
    (instant + Duration::hours(kyiv_offset_hours(instant))).naive_utc()
}

/// The calendar date in Kyiv at an instant.
pub fn kyiv_date(instant: DateTime<Utc>) -> NaiveDate {
    kyiv_time(instant).date()
}

/// Today's date in Kyiv.
pub fn kyiv_today() -> NaiveDate {
    kyiv_date(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap_or_default()
    }

    #[test]
    fn new_year_arrives_in_kyiv_two_hours_before_utc() {
        assert_eq!(kyiv_date(utc("2025-12-31T21:59:59Z")), NaiveDate::from_ymd_opt(2025, 12, 31).unwrap_or_default());
        assert_eq!(kyiv_date(utc("2025-12-31T22:00:00Z")), NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default());
    }

    #[test]
    fn summer_time_follows_the_eu_rule() {
        // 2026: summer time from 29 March 01:00 UTC to 25 October 01:00 UTC.
        assert_eq!(kyiv_offset_hours(utc("2026-03-29T00:59:59Z")), 2);
        assert_eq!(kyiv_offset_hours(utc("2026-03-29T01:00:00Z")), 3);
        assert_eq!(kyiv_offset_hours(utc("2026-10-25T00:59:59Z")), 3);
        assert_eq!(kyiv_offset_hours(utc("2026-10-25T01:00:00Z")), 2);
    }
}
