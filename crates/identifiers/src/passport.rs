use std::str::FromStr;

use crate::IdentifierError;

/// A passport of a citizen of Ukraine: an ID card number (9 digits) or an old
/// booklet's series and number (2 Cyrillic capitals + 6 digits, `МК123456`).
///
/// Latin letters that look like Cyrillic ones (`MK` typed on a Latin layout)
/// are read as the Cyrillic letters, and lower case as upper case, because
/// that is how such numbers arrive from forms and scans.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PassportNumber(String);

/// Latin capitals that are drawn like a Cyrillic capital.
fn cyrillic_look_alike(letter: char) -> Option<char> {
    Some(match letter {
        'A' => 'А',
        'B' => 'В',
        'C' => 'С',
        'E' => 'Е',
        'H' => 'Н',
        'I' => 'І',
        'K' => 'К',
        'M' => 'М',
        'O' => 'О',
        'P' => 'Р',
        'T' => 'Т',
        'X' => 'Х',
        _ => return None,
    })
}

/// Upper-case letters of the Ukrainian alphabet.
fn is_ukrainian_capital(letter: char) -> bool {
    matches!(letter, 'А'..='Я' | 'Є' | 'І' | 'Ї' | 'Ґ') && !matches!(letter, 'Ъ' | 'Ы' | 'Э')
}

impl PassportNumber {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for a 9-digit ID card number, false for a booklet.
    pub fn is_id_card(&self) -> bool {
        self.0.len() == 9 && self.0.bytes().all(|byte| byte.is_ascii_digit())
    }
}

impl FromStr for PassportNumber {
    type Err = IdentifierError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const FORM: &str = "9 digits (ID card) or 2 Cyrillic capitals and 6 digits (booklet)";
        let compact: String = text.chars().filter(|character| !character.is_whitespace()).collect();
        if compact.is_empty() {
            return Err(IdentifierError::Empty);
        }
        if compact.len() == 9 && compact.bytes().all(|byte| byte.is_ascii_digit()) {
            return Ok(Self(compact));
        }
        let characters: Vec<char> = compact.chars().collect();
        if characters.len() != 8 || !characters[2..].iter().all(char::is_ascii_digit) {
            return Err(IdentifierError::Malformed { expected: FORM });
        }
        let mut series = String::with_capacity(4);
        for &letter in &characters[..2] {
            let upper = letter.to_uppercase().next().unwrap_or(letter);
            let cyrillic = cyrillic_look_alike(upper).unwrap_or(upper);
            if !is_ukrainian_capital(cyrillic) {
                return Err(IdentifierError::Malformed { expected: FORM });
            }
            series.push(cyrillic);
        }
        series.extend(&characters[2..]);
        Ok(Self(series))
    }
}

impl std::fmt::Debug for PassportNumber {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let visible: String = self.0.chars().rev().take(2).collect::<Vec<_>>().into_iter().rev().collect();
        write!(formatter, "PassportNumber(******{visible})")
    }
}

crate::string_serde!(PassportNumber);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_domain_examples() {
        let card: PassportNumber = "000123456".parse().expect("valid");
        assert!(card.is_id_card());
        let booklet: PassportNumber = "МК123456".parse().expect("valid");
        assert!(!booklet.is_id_card());
    }

    #[test]
    fn reads_latin_look_alikes_and_lower_case_as_cyrillic_capitals() {
        let typed_in_latin: PassportNumber = "mk 123456".parse().expect("valid");
        assert_eq!(typed_in_latin.as_str(), "МК123456");
        let lower_cyrillic: PassportNumber = "єі654321".parse().expect("valid");
        assert_eq!(lower_cyrillic.as_str(), "ЄІ654321");
    }

    #[test]
    fn rejects_other_forms() {
        for text in ["12345678", "1234567890", "ZZ123456", "ЫЫ123456", "МК12345", "М1234567"] {
            assert!(text.parse::<PassportNumber>().is_err(), "{text} should be refused");
        }
    }
}
