//! Identifiers that never repeat within one generator run.
//!
//! **RNOKPP.** [`Rnokpp::compose`] takes the birth date (digits 1–5), a serial
//! `0..=999` (digits 6–8) and the sex (digit 9: 1 for men, 0 for women), so
//! for one birth date and sex there are exactly 1,000 numbers. The allocator
//! keeps, for every day of the birth-date range and each sex, how many
//! numbers it has given out, `n`, and gives the next person
//! serial `(n·379 + offset) mod 1000`, where the offset depends on the seed,
//! the day and the sex. 379 is prime to 1000, so `n ↦ serial` is a bijection
//! of `0..1000`: the first 1,000 persons of one day and sex get 1,000
//! different serials, and no two persons ever share an RNOKPP. When a day is
//! full for a sex, the person is born on the next day that is not, within
//! the same year of age (so the age, and the person's place in the
//! household, stays); when a whole year of age is full (365,000 persons of
//! one sex and age), the allocator reports [`GeneratorError::Exhausted`]
//! instead of repeating a number.
//!
//! **UNZR.** Its serial (`1..=9999`) is per birth date only. The `m`-th person
//! born on a day gets `(m·7919 + offset) mod 9999 + 1`; 7919 is prime to
//! 9999 = 3²·11·101, so this too is a bijection, and as a day holds at most
//! 2,000 persons (1,000 of each sex) it never runs out.
//!
//! **Passport (ID card).** The `k`-th card gets the 9 digits of
//! `(k·387420489 + offset) mod 10⁹`; 387420489 = 3¹⁸ is prime to 10⁹, so the
//! first 10⁹ cards are all different; the 10⁹-th and later are refused.

use chrono::{NaiveDate, TimeDelta};
use esocial_identifiers::{PassportNumber, Rnokpp, Sex, Unzr};

use crate::generator::GeneratorError;
use crate::places::push_number;

const RNOKPP_SERIALS: u64 = 1000;
const RNOKPP_STEP: u64 = 379;
const UNZR_SERIALS: u64 = 9999;
const UNZR_STEP: u64 = 7919;
const PASSPORT_NUMBERS: u64 = 1_000_000_000;
const PASSPORT_STEP: u64 = 387_420_489;

const fn greatest_common_divisor(first: u64, second: u64) -> u64 {
    if second == 0 { first } else { greatest_common_divisor(second, first % second) }
}

// Each step must be prime to its modulus for `permuted` to be a permutation.
const _: () = assert!(
    greatest_common_divisor(RNOKPP_STEP, RNOKPP_SERIALS) == 1
        && greatest_common_divisor(UNZR_STEP, UNZR_SERIALS) == 1
        && greatest_common_divisor(PASSPORT_STEP, PASSPORT_NUMBERS) == 1
);

/// The day before day 1 of the RNOKPP day count.
fn rnokpp_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1899, 12, 31).unwrap_or(NaiveDate::MIN)
}

/// The RNOKPP day count of a date (1900-01-01 is day 1).
pub(crate) fn day_number(date: NaiveDate) -> i64 {
    date.signed_duration_since(rnokpp_epoch()).num_days()
}

/// The date of an RNOKPP day count.
fn date_of_day(day: i64) -> Result<NaiveDate, GeneratorError> {
    rnokpp_epoch().checked_add_signed(TimeDelta::days(day)).ok_or(GeneratorError::DateOutOfRange)
}

/// SplitMix64's finalizer: a well-mixed 64-bit hash of a 64-bit value.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `index`-th element of a permutation of `0..modulus`
/// (`step` must be prime to `modulus`, `index` below it).
fn permuted(index: u64, modulus: u64, step: u64, offset: u64) -> u64 {
    (index * step + offset % modulus) % modulus
}

fn sex_index(sex: Sex) -> usize {
    match sex {
        Sex::Female => 0,
        Sex::Male => 1,
    }
}

/// A person's birth date with the RNOKPP and UNZR allocated for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity {
    pub(crate) birth_date: NaiveDate,
    pub(crate) rnokpp: Rnokpp,
    pub(crate) unzr: Unzr,
}

/// Gives out RNOKPPs, UNZRs and ID-card numbers without repeats (see the
/// module documentation).
#[derive(Debug, Clone)]
pub(crate) struct Allocator {
    salt: u64,
    /// The day number of `issued[0]`.
    first_day: i64,
    /// Per day of the birth-date range: RNOKPPs given to women, to men.
    issued: Vec<[u16; 2]>,
    passports_issued: u64,
}

impl Allocator {
    /// An allocator for birth dates `earliest..=latest`.
    pub(crate) fn new(seed: u64, earliest: NaiveDate, latest: NaiveDate) -> Self {
        let first_day = day_number(earliest);
        let days = usize::try_from(day_number(latest) - first_day + 1).unwrap_or(0);
        Self { salt: mix(seed), first_day, issued: vec![[0, 0]; days], passports_issued: 0 }
    }

    /// Allocates identifiers for a person of `sex` born on `wanted`, or on
    /// the first day after it (wrapping round within `window`) that still has
    /// a free RNOKPP serial for that sex.
    pub(crate) fn identity(
        &mut self,
        wanted: NaiveDate,
        window: (NaiveDate, NaiveDate),
        sex: Sex,
    ) -> Result<Identity, GeneratorError> {
        let last_day = self.first_day + i64::try_from(self.issued.len()).unwrap_or(0) - 1;
        let from = day_number(window.0).max(self.first_day);
        let to = day_number(window.1).min(last_day);
        let exhausted = GeneratorError::Exhausted { sex, from: window.0, to: window.1 };
        if from > to {
            return Err(exhausted);
        }
        let span = to - from + 1;
        let start = (day_number(wanted) - from).rem_euclid(span);
        for step in 0..span {
            let day = from + (start + step) % span;
            if let Some(identity) = self.take(day, sex)? {
                return Ok(identity);
            }
        }
        Err(exhausted)
    }

    /// The identifiers for the next person of `sex` born on `day`, or `None`
    /// when that day has no RNOKPP serial left for that sex.
    fn take(&mut self, day: i64, sex: Sex) -> Result<Option<Identity>, GeneratorError> {
        let index = usize::try_from(day - self.first_day).map_err(|_| GeneratorError::DateOutOfRange)?;
        let slot = self.issued.get_mut(index).ok_or(GeneratorError::DateOutOfRange)?;
        let given = u64::from(slot[sex_index(sex)]);
        if given >= RNOKPP_SERIALS {
            return Ok(None);
        }
        let born_that_day = u64::from(slot[0]) + u64::from(slot[1]);
        slot[sex_index(sex)] += 1;

        let day_salt = mix(self.salt ^ day.unsigned_abs());
        let sex_salt = mix(day_salt ^ (1 + u64::from(sex == Sex::Male)));
        let rnokpp_serial = permuted(given, RNOKPP_SERIALS, RNOKPP_STEP, sex_salt);
        let unzr_serial = permuted(born_that_day, UNZR_SERIALS, UNZR_STEP, day_salt) + 1;

        let birth_date = date_of_day(day)?;
        let rnokpp = Rnokpp::compose(birth_date, u16::try_from(rnokpp_serial).unwrap_or(u16::MAX), sex)?;
        let unzr = Unzr::compose(birth_date, u16::try_from(unzr_serial).unwrap_or(u16::MAX))?;
        Ok(Some(Identity { birth_date, rnokpp, unzr }))
    }

    /// The next ID-card number.
    pub(crate) fn passport(&mut self) -> Result<PassportNumber, GeneratorError> {
        if self.passports_issued >= PASSPORT_NUMBERS {
            return Err(GeneratorError::PassportsExhausted);
        }
        let number = permuted(self.passports_issued, PASSPORT_NUMBERS, PASSPORT_STEP, self.salt);
        self.passports_issued += 1;
        let mut digits = String::with_capacity(9);
        push_number(&mut digits, number, 9);
        Ok(digits.parse()?)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).expect("valid date")
    }

    #[test]
    fn the_steps_make_permutations() {
        for (modulus, step) in [(RNOKPP_SERIALS, RNOKPP_STEP), (UNZR_SERIALS, UNZR_STEP)] {
            let all: HashSet<u64> = (0..modulus).map(|index| permuted(index, modulus, step, 123_456)).collect();
            assert_eq!(all.len() as u64, modulus);
        }
        // 10⁹ is too many to list; the step is 3¹⁸, prime to 10⁹ (checked
        // at compile time with the others).
        assert_eq!(PASSPORT_STEP, 3u64.pow(18));
    }

    #[test]
    fn one_day_gives_a_thousand_distinct_numbers_per_sex_then_the_next_day() {
        let day = date(1990, 5, 17);
        let mut allocator = Allocator::new(7, date(1990, 1, 1), date(1990, 12, 31));
        let window = (date(1990, 1, 1), date(1990, 12, 31));
        let mut rnokpps = HashSet::new();
        let mut unzrs = HashSet::new();
        for sex in [Sex::Male, Sex::Female] {
            for _ in 0..1000 {
                let identity = allocator.identity(day, window, sex).expect("room");
                assert_eq!(identity.birth_date, day);
                assert_eq!(identity.rnokpp.birth_date(), day);
                assert_eq!(identity.rnokpp.sex(), sex);
                assert_eq!(identity.unzr.birth_date(), day);
                assert!(rnokpps.insert(identity.rnokpp));
                assert!(unzrs.insert(identity.unzr));
            }
        }
        // The day is full: the next man is born the day after.
        let next = allocator.identity(day, window, Sex::Male).expect("room");
        assert_eq!(next.birth_date, date(1990, 5, 18));
        assert!(rnokpps.insert(next.rnokpp));
    }

    #[test]
    fn a_full_window_wraps_round_then_is_exhausted() {
        let mut allocator = Allocator::new(1, date(2000, 1, 1), date(2000, 1, 2));
        let window = (date(2000, 1, 1), date(2000, 1, 2));
        for _ in 0..1000 {
            assert_eq!(
                allocator.identity(date(2000, 1, 2), window, Sex::Female).expect("room").birth_date,
                date(2000, 1, 2)
            );
        }
        let wrapped = allocator.identity(date(2000, 1, 2), window, Sex::Female).expect("room");
        assert_eq!(wrapped.birth_date, date(2000, 1, 1));
        for _ in 0..999 {
            allocator.identity(date(2000, 1, 2), window, Sex::Female).expect("room");
        }
        assert!(matches!(
            allocator.identity(date(2000, 1, 2), window, Sex::Female),
            Err(GeneratorError::Exhausted { .. })
        ));
        // Men still have room.
        assert!(allocator.identity(date(2000, 1, 2), window, Sex::Male).is_ok());
    }

    #[test]
    fn passports_are_nine_digit_id_cards_without_repeats() {
        let mut allocator = Allocator::new(3, date(2000, 1, 1), date(2000, 1, 1));
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            let passport = allocator.passport().expect("room");
            assert!(passport.is_id_card());
            assert!(seen.insert(passport));
        }
        allocator.passports_issued = PASSPORT_NUMBERS;
        assert_eq!(allocator.passport(), Err(GeneratorError::PassportsExhausted));
    }
}
