//! The civil registry simulator: birth act records, one per birth document.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use esocial_identifiers::Sex;
use esocial_proto::external::civil_registry::v1 as pb;
use esocial_proto::external::civil_registry::v1::civil_registry_service_server::CivilRegistryService;
use tonic::{Code, Request, Response, Status};

use super::{World, lock, status_with_info};
use crate::civil_registry::{ActRecordNumber, BirthBasis, BirthRecord, BirthRegistration, DOCUMENT_NUMBER_LENGTH_MAX};
use crate::grpc::convert;
use crate::grpc::{birth_record_to_proto, registration_from_proto};

/// The most records the simulator keeps.
const RECORDS_MAX: usize = 100_000;

/// A birth document in comparable form: upper case, no whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum DocumentKey {
    MedicalConclusion(String),
    CourtDecision(String),
}

fn comparable(number: &str) -> String {
    number.chars().filter(|character| !character.is_whitespace()).flat_map(char::to_uppercase).collect()
}

impl DocumentKey {
    fn of(basis: &BirthBasis) -> Self {
        match basis {
            BirthBasis::MedicalConclusion(number) => DocumentKey::MedicalConclusion(comparable(number)),
            BirthBasis::CourtDecision(number) => DocumentKey::CourtDecision(comparable(number)),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct CivilRegistryState {
    records: BTreeMap<ActRecordNumber, BirthRecord>,
    by_document: HashMap<DocumentKey, ActRecordNumber>,
    last_serial_by_year: BTreeMap<i32, u32>,
}

impl CivilRegistryState {
    pub(super) fn record(&self, number: &ActRecordNumber) -> Option<&BirthRecord> {
        self.records.get(number)
    }

    /// Makes the act record, or names the record its document was used for.
    fn register(&mut self, registration: BirthRegistration, today: NaiveDate) -> Result<BirthRecord, Status> {
        let document = DocumentKey::of(&registration.basis);
        if let Some(existing) = self.by_document.get(&document) {
            let what =
                if registration.basis.established_by_court() { "court decision" } else { "medical birth conclusion" };
            return Err(status_with_info(
                Code::AlreadyExists,
                format!(
                    "the birth on {what} {} is registered already: act record {existing}",
                    registration.basis.document_number()
                ),
                "BIRTH_ALREADY_REGISTERED",
                &[("act_record_number", existing.as_str())],
            ));
        }
        if self.records.len() >= RECORDS_MAX {
            return Err(Status::resource_exhausted("the simulated civil registry is full"));
        }
        let serial = self.last_serial_by_year.entry(today.year()).or_default();
        *serial += 1;
        let act_record_number: ActRecordNumber = format!("{}-{:06}", today.year(), serial)
            .parse()
            .map_err(|error| Status::internal(format!("act record number: {error}")))?;
        let record =
            BirthRecord { act_record_number: act_record_number.clone(), registration_date: today, registration };
        self.by_document.insert(document, act_record_number.clone());
        self.records.insert(act_record_number, record.clone());
        Ok(record)
    }
}

/// What the registry checks beyond the form of the fields: the dates and
/// the parents' numbers against the child.
fn check_registration(registration: &BirthRegistration, today: NaiveDate) -> Result<(), Status> {
    convert::request(|violations| {
        if registration.birth_date > today {
            violations.add("registration.birth_date", "must not be in the future");
        }
        if registration.mother.sex() != Sex::Female {
            violations.add("registration.mother_rnokpp", "is a man's number");
        } else if registration.mother.birth_date() >= registration.birth_date {
            violations.add("registration.mother_rnokpp", "belongs to someone born after the child");
        }
        if let Some(father) = registration.father {
            if father.sex() != Sex::Male {
                violations.add("registration.father_rnokpp", "is a woman's number");
            } else if father.birth_date() >= registration.birth_date {
                violations.add("registration.father_rnokpp", "belongs to someone born after the child");
            }
        }
        Some(())
    })
}

/// The civil registry's gRPC service.
#[derive(Debug, Clone)]
pub struct CivilRegistrySimulator {
    world: Arc<World>,
}

impl CivilRegistrySimulator {
    pub(super) fn new(world: Arc<World>) -> Self {
        Self { world }
    }
}

#[tonic::async_trait]
impl CivilRegistryService for CivilRegistrySimulator {
    async fn find_birth_record_by_medical_conclusion(
        &self,
        request: Request<pb::FindBirthRecordByMedicalConclusionRequest>,
    ) -> Result<Response<pb::FindBirthRecordByMedicalConclusionResponse>, Status> {
        let request = request.into_inner();
        let number = convert::request(|violations| {
            Some(convert::text(
                violations,
                "medical_birth_conclusion_number",
                &request.medical_birth_conclusion_number,
                true,
                DOCUMENT_NUMBER_LENGTH_MAX,
            ))
        })?;
        let state = lock(&self.world.civil_registry);
        let record = state
            .by_document
            .get(&DocumentKey::MedicalConclusion(comparable(&number)))
            .and_then(|act_record_number| state.record(act_record_number))
            .ok_or_else(|| Status::not_found(format!("no birth is registered on medical birth conclusion {number}")))?;
        Ok(Response::new(pb::FindBirthRecordByMedicalConclusionResponse {
            record: Some(birth_record_to_proto(record)),
        }))
    }

    async fn register_birth(
        &self,
        request: Request<pb::RegisterBirthRequest>,
    ) -> Result<Response<pb::RegisterBirthResponse>, Status> {
        let request = request.into_inner();
        let registration = convert::request(|violations| {
            registration_from_proto(violations, "registration", request.registration.as_ref())
        })?;
        let today = esocial_kit::time::kyiv_today();
        check_registration(&registration, today)?;
        let record = lock(&self.world.civil_registry).register(registration, today)?;
        tracing::info!(act_record_number = %record.act_record_number, "simulated civil registry: birth registered");
        Ok(Response::new(pb::RegisterBirthResponse { record: Some(birth_record_to_proto(&record)) }))
    }

    async fn get_birth_record(
        &self,
        request: Request<pb::GetBirthRecordRequest>,
    ) -> Result<Response<pb::GetBirthRecordResponse>, Status> {
        let request = request.into_inner();
        let number: ActRecordNumber = convert::request(|violations| {
            convert::identifier(violations, "act_record_number", &request.act_record_number)
        })?;
        let state = lock(&self.world.civil_registry);
        let record = state.record(&number).ok_or_else(|| Status::not_found(format!("no act record {number}")))?;
        Ok(Response::new(pb::GetBirthRecordResponse { record: Some(birth_record_to_proto(record)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PersonName;

    fn registration(basis: BirthBasis) -> BirthRegistration {
        BirthRegistration {
            child: PersonName::new("Мельник", "Софія", "Андріївна"),
            birth_date: NaiveDate::from_ymd_opt(2026, 1, 10).expect("date"),
            sex: Sex::Female,
            place_of_birth: "UA80000000000126643".parse().expect("katottg"),
            mother: "3300912347".parse().expect("rnokpp"),
            father: None,
            basis,
        }
    }

    #[test]
    fn numbers_run_per_year_and_documents_compare_without_case_or_spaces() {
        let mut state = CivilRegistryState::default();
        let today = NaiveDate::from_ymd_opt(2026, 1, 12).expect("date");
        let first = state.register(registration(BirthBasis::MedicalConclusion("мв-1".to_owned())), today).expect("new");
        let second = state.register(registration(BirthBasis::CourtDecision("мв-1".to_owned())), today).expect("new");
        assert_eq!(first.act_record_number.as_str(), "2026-000001");
        assert_eq!(second.act_record_number.as_str(), "2026-000002");
        let repeat = state
            .register(registration(BirthBasis::MedicalConclusion(" МВ-1 ".to_owned())), today)
            .expect_err("registered already");
        assert_eq!(repeat.code(), Code::AlreadyExists);
        assert!(repeat.message().contains("2026-000001"), "{}", repeat.message());
    }

    #[test]
    fn parents_numbers_must_fit_the_child() {
        let today = NaiveDate::from_ymd_opt(2026, 1, 12).expect("date");
        let mut wrong = registration(BirthBasis::MedicalConclusion("1".to_owned()));
        wrong.mother = "3652504575".parse().expect("a man's number");
        wrong.father = Some("3300912347".parse().expect("a woman's number"));
        let status = check_registration(&wrong, today).expect_err("invalid");
        assert!(status.message().contains("registration.mother_rnokpp: is a man's number"), "{}", status.message());
        assert!(status.message().contains("registration.father_rnokpp: is a woman's number"), "{}", status.message());
        let future = registration(BirthBasis::MedicalConclusion("1".to_owned()));
        assert!(check_registration(&future, NaiveDate::from_ymd_opt(2026, 1, 9).expect("date")).is_err());
        assert!(check_registration(&future, today).is_ok());
    }
}
