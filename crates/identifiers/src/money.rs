use std::str::FromStr;

/// An amount in hryvnias held as whole kopiykas (1 UAH = 100 kopiykas).
///
/// Arithmetic is checked: an overflow is an error, never a wrap. There is no
/// conversion from floating point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Money(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount is out of range")]
    Overflow,
    #[error("must be an amount in hryvnias with at most two decimals, such as 860 or 860.50")]
    Malformed,
}

impl Money {
    pub const ZERO: Self = Self(0);

    pub const fn from_kopiykas(kopiykas: i64) -> Self {
        Self(kopiykas)
    }

    /// Whole hryvnias; fails when the amount does not fit.
    pub fn from_hryvnias(hryvnias: i64) -> Result<Self, MoneyError> {
        hryvnias.checked_mul(100).map(Self).ok_or(MoneyError::Overflow)
    }

    pub const fn kopiykas(self) -> i64 {
        self.0
    }

    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        self.0.checked_add(other.0).map(Self).ok_or(MoneyError::Overflow)
    }

    pub fn checked_sub(self, other: Self) -> Result<Self, MoneyError> {
        self.0.checked_sub(other.0).map(Self).ok_or(MoneyError::Overflow)
    }

    /// The amount times a count (months, children).
    pub fn checked_mul(self, count: i64) -> Result<Self, MoneyError> {
        self.0.checked_mul(count).map(Self).ok_or(MoneyError::Overflow)
    }

    /// Sum of amounts, failing on overflow.
    pub fn checked_sum(amounts: impl IntoIterator<Item = Self>) -> Result<Self, MoneyError> {
        amounts.into_iter().try_fold(Self::ZERO, Self::checked_add)
    }
}

impl std::fmt::Display for Money {
    /// `41280.00 UAH`, `-0.05 UAH`.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        write!(formatter, "{sign}{}.{:02} UAH", magnitude / 100, magnitude % 100)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    /// Parses `860`, `860.5`, `860.50`, `-12.30` (a comma works as the decimal
    /// separator too). Never goes through floating point.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = match unsigned.split_once(['.', ',']) {
            Some((whole, fraction)) => (whole, fraction),
            None => (unsigned, ""),
        };
        let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || fraction.len() > 2 || !all_digits(fraction) {
            return Err(MoneyError::Malformed);
        }
        let hryvnias: i64 = whole.parse().map_err(|_| MoneyError::Overflow)?;
        let kopiykas: i64 = match fraction.len() {
            0 => 0,
            1 => i64::from(fraction.as_bytes()[0] - b'0') * 10,
            _ => fraction.parse().map_err(|_| MoneyError::Malformed)?,
        };
        let magnitude = Self::from_hryvnias(hryvnias)?.checked_add(Self(kopiykas))?;
        if negative { Self::ZERO.checked_sub(magnitude) } else { Ok(magnitude) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn birth_assistance_schedule_adds_up_to_its_total() {
        let first = Money::from_hryvnias(10_320).expect("fits");
        let monthly = Money::from_hryvnias(860).expect("fits");
        let total = first.checked_add(monthly.checked_mul(36).expect("fits")).expect("fits");
        assert_eq!(total, Money::from_hryvnias(41_280).expect("fits"));
        assert_eq!(total.to_string(), "41280.00 UAH");
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(Money::from_kopiykas(i64::MAX).checked_add(Money::from_kopiykas(1)), Err(MoneyError::Overflow));
        assert_eq!(Money::from_kopiykas(i64::MIN).checked_sub(Money::from_kopiykas(1)), Err(MoneyError::Overflow));
        assert_eq!(Money::from_hryvnias(i64::MAX / 10), Err(MoneyError::Overflow));
        assert_eq!(Money::from_kopiykas(i64::MAX / 2).checked_mul(3), Err(MoneyError::Overflow));
    }

    #[test]
    fn parses_and_prints_decimal_amounts() {
        assert_eq!("860".parse(), Ok(Money::from_kopiykas(86_000)));
        assert_eq!("860.5".parse(), Ok(Money::from_kopiykas(86_050)));
        assert_eq!("9444,00".parse(), Ok(Money::from_kopiykas(944_400)));
        assert_eq!("-0.05".parse::<Money>().map(|money| money.to_string()), Ok("-0.05 UAH".to_owned()));
        for bad in ["", "1.234", "1e5", "12.x", "--1", ".5", "NaN"] {
            assert_eq!(bad.parse::<Money>(), Err(MoneyError::Malformed), "{bad}");
        }
    }
}
