use std::str::FromStr;

use crate::IdentifierError;

/// A code of the Codifier of administrative-territorial units and
/// territories of territorial communities (КАТОТТГ): `UA` + 17 digits.
///
/// The codifier has no check digit: whether a code exists is known only to
/// the classifier service, which holds the codifier. This type checks the
/// form; the level and category of a unit are data in the classifier (the
/// zero digits do not always tell the level, e.g. districts of Kyiv).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Katottg([u8; 19]);

impl Katottg {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The two digits of the first-level unit (oblast, Crimea, or a city with
    /// special status).
    pub fn oblast_digits(&self) -> &str {
        &self.as_str()[2..4]
    }
}

impl FromStr for Katottg {
    type Err = IdentifierError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(IdentifierError::Empty);
        }
        let upper = text.to_ascii_uppercase();
        if !upper.starts_with("UA") {
            return Err(IdentifierError::NotUkrainian);
        }
        if upper.len() != 19 {
            return Err(IdentifierError::WrongLength { expected: 19, found: upper.chars().count() });
        }
        if !upper.as_bytes()[2..].iter().all(u8::is_ascii_digit) {
            return Err(IdentifierError::Malformed { expected: "UA + 17 digits" });
        }
        let mut stored = [0u8; 19];
        stored.copy_from_slice(upper.as_bytes());
        Ok(Self(stored))
    }
}

impl std::fmt::Debug for Katottg {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Katottg({})", self.as_str())
    }
}

crate::string_serde!(Katottg);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_domain_example() {
        let code: Katottg = "UA71020010000037786".parse().expect("valid");
        assert_eq!(code.oblast_digits(), "71");
        assert_eq!("ua71020010000037786".parse::<Katottg>(), Ok(code));
    }

    #[test]
    fn rejects_malformed_codes() {
        assert_eq!("71020010000037786".parse::<Katottg>(), Err(IdentifierError::NotUkrainian));
        assert_eq!(
            "UA7102001000003778".parse::<Katottg>(),
            Err(IdentifierError::WrongLength { expected: 19, found: 18 })
        );
        assert!(matches!("UA7102001000003778X".parse::<Katottg>(), Err(IdentifierError::Malformed { .. })));
    }
}
