//! The tax register of individuals (ДРФО): RNOKPP and reported income.

use std::future::Future;

use chrono::{Datelike, NaiveDate};
use esocial_identifiers::{Money, Rnokpp, Sex, Unzr};

use crate::{Error, PersonName};

/// The longest period [`TaxRegister::monthly_income`] answers for.
pub const INCOME_PERIOD_MONTHS_MAX: u32 = 36;

/// A calendar month, printed `2025-03`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct YearMonth {
    year: i32,
    month: u32,
}

impl YearMonth {
    /// The month, when `month` is 1..=12 and the year is 1900..=2999.
    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((1900..=2999).contains(&year) && (1..=12).contains(&month)).then_some(Self { year, month })
    }

    /// The month a date falls in.
    pub fn of(date: NaiveDate) -> Self {
        Self { year: date.year(), month: date.month() }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The month after this one.
    pub fn next(self) -> Self {
        if self.month == 12 { Self { year: self.year + 1, month: 1 } } else { Self { month: self.month + 1, ..self } }
    }

    /// How many months from `self` to `last`, both included; 0 when `last`
    /// is earlier.
    pub fn months_through(self, last: Self) -> u32 {
        let count = (i64::from(last.year) * 12 + i64::from(last.month))
            - (i64::from(self.year) * 12 + i64::from(self.month))
            + 1;
        u32::try_from(count.max(0)).unwrap_or(0)
    }
}

impl std::fmt::Display for YearMonth {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:04}-{:02}", self.year, self.month)
    }
}

/// A taxpayer's card in the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taxpayer {
    pub rnokpp: Rnokpp,
    pub unzr: Option<Unzr>,
    pub name: PersonName,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub registered_on: NaiveDate,
}

/// The result of assigning an RNOKPP to a newborn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RnokppAssignment {
    pub taxpayer: Taxpayer,
    /// False when the UNZR had its RNOKPP already (a repeat).
    pub newly_assigned: bool,
}

/// Income accrued to a person in one month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthlyIncome {
    pub month: YearMonth,
    pub amount: Money,
}

/// The tax register, as esocial uses it.
pub trait TaxRegister: Send + Sync {
    /// Registers a newborn (known to the demographic register by `unzr`) and
    /// assigns the RNOKPP; the same UNZR always gets the same number. The
    /// adapter checks that the number encodes the child's birth date and sex.
    fn assign_newborn_rnokpp(&self, unzr: Unzr) -> impl Future<Output = Result<RnokppAssignment, Error>> + Send;

    /// A taxpayer by RNOKPP; [`Error::NotFound`] when there is none.
    fn taxpayer(&self, rnokpp: Rnokpp) -> impl Future<Output = Result<Taxpayer, Error>> + Send;

    /// Income per month from `first` to `last` (both included, at most
    /// [`INCOME_PERIOD_MONTHS_MAX`] months), one entry per month, oldest
    /// first, zero for months without income.
    fn monthly_income(
        &self,
        rnokpp: Rnokpp,
        first: YearMonth,
        last: YearMonth,
    ) -> impl Future<Output = Result<Vec<MonthlyIncome>, Error>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_roll_over_the_year_and_count_inclusively() {
        let november = YearMonth::new(2025, 11).expect("month");
        assert_eq!(november.next().next(), YearMonth::new(2026, 1).expect("month"));
        assert_eq!(november.months_through(YearMonth::new(2026, 10).expect("month")), 12);
        assert_eq!(november.months_through(november), 1);
        assert_eq!(november.months_through(YearMonth::new(2025, 1).expect("month")), 0);
        assert_eq!(november.to_string(), "2025-11");
        assert_eq!(november.first_day(), NaiveDate::from_ymd_opt(2025, 11, 1).expect("date"));
    }

    #[test]
    fn invalid_months_are_refused() {
        assert!(YearMonth::new(2025, 0).is_none());
        assert!(YearMonth::new(2025, 13).is_none());
        assert!(YearMonth::new(1899, 12).is_none());
    }
}
