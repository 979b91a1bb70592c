//! The sandbox's known people: adults in the demographic register, with
//! RNOKPP and UNZR that agree with their birth dates and sex, a bank
//! account each and monthly incomes in the tax register. The simulators are
//! seeded with them; tests and other sandbox code use them as known-valid
//! data.
//!
//! They are the adults of the first households of the deterministic
//! generator of `esocial-people` (seed [`SANDBOX_SEED`], ages on
//! [`REFERENCE_DATE`]), living in Kyiv's districts and in settlements of
//! Cherkasy oblast that the classifier's seed holds. A few are different on
//! purpose, so every answer of the simulators can be reached:
//!
//! | who (index in [`sandbox_adults`]) | what |
//! | --- | --- |
//! | 5, 17, 29 | the bank account is closed |
//! | 11 | not a citizen of Ukraine |
//! | 23 | no declared residence |
//! | every 6th of working age (index divisible by 6) | no income |

use std::sync::OnceLock;

use chrono::{Months, NaiveDate};
use esocial_identifiers::{Iban, Katottg, Money, Rnokpp, Sex, Unzr};
use esocial_people::{Generator, Relation};

use crate::PersonName;
use crate::demographic::DeclaredResidence;
use crate::tax::YearMonth;

/// How many adults the sandbox has.
pub const SANDBOX_ADULT_COUNT: usize = 36;
/// The people generator's seed.
pub const SANDBOX_SEED: u64 = 20_260_101;
/// The date ages are counted on.
pub const REFERENCE_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2026, 1, 1) {
    Some(date) => date,
    None => NaiveDate::MIN,
};
/// The tax register has incomes of the sandbox adults for these months.
pub const INCOME_FIRST_MONTH: (i32, u32) = (2023, 1);
pub const INCOME_LAST_MONTH: (i32, u32) = (2026, 12);

/// Settlements and city districts the sandbox adults live in (leaves of the
/// classifier's seed of territorial units).
const TERRITORIES: &[&str] = &[
    "UA80000000000126643",
    "UA80000000000210193",
    "UA80000000000336424",
    "UA80000000000624772",
    "UA80000000000980793",
    "UA71020010010048767",
    "UA71020130010081908",
    "UA71040090010057400",
];

/// Bank codes (MFO) the sandbox accounts are at.
const BANK_CODES: &[&str] = &["305299", "300465", "322001", "320649"];

/// The age from which the sandbox adults draw a pension.
const PENSION_AGE: u32 = 60;

/// An adult known to the simulators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxAdult {
    pub name: PersonName,
    pub sex: Sex,
    pub birth_date: NaiveDate,
    pub rnokpp: Rnokpp,
    pub unzr: Unzr,
    pub ukrainian_citizen: bool,
    pub declared_residence: Option<DeclaredResidence>,
    /// The husband or wife, when they are a sandbox adult too.
    pub spouse: Option<Rnokpp>,
    /// `+380` and 9 digits, when the person has a mobile phone.
    pub phone: Option<String>,
    /// The person's account at the simulated bank.
    pub iban: Iban,
    pub account_open: bool,
    /// The usual monthly income before tax (salary or pension); zero for
    /// those without income. Each month's figure varies around it (see
    /// [`SandboxAdult::income_in`]).
    pub usual_monthly_income: Money,
}

impl SandboxAdult {
    /// The income the tax register reports for a month: zero outside
    /// [`INCOME_FIRST_MONTH`]..=[`INCOME_LAST_MONTH`] and for those without
    /// income; otherwise the usual income plus 0–800 UAH that varies by
    /// month.
    pub fn income_in(&self, month: YearMonth) -> Money {
        let in_range =
            (month.year(), month.month()) >= INCOME_FIRST_MONTH && (month.year(), month.month()) <= INCOME_LAST_MONTH;
        if !in_range || self.usual_monthly_income == Money::ZERO {
            return Money::ZERO;
        }
        let digits: i64 = self.rnokpp.as_str().bytes().map(|byte| i64::from(byte - b'0')).sum();
        let month_number = i64::from(month.year()) * 12 + i64::from(month.month());
        let variation = Money::from_kopiykas((digits * 31 + month_number * 17) % 9 * 10_000);
        self.usual_monthly_income.checked_add(variation).unwrap_or(self.usual_monthly_income)
    }

    /// The first and last month the tax register has the sandbox adults'
    /// incomes for.
    pub fn income_months() -> (YearMonth, YearMonth) {
        let first = YearMonth::new(INCOME_FIRST_MONTH.0, INCOME_FIRST_MONTH.1);
        let last = YearMonth::new(INCOME_LAST_MONTH.0, INCOME_LAST_MONTH.1);
        match (first, last) {
            (Some(first), Some(last)) => (first, last),
            _ => (YearMonth::of(REFERENCE_DATE), YearMonth::of(REFERENCE_DATE)),
        }
    }
}

/// The sandbox adults, generated once per process, always the same.
pub fn sandbox_adults() -> &'static [SandboxAdult] {
    static ADULTS: OnceLock<Vec<SandboxAdult>> = OnceLock::new();
    ADULTS.get_or_init(|| {
        generate_adults().unwrap_or_else(|error| {
            tracing::error!(%error, "the sandbox adults could not be generated");
            Vec::new()
        })
    })
}

/// The day a sandbox adult was registered with the tax register: their
/// 14th birthday (when they got their ID card), or their birth date if that
/// does not exist.
pub(crate) fn tax_registration_date(adult: &SandboxAdult) -> NaiveDate {
    adult.birth_date.checked_add_months(Months::new(14 * 12)).unwrap_or(adult.birth_date)
}

fn generate_adults() -> anyhow::Result<Vec<SandboxAdult>> {
    let territories = TERRITORIES.iter().map(|code| code.parse::<Katottg>()).collect::<Result<Vec<_>, _>>()?;
    let mut generator = Generator::with_reference_date(SANDBOX_SEED, territories, REFERENCE_DATE)?;
    let mut adults: Vec<SandboxAdult> = Vec::with_capacity(SANDBOX_ADULT_COUNT + 4);
    while adults.len() < SANDBOX_ADULT_COUNT {
        let household = generator.next_household()?;
        for (member_index, person) in household.members.iter().enumerate() {
            if person.age_on(REFERENCE_DATE) < esocial_people::ADULT_AGE {
                continue;
            }
            let index = adults.len();
            let spouse = household
                .relatives(member_index, Relation::Spouse)
                .next()
                .and_then(|spouse| household.members.get(spouse))
                .map(|spouse| spouse.rnokpp);
            let account = format!("2620{}{index:05}", person.rnokpp.as_str());
            let iban = Iban::compose(BANK_CODES[index % BANK_CODES.len()], &account)?;
            let usual_monthly_income = if person.age_on(REFERENCE_DATE) >= PENSION_AGE {
                Money::from_hryvnias(4_500 + 500 * i64::try_from(index % 5)?)?
            } else if index.is_multiple_of(6) {
                Money::ZERO
            } else {
                Money::from_hryvnias(12_000 + 3_000 * i64::try_from(index % 7)?)?
            };
            adults.push(SandboxAdult {
                name: PersonName::new(&person.last_name, &person.first_name, &person.patronymic),
                sex: person.sex,
                birth_date: person.birth_date,
                rnokpp: person.rnokpp,
                unzr: person.unzr,
                ukrainian_citizen: index != 11,
                declared_residence: (index != 23)
                    .then(|| DeclaredResidence { territory: household.territory, address: household.address.clone() }),
                spouse,
                phone: person.phone.clone(),
                iban,
                account_open: index % 12 != 5,
                usual_monthly_income,
            });
        }
    }
    adults.truncate(SANDBOX_ADULT_COUNT);
    // A spouse cut off by the truncation is not a sandbox adult.
    let known: Vec<Rnokpp> = adults.iter().map(|adult| adult.rnokpp).collect();
    for adult in &mut adults {
        adult.spouse = adult.spouse.filter(|spouse| known.contains(spouse));
    }
    Ok(adults)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn there_are_three_dozen_adults_with_consistent_unique_identifiers() {
        let adults = sandbox_adults();
        assert_eq!(adults.len(), SANDBOX_ADULT_COUNT);
        for adult in adults {
            assert!(adult.birth_date <= REFERENCE_DATE);
            assert_eq!(adult.rnokpp.birth_date(), adult.birth_date, "{adult:?}");
            assert_eq!(adult.rnokpp.sex(), adult.sex, "{adult:?}");
            assert_eq!(adult.unzr.birth_date(), adult.birth_date, "{adult:?}");
            assert_eq!(adult.iban.as_str().parse::<Iban>(), Ok(adult.iban));
        }
        let rnokpps: HashSet<_> = adults.iter().map(|adult| adult.rnokpp).collect();
        let unzrs: HashSet<_> = adults.iter().map(|adult| adult.unzr).collect();
        let ibans: HashSet<_> = adults.iter().map(|adult| adult.iban).collect();
        assert_eq!(
            (rnokpps.len(), unzrs.len(), ibans.len()),
            (SANDBOX_ADULT_COUNT, SANDBOX_ADULT_COUNT, SANDBOX_ADULT_COUNT)
        );
    }

    #[test]
    fn the_special_cases_are_where_the_table_says() {
        let adults = sandbox_adults();
        let closed: Vec<usize> = (0..adults.len()).filter(|&index| !adults[index].account_open).collect();
        assert_eq!(closed, [5, 17, 29]);
        assert!(!adults[11].ukrainian_citizen);
        assert!(adults[23].declared_residence.is_none());
        assert!(adults.iter().filter(|adult| adult.declared_residence.is_some()).count() == SANDBOX_ADULT_COUNT - 1);
        assert!(adults.iter().any(|adult| adult.spouse.is_some()), "some adults are couples");
        for adult in adults.iter().filter(|adult| adult.spouse.is_some()) {
            let spouse = adults.iter().find(|other| Some(other.rnokpp) == adult.spouse).expect("spouse is listed");
            assert_eq!(spouse.spouse, Some(adult.rnokpp));
            assert_ne!(spouse.sex, adult.sex);
        }
    }

    #[test]
    fn generation_is_deterministic() {
        let again = generate_adults().expect("generated");
        assert_eq!(again, sandbox_adults());
    }

    #[test]
    fn income_varies_by_month_within_the_range_and_is_zero_outside() {
        let earner = sandbox_adults().iter().find(|adult| adult.usual_monthly_income > Money::ZERO).expect("earner");
        let (first, last) = SandboxAdult::income_months();
        let mut month = first;
        while month <= last {
            let income = earner.income_in(month);
            assert!(income >= earner.usual_monthly_income, "{month}");
            assert!(income.kopiykas() - earner.usual_monthly_income.kopiykas() <= 80_000, "{month}");
            month = month.next();
        }
        assert_eq!(earner.income_in(YearMonth::new(2022, 12).expect("month")), Money::ZERO);
        assert_eq!(earner.income_in(last.next()), Money::ZERO);
        let without =
            sandbox_adults().iter().find(|adult| adult.usual_monthly_income == Money::ZERO).expect("no income");
        assert_eq!(without.income_in(first), Money::ZERO);
    }
}
