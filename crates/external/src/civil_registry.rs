//! The civil status registry (ДРАЦС): birth act records.

use std::future::Future;
use std::str::FromStr;

use chrono::NaiveDate;
use esocial_identifiers::{Katottg, Rnokpp, Sex};

use crate::{Error, PersonName};

/// The longest act record number or document number accepted.
pub const DOCUMENT_NUMBER_LENGTH_MAX: usize = 64;

/// The number of a civil status act record, as the registry gives it
/// (`2026-000123`): letters, digits, `-` and `/`, at most
/// [`DOCUMENT_NUMBER_LENGTH_MAX`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActRecordNumber(String);

/// Why a text is not an act record number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActRecordNumberError {
    #[error("must not be empty")]
    Empty,
    #[error("must have at most {DOCUMENT_NUMBER_LENGTH_MAX} characters")]
    TooLong,
    #[error("may contain only letters, digits, '-' and '/'")]
    Malformed,
}

impl ActRecordNumber {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ActRecordNumber {
    type Err = ActRecordNumberError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ActRecordNumberError::Empty);
        }
        if text.chars().count() > DOCUMENT_NUMBER_LENGTH_MAX {
            return Err(ActRecordNumberError::TooLong);
        }
        if !text.chars().all(|character| character.is_alphanumeric() || character == '-' || character == '/') {
            return Err(ActRecordNumberError::Malformed);
        }
        Ok(Self(text.to_owned()))
    }
}

impl std::fmt::Display for ActRecordNumber {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// The document a birth is registered on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BirthBasis {
    /// The medical birth conclusion (or form 103/o), by its number.
    MedicalConclusion(String),
    /// The court decision that established the fact of birth, by its number.
    CourtDecision(String),
}

impl BirthBasis {
    /// Whether the fact of birth was established by a court decision, in
    /// which case some services (e-health, DOMAIN.md §3 item 4) are not
    /// provided.
    pub fn established_by_court(&self) -> bool {
        matches!(self, BirthBasis::CourtDecision(_))
    }

    pub fn document_number(&self) -> &str {
        match self {
            BirthBasis::MedicalConclusion(number) | BirthBasis::CourtDecision(number) => number,
        }
    }
}

/// What a birth is registered with: the child, the parents and the basis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirthRegistration {
    pub child: PersonName,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    /// The settlement or city district of birth.
    pub place_of_birth: Katottg,
    pub mother: Rnokpp,
    /// Absent when the father is not recorded.
    pub father: Option<Rnokpp>,
    pub basis: BirthBasis,
}

/// A birth act record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirthRecord {
    pub act_record_number: ActRecordNumber,
    pub registration_date: NaiveDate,
    pub registration: BirthRegistration,
}

/// The civil status registry, as esocial uses it.
pub trait CivilRegistry: Send + Sync {
    /// The birth record made on a medical birth conclusion, or `None` when the
    /// conclusion was not used for a registration (the "birth is not yet
    /// registered" condition of єМалятко).
    fn find_birth_record_by_medical_conclusion(
        &self,
        medical_conclusion_number: &str,
    ) -> impl Future<Output = Result<Option<BirthRecord>, Error>> + Send;

    /// Registers a birth. A birth whose document was used already is
    /// [`Error::AlreadyExists`] with the existing act record number in
    /// `existing_record`.
    fn register_birth(
        &self,
        registration: &BirthRegistration,
    ) -> impl Future<Output = Result<BirthRecord, Error>> + Send;

    /// A birth record by number; [`Error::NotFound`] when there is none.
    fn birth_record(
        &self,
        act_record_number: &ActRecordNumber,
    ) -> impl Future<Output = Result<BirthRecord, Error>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn act_record_numbers_are_trimmed_and_checked() {
        let number: ActRecordNumber = " 2026-000001 ".parse().expect("valid");
        assert_eq!(number.as_str(), "2026-000001");
        assert_eq!("".parse::<ActRecordNumber>(), Err(ActRecordNumberError::Empty));
        assert_eq!("2026 000001".parse::<ActRecordNumber>(), Err(ActRecordNumberError::Malformed));
        assert_eq!("1".repeat(65).parse::<ActRecordNumber>(), Err(ActRecordNumberError::TooLong));
    }

    #[test]
    fn only_a_court_decision_means_established_by_court() {
        assert!(BirthBasis::CourtDecision("2-123/2025".to_owned()).established_by_court());
        assert!(!BirthBasis::MedicalConclusion("103-000001".to_owned()).established_by_court());
        assert_eq!(BirthBasis::CourtDecision("2-123/2025".to_owned()).document_number(), "2-123/2025");
    }
}
