//! The Unified State Demographic Register (ЄДДР): persons by UNZR.

use std::future::Future;

use chrono::NaiveDate;
use esocial_identifiers::{Katottg, Rnokpp, Sex, Unzr};

use crate::civil_registry::ActRecordNumber;
use crate::{Error, PersonName};

/// How a person is looked up in the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PersonKey {
    Rnokpp(Rnokpp),
    Unzr(Unzr),
}

/// A declared (registered) place of residence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredResidence {
    pub territory: Katottg,
    /// The street address line; may be empty.
    pub address: String,
}

/// A person's record in the register. Its UNZR always carries the birth
/// date (the adapter refuses a record where it does not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemographicRecord {
    pub unzr: Unzr,
    /// Absent for a newborn not yet registered with the tax register, and for
    /// people who refused an RNOKPP.
    pub rnokpp: Option<Rnokpp>,
    pub name: PersonName,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub ukrainian_citizen: bool,
    /// Absent when no residence in Ukraine is declared.
    pub declared_residence: Option<DeclaredResidence>,
    /// For persons added at birth: the birth act record.
    pub birth_act_record_number: Option<ActRecordNumber>,
}

/// The result of assigning a UNZR to a newborn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnzrAssignment {
    pub record: DemographicRecord,
    /// False when the act record had its UNZR already (a repeat).
    pub newly_assigned: bool,
}

/// The demographic register, as esocial uses it.
pub trait DemographicRegister: Send + Sync {
    /// The person's record, or `None` when they are not in the register.
    fn find_person(&self, key: PersonKey) -> impl Future<Output = Result<Option<DemographicRecord>, Error>> + Send;

    /// Adds a newborn from a birth act record and assigns the UNZR; the same
    /// record always gets the same UNZR. The adapter checks that the UNZR
    /// carries the child's birth date.
    fn assign_newborn_unzr(
        &self,
        birth_act_record_number: &ActRecordNumber,
    ) -> impl Future<Output = Result<UnzrAssignment, Error>> + Send;

    /// A record by UNZR; [`Error::NotFound`] when there is none.
    fn person_record(&self, unzr: Unzr) -> impl Future<Output = Result<DemographicRecord, Error>> + Send;
}
