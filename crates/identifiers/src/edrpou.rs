use std::str::FromStr;

use crate::{IdentifierError, digit_value, require_digits};

/// Code of a legal entity in the Unified State Register (ЄДРПОУ): 8 digits,
/// the last a check digit.
///
/// Weights 1..7 on the first seven digits, or 7, 1, 2, 3, 4, 5, 6 when
/// 30000000 < code < 60000000; `r = Σ mod 11`; when `r ≥ 10` every weight is
/// increased by 2 and `r = (Σ mod 11) mod 10`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Edrpou([u8; 8]);

impl Edrpou {
    pub(crate) fn primary_weights(code_value: u32) -> [i64; 7] {
        if code_value > 30_000_000 && code_value < 60_000_000 { [7, 1, 2, 3, 4, 5, 6] } else { [1, 2, 3, 4, 5, 6, 7] }
    }

    /// The check digit for the first seven digits of a code whose whole
    /// numeric value is `code_value` (the weight choice depends on it).
    pub(crate) fn check_digit(first_seven: &[u8], code_value: u32) -> u8 {
        let weights = Self::primary_weights(code_value);
        let weighted_sum = |extra: i64| -> i64 {
            first_seven.iter().zip(weights).map(|(&digit, weight)| digit_value(digit) * (weight + extra)).sum()
        };
        let mut remainder = weighted_sum(0) % 11;
        if remainder >= 10 {
            remainder = (weighted_sum(2) % 11) % 10;
        }
        u8::try_from(remainder).unwrap_or(0)
    }

    /// Builds a code from its first seven digits (`0..=9_999_999`), adding the
    /// check digit.
    pub fn compose(first_seven: u32) -> Result<Self, IdentifierError> {
        if first_seven > 9_999_999 {
            return Err(IdentifierError::WrongLength { expected: 7, found: 8 });
        }
        let prefix = format!("{first_seven:07}");
        // The weights depend on the whole code, check digit included (it
        // matters only at 3000000x), so take the digit that validates.
        (0..=9u32)
            .find(|&check| u32::from(Self::check_digit(prefix.as_bytes(), first_seven * 10 + check)) == check)
            .ok_or(IdentifierError::CheckDigitMismatch)
            .and_then(|check| format!("{prefix}{check}").parse())
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl FromStr for Edrpou {
    type Err = IdentifierError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(IdentifierError::Empty);
        }
        require_digits(text, 8)?;
        let value: u32 = text.parse().map_err(|_| IdentifierError::NotDigits)?;
        let mut digits = [0u8; 8];
        digits.copy_from_slice(text.as_bytes());
        if Self::check_digit(&digits[..7], value) != digits[7] - b'0' {
            return Err(IdentifierError::CheckDigitMismatch);
        }
        Ok(Self(digits))
    }
}

impl std::fmt::Debug for Edrpou {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A legal entity's code is public; no masking.
        write!(formatter, "Edrpou({})", self.as_str())
    }
}

crate::string_serde!(Edrpou);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_domain_examples() {
        for code in ["32855961", "00032129", "14360506"] {
            assert!(code.parse::<Edrpou>().is_ok(), "{code} should be valid");
        }
    }

    #[test]
    fn rejects_the_domain_counterexamples() {
        for code in ["32855968", "14360500"] {
            assert_eq!(code.parse::<Edrpou>(), Err(IdentifierError::CheckDigitMismatch), "{code}");
        }
        assert_eq!("3285596".parse::<Edrpou>(), Err(IdentifierError::WrongLength { expected: 8, found: 7 }));
    }

    #[test]
    fn compose_adds_the_check_digit() {
        assert_eq!(Edrpou::compose(3_285_596).map(|code| code.to_string()), Ok("32855961".to_owned()));
        assert_eq!(Edrpou::compose(3_212).map(|code| code.to_string()), Ok("00032129".to_owned()));
    }
}
