use std::str::FromStr;

use crate::{IdentifierError, require_digits};

/// The numeric form of a certificate's unique electronic identifier: 16
/// digits, the last a Luhn (mod 10) check digit, so a mistyped digit or two
/// swapped neighbours are caught before any lookup. Printed in groups of
/// four (`1234 5678 9012 3452`); parsing accepts it with or without spaces
/// and hyphens.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertificateCode([u8; 16]);

/// The Luhn check digit for `payload` (digits, most significant first).
fn luhn_check_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(position, &digit)| {
            let value = u32::from(digit - b'0');
            // Double every second digit counting from the check digit's left.
            if position % 2 == 0 {
                let doubled = value * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                value
            }
        })
        .sum();
    u8::try_from((10 - sum % 10) % 10).unwrap_or(0)
}

impl CertificateCode {
    /// A code from 15 payload digits (`0..10^15`), adding the check digit.
    pub fn compose(payload: u64) -> Result<Self, IdentifierError> {
        if payload >= 1_000_000_000_000_000 {
            return Err(IdentifierError::WrongLength { expected: 15, found: payload.to_string().len() });
        }
        let mut digits = [0u8; 16];
        digits[..15].copy_from_slice(format!("{payload:015}").as_bytes());
        digits[15] = b'0' + luhn_check_digit(&digits[..15]);
        Ok(Self(digits))
    }

    /// The 16 digits without separators.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// In groups of four, as printed under the barcode.
    pub fn grouped(&self) -> String {
        self.0.chunks(4).map(|group| std::str::from_utf8(group).unwrap_or_default()).collect::<Vec<_>>().join(" ")
    }
}

impl FromStr for CertificateCode {
    type Err = IdentifierError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let compact: String = text.trim().chars().filter(|character| !matches!(character, ' ' | '-')).collect();
        if compact.is_empty() {
            return Err(IdentifierError::Empty);
        }
        require_digits(&compact, 16)?;
        let mut digits = [0u8; 16];
        digits.copy_from_slice(compact.as_bytes());
        if luhn_check_digit(&digits[..15]) != digits[15] - b'0' {
            return Err(IdentifierError::CheckDigitMismatch);
        }
        Ok(Self(digits))
    }
}

impl std::fmt::Debug for CertificateCode {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "CertificateCode({})", self.as_str())
    }
}

crate::string_serde!(CertificateCode);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_luhn_numbers_are_accepted_and_their_mutations_refused() {
        // A published Luhn test number (Visa test card) is 16 digits.
        let code: CertificateCode = "4111 1111 1111 1111".parse().expect("valid");
        assert_eq!(code.as_str(), "4111111111111111");
        assert_eq!(code.grouped(), "4111 1111 1111 1111");
        assert_eq!("4111-1111-1111-1111".parse::<CertificateCode>(), Ok(code));
        assert_eq!("4111111111111112".parse::<CertificateCode>(), Err(IdentifierError::CheckDigitMismatch));
        assert_eq!(
            "411111111111111".parse::<CertificateCode>(),
            Err(IdentifierError::WrongLength { expected: 16, found: 15 })
        );
        assert_eq!("".parse::<CertificateCode>(), Err(IdentifierError::Empty));
        assert_eq!("411111111111111a".parse::<CertificateCode>(), Err(IdentifierError::NotDigits));
        assert_eq!(CertificateCode::compose(411_111_111_111_111), Ok(code));
    }

    proptest! {
        #[test]
        fn composed_codes_round_trip(payload in 0u64..1_000_000_000_000_000) {
            let code = CertificateCode::compose(payload).expect("composed");
            prop_assert_eq!(code.as_str().parse::<CertificateCode>(), Ok(code));
        }

        #[test]
        fn a_single_changed_digit_is_caught(payload in 0u64..1_000_000_000_000_000, position in 0usize..16, delta in 1u8..10) {
            let code = CertificateCode::compose(payload).expect("composed");
            let mut digits = code.as_str().as_bytes().to_vec();
            digits[position] = b'0' + (digits[position] - b'0' + delta) % 10;
            let mutated = String::from_utf8(digits).expect("ascii");
            prop_assert!(mutated.parse::<CertificateCode>().is_err());
        }
    }
}
