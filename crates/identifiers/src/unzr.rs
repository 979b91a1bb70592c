use std::str::FromStr;

use chrono::{Datelike, NaiveDate};

use crate::{IdentifierError, digit_value};

/// Record number in the Unified State Demographic Register (УНЗР):
/// `YYYYMMDD-NNNNC`, the birth date, a 4-digit serial that is not `0000`, and
/// a check digit: the 12 digits weighted 7, 3, 1 repeating, summed, mod 10.
///
/// Accepted with or without the hyphen; always printed with it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Unzr([u8; 14]);

const WEIGHTS: [i64; 3] = [7, 3, 1];

impl Unzr {
    fn check_digit(twelve: impl Iterator<Item = u8>) -> u8 {
        let sum: i64 = twelve.zip(WEIGHTS.iter().cycle()).map(|(digit, weight)| digit_value(digit) * weight).sum();
        u8::try_from(sum.rem_euclid(10)).unwrap_or(0)
    }

    /// Builds the record number for a birth date and a serial in `1..=9999`.
    pub fn compose(birth_date: NaiveDate, serial: u16) -> Result<Self, IdentifierError> {
        if serial == 0 || serial > 9999 {
            return Err(IdentifierError::ZeroSerial);
        }
        if !(0..=9999).contains(&birth_date.year()) {
            return Err(IdentifierError::InvalidDate);
        }
        let digits = format!("{}{serial:04}", birth_date.format("%Y%m%d"));
        let check = Self::check_digit(digits.bytes());
        format!("{}-{}{check}", &digits[..8], &digits[8..]).parse()
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The birth date in the first eight digits.
    pub fn birth_date(&self) -> NaiveDate {
        parse_date(&self.0[..8]).unwrap_or(NaiveDate::MIN)
    }
}

fn parse_date(yyyymmdd: &[u8]) -> Option<NaiveDate> {
    let text = std::str::from_utf8(yyyymmdd).ok()?;
    NaiveDate::parse_from_str(text, "%Y%m%d").ok()
}

impl FromStr for Unzr {
    type Err = IdentifierError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const FORM: &str = "YYYYMMDD-NNNNC";
        let text = text.trim();
        if text.is_empty() {
            return Err(IdentifierError::Empty);
        }
        let digits: Vec<u8> = match text.len() {
            14 if text.as_bytes()[8] == b'-' => text.bytes().filter(|&byte| byte != b'-').collect(),
            13 => text.bytes().collect(),
            _ => return Err(IdentifierError::Malformed { expected: FORM }),
        };
        if digits.len() != 13 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(IdentifierError::Malformed { expected: FORM });
        }
        if parse_date(&digits[..8]).is_none() {
            return Err(IdentifierError::InvalidDate);
        }
        if digits[8..12] == *b"0000" {
            return Err(IdentifierError::ZeroSerial);
        }
        if Self::check_digit(digits[..12].iter().copied()) != digits[12] - b'0' {
            return Err(IdentifierError::CheckDigitMismatch);
        }
        let mut canonical = [0u8; 14];
        canonical[..8].copy_from_slice(&digits[..8]);
        canonical[8] = b'-';
        canonical[9..].copy_from_slice(&digits[8..]);
        Ok(Self(canonical))
    }
}

impl std::fmt::Debug for Unzr {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Unzr(********-***{})", &self.as_str()[12..])
    }
}

crate::string_serde!(Unzr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_domain_examples() {
        let first: Unzr = "19900517-00017".parse().expect("valid");
        assert_eq!(first.birth_date(), NaiveDate::from_ymd_opt(1990, 5, 17).expect("date"));
        assert!("20000101-12346".parse::<Unzr>().is_ok());
        // Without the hyphen, printed with it.
        let bare: Unzr = "1990051700017".parse().expect("valid");
        assert_eq!(bare.as_str(), "19900517-00017");
    }

    #[test]
    fn rejects_wrong_check_digit_impossible_dates_and_zero_serial() {
        assert_eq!("19900517-00018".parse::<Unzr>(), Err(IdentifierError::CheckDigitMismatch));
        assert_eq!("19900230-00017".parse::<Unzr>(), Err(IdentifierError::InvalidDate));
        assert_eq!("19900517-00000".parse::<Unzr>(), Err(IdentifierError::ZeroSerial));
        assert!(matches!("1990-0517-0001".parse::<Unzr>(), Err(IdentifierError::Malformed { .. })));
    }

    #[test]
    fn compose_round_trips() {
        let date = NaiveDate::from_ymd_opt(2024, 2, 29).expect("leap day");
        let composed = Unzr::compose(date, 42).expect("valid");
        assert_eq!(composed.as_str().parse::<Unzr>(), Ok(composed));
        assert_eq!(composed.birth_date(), date);
    }
}
