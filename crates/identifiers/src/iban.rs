use std::str::FromStr;

use crate::IdentifierError;

/// A Ukrainian IBAN: `UA`, two check digits, the 6-digit bank code (MFO) and
/// a 19-digit account number; 29 characters; ISO 7064 MOD 97-10 gives 1.
///
/// Spaces are accepted on input (IBANs are often printed in groups of four)
/// and lower-case `ua`; the stored form has neither.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Iban([u8; 29]);

const FORM: &str = "UA + 27 digits";

impl Iban {
    /// ISO 7064 MOD 97-10 over the rearranged IBAN (country and check digits
    /// moved to the end, letters as two-digit numbers A=10 … Z=35).
    fn mod97(bban_then_country: impl Iterator<Item = u8>) -> u32 {
        let mut remainder: u32 = 0;
        for byte in bban_then_country {
            remainder = if byte.is_ascii_digit() {
                (remainder * 10 + u32::from(byte - b'0')) % 97
            } else {
                (remainder * 100 + u32::from(byte - b'A') + 10) % 97
            };
        }
        remainder
    }

    fn rearranged(text: &[u8]) -> impl Iterator<Item = u8> + '_ {
        text[4..].iter().chain(&text[..4]).copied()
    }

    /// Builds the IBAN of an account at a bank, computing the check digits.
    /// `bank_code` is the 6-digit MFO, `account` up to 19 digits.
    pub fn compose(bank_code: &str, account: &str) -> Result<Self, IdentifierError> {
        if bank_code.len() != 6 || !bank_code.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(IdentifierError::Malformed { expected: "a 6-digit bank code" });
        }
        if account.is_empty() || account.len() > 19 || !account.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(IdentifierError::Malformed { expected: "an account number of up to 19 digits" });
        }
        let body = format!("UA00{bank_code}{account:0>19}");
        let check = 98 - Self::mod97(Self::rearranged(body.as_bytes()));
        format!("UA{check:02}{}", &body[4..]).parse()
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The bank's MFO code (digits 5–10).
    pub fn bank_code(&self) -> &str {
        &self.as_str()[4..10]
    }
}

impl FromStr for Iban {
    type Err = IdentifierError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let compact: Vec<u8> =
            text.bytes().filter(|byte| !byte.is_ascii_whitespace()).map(|byte| byte.to_ascii_uppercase()).collect();
        if compact.is_empty() {
            return Err(IdentifierError::Empty);
        }
        if !compact.starts_with(b"UA") {
            return Err(IdentifierError::NotUkrainian);
        }
        if compact.len() != 29 {
            return Err(IdentifierError::WrongLength { expected: 29, found: compact.len() });
        }
        if !compact[2..].iter().all(u8::is_ascii_digit) {
            return Err(IdentifierError::Malformed { expected: FORM });
        }
        if Self::mod97(Self::rearranged(&compact)) != 1 {
            return Err(IdentifierError::CheckDigitMismatch);
        }
        let mut stored = [0u8; 29];
        stored.copy_from_slice(&compact);
        Ok(Self(stored))
    }
}

impl std::fmt::Debug for Iban {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The account number is personal data: keep the bank, mask the rest.
        write!(formatter, "Iban(UA**{}***************{})", self.bank_code(), &self.as_str()[25..])
    }
}

crate::string_serde!(Iban);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_domain_examples_and_grouped_input() {
        let first: Iban = "UA583808050000026009702978805".parse().expect("valid");
        assert_eq!(first.bank_code(), "380805");
        assert!("UA793204780000000026001234567".parse::<Iban>().is_ok());
        let grouped: Iban = "ua58 3808 0500 0002 6009 7029 7880 5".parse().expect("valid");
        assert_eq!(grouped, first);
    }

    #[test]
    fn rejects_the_domain_counterexample_and_foreign_ibans() {
        assert_eq!("UA583808050000026009702978806".parse::<Iban>(), Err(IdentifierError::CheckDigitMismatch));
        assert_eq!("DE89370400440532013000".parse::<Iban>(), Err(IdentifierError::NotUkrainian));
    }

    #[test]
    fn compose_computes_check_digits() {
        let composed = Iban::compose("380805", "0000026009702978805").expect("valid");
        assert_eq!(composed.as_str(), "UA583808050000026009702978805");
    }
}
