//! The e-health patient register (ЕСОЗ).

use std::future::Future;

use chrono::NaiveDate;
use esocial_identifiers::{Rnokpp, Sex, Unzr};
use uuid::Uuid;

use crate::civil_registry::ActRecordNumber;
use crate::{Error, PersonName};

/// The `google.rpc.ErrorInfo` reason of the refusal to add a newborn whose
/// birth was established by a court decision (DOMAIN.md §3 item 4).
pub const REASON_BIRTH_ESTABLISHED_BY_COURT: &str = "BIRTH_ESTABLISHED_BY_COURT";

/// What esocial sends to add a newborn to the patient register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewbornPatient {
    pub birth_act_record_number: ActRecordNumber,
    /// The child's UNZR, when assigned already.
    pub unzr: Option<Unzr>,
    /// The child's RNOKPP, when assigned already.
    pub rnokpp: Option<Rnokpp>,
}

/// A patient's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    pub patient_id: Uuid,
    pub unzr: Option<Unzr>,
    pub rnokpp: Option<Rnokpp>,
    pub name: PersonName,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub birth_act_record_number: Option<ActRecordNumber>,
    pub registered_on: NaiveDate,
}

/// The result of adding a newborn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientAddition {
    pub patient: Patient,
    /// False when the act record was used already (a repeat).
    pub newly_added: bool,
}

/// The patient register, as esocial uses it.
pub trait PatientRegister: Send + Sync {
    /// Adds a newborn from the birth act record; the same record gives the
    /// same patient. A birth established by a court decision is
    /// [`Error::Refused`] with reason [`REASON_BIRTH_ESTABLISHED_BY_COURT`].
    fn add_newborn_patient(
        &self,
        newborn: &NewbornPatient,
    ) -> impl Future<Output = Result<PatientAddition, Error>> + Send;

    /// A patient by id; [`Error::NotFound`] when there is none.
    fn patient(&self, patient_id: Uuid) -> impl Future<Output = Result<Patient, Error>> + Send;
}
