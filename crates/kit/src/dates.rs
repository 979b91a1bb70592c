//! `esocial.common.v1.Date` and `NaiveDate`, with validation that names the
//! field.

use chrono::{Datelike, NaiveDate};
use esocial_proto::common::v1 as common;

use crate::Violations;

pub fn to_proto(date: NaiveDate) -> common::Date {
    common::Date {
        year: date.year(),
        month: i32::try_from(date.month()).unwrap_or_default(),
        day: i32::try_from(date.day()).unwrap_or_default(),
    }
}

/// The calendar date, if it is one between 1900 and 2999.
pub fn from_proto(date: &common::Date) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(date.year, u32::try_from(date.month).ok()?, u32::try_from(date.day).ok()?)
        .filter(|date| (1900..=2999).contains(&date.year()))
}

/// A required date.
pub fn required(violations: &mut Violations, field: &str, date: Option<&common::Date>) -> Option<NaiveDate> {
    let Some(date) = date else {
        violations.add(field, "is required");
        return None;
    };
    let parsed = from_proto(date);
    if parsed.is_none() {
        violations.add(field, "is not a calendar date between 1900 and 2999");
    }
    parsed
}

/// An optional date, `default` when absent.
pub fn or_default(
    violations: &mut Violations,
    field: &str,
    date: Option<&common::Date>,
    default: NaiveDate,
) -> NaiveDate {
    match date {
        None => default,
        Some(_) => required(violations, field, date).unwrap_or(default),
    }
}

/// A required period: its first day, and its last day if it has one (not
/// before the first).
pub fn period(
    violations: &mut Violations,
    field: &str,
    period: Option<&common::ValidityPeriod>,
) -> Option<(NaiveDate, Option<NaiveDate>)> {
    let Some(period) = period else {
        violations.add(field, "is required");
        return None;
    };
    let first = required(violations, &format!("{field}.valid_from"), period.valid_from.as_ref());
    let last = match &period.valid_to {
        None => None,
        Some(date) => Some(required(violations, &format!("{field}.valid_to"), Some(date))?),
    };
    let first = first?;
    if last.is_some_and(|last| last < first) {
        violations.add(format!("{field}.valid_to"), "must not be before valid_from");
        return None;
    }
    Some((first, last))
}
