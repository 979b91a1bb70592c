use std::str::FromStr;

use chrono::{Days, NaiveDate};

use crate::{IdentifierError, digit_value, require_digits};

/// Registration number of the taxpayer's account card (РНОКПП), the
/// individual tax number: 10 digits, the last a check digit.
///
/// Digits 1–5 count the days from 1899-12-31 to the birth date; digit 9 is odd
/// for men and even for women. The check digit is
/// `(Σ wᵢ·dᵢ mod 11) mod 10` with weights −1, 5, 7, 9, 4, 6, 10, 5, 7 and a
/// non-negative modulo (the sum can be negative).
///
/// A person may have refused the number on religious grounds; callers model
/// that as an absent `Rnokpp`, identified by passport instead.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rnokpp([u8; 10]);

/// Sex as encoded in the RNOKPP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sex {
    Male,
    Female,
}

const WEIGHTS: [i64; 9] = [-1, 5, 7, 9, 4, 6, 10, 5, 7];

/// The day before day 1 of the RNOKPP's day count.
fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1899, 12, 31).unwrap_or(NaiveDate::MIN)
}

impl Rnokpp {
    /// The check digit for the first nine digits.
    fn check_digit(first_nine: &[u8]) -> u8 {
        let sum: i64 = first_nine.iter().zip(WEIGHTS).map(|(&digit, weight)| digit_value(digit) * weight).sum();
        // `rem_euclid(11) % 10` is within 0..=9.
        u8::try_from(sum.rem_euclid(11) % 10).unwrap_or(0)
    }

    /// Builds the number for a birth date, a 3-digit serial and a sex, with its
    /// check digit. Fails when the date is outside the 5-digit day range.
    pub fn compose(birth_date: NaiveDate, serial: u16, sex: Sex) -> Result<Self, IdentifierError> {
        let days = birth_date.signed_duration_since(epoch()).num_days();
        if !(0..=99_999).contains(&days) || serial > 999 {
            return Err(IdentifierError::InvalidDate);
        }
        // Digit 9 carries the sex; digits 6–8 carry the serial.
        let sex_digit = match sex {
            Sex::Male => 1,
            Sex::Female => 0,
        };
        let text = format!("{days:05}{serial:03}{sex_digit}");
        let mut digits = [0u8; 10];
        digits[..9].copy_from_slice(text.as_bytes());
        digits[9] = b'0' + Self::check_digit(&digits[..9]);
        Ok(Self(digits))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The birth date encoded in digits 1–5.
    pub fn birth_date(&self) -> NaiveDate {
        let days: u64 = self.0[..5].iter().fold(0, |total, &digit| total * 10 + u64::from(digit - b'0'));
        epoch().checked_add_days(Days::new(days)).unwrap_or(NaiveDate::MAX)
    }

    /// The sex encoded in digit 9.
    pub fn sex(&self) -> Sex {
        if (self.0[8] - b'0') % 2 == 1 { Sex::Male } else { Sex::Female }
    }
}

impl FromStr for Rnokpp {
    type Err = IdentifierError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(IdentifierError::Empty);
        }
        require_digits(text, 10)?;
        let mut digits = [0u8; 10];
        digits.copy_from_slice(text.as_bytes());
        if Self::check_digit(&digits[..9]) != digits[9] - b'0' {
            return Err(IdentifierError::CheckDigitMismatch);
        }
        Ok(Self(digits))
    }
}

impl std::fmt::Debug for Rnokpp {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data: only the last two digits appear in debug output.
        write!(formatter, "Rnokpp(********{})", &self.as_str()[8..])
    }
}

crate::string_serde!(Rnokpp);

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).unwrap_or(NaiveDate::MIN)
    }

    #[test]
    fn accepts_the_domain_examples_with_their_birth_dates_and_sex() {
        let first: Rnokpp = "3652504575".parse().expect("valid");
        assert_eq!(first.birth_date(), date(2000, 1, 1));
        assert_eq!(first.sex(), Sex::Male);

        let second: Rnokpp = "3300912347".parse().expect("valid");
        assert_eq!(second.birth_date(), date(1990, 5, 17));
        assert_eq!(second.sex(), Sex::Female);

        assert!("1759013776".parse::<Rnokpp>().is_ok());
        // The weighted sum is negative here (−1): the modulo must not be.
        assert!("1000000000".parse::<Rnokpp>().is_ok());
    }

    #[test]
    fn rejects_the_domain_counterexample_and_malformed_text() {
        assert_eq!("1759013770".parse::<Rnokpp>(), Err(IdentifierError::CheckDigitMismatch));
        assert_eq!("".parse::<Rnokpp>(), Err(IdentifierError::Empty));
        assert_eq!("123456789".parse::<Rnokpp>(), Err(IdentifierError::WrongLength { expected: 10, found: 9 }));
        assert_eq!("36525O4575".parse::<Rnokpp>(), Err(IdentifierError::NotDigits));
    }

    #[test]
    fn compose_gives_a_number_that_parses_back_to_the_same_facts() {
        let composed = Rnokpp::compose(date(1990, 5, 17), 234, Sex::Female).expect("in range");
        let parsed: Rnokpp = composed.as_str().parse().expect("valid");
        assert_eq!(parsed.birth_date(), date(1990, 5, 17));
        assert_eq!(parsed.sex(), Sex::Female);
        assert!(Rnokpp::compose(date(1899, 12, 30), 1, Sex::Male).is_err());
    }

    #[test]
    fn debug_output_masks_the_number() {
        let number: Rnokpp = "3652504575".parse().expect("valid");
        assert_eq!(format!("{number:?}"), "Rnokpp(********75)");
    }
}
