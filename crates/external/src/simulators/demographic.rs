//! The demographic register simulator: persons by UNZR; newborns added from
//! the civil registry's birth records.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use esocial_identifiers::{Rnokpp, Unzr};
use esocial_proto::external::demographic::v1 as pb;
use esocial_proto::external::demographic::v1::check_person_registration_request::Person;
use esocial_proto::external::demographic::v1::demographic_register_service_server::DemographicRegisterService;
use tonic::{Request, Response, Status};

use super::{World, lock};
use crate::civil_registry::ActRecordNumber;
use crate::demographic::{DemographicRecord, PersonKey};
use crate::grpc::convert;
use crate::grpc::demographic_record_to_proto;
use crate::sandbox::SandboxAdult;

/// The most records the simulator keeps.
const RECORDS_MAX: usize = 100_000;

#[derive(Debug, Default)]
pub(super) struct DemographicState {
    records: BTreeMap<Unzr, DemographicRecord>,
    by_rnokpp: HashMap<Rnokpp, Unzr>,
    by_birth_act: HashMap<ActRecordNumber, Unzr>,
}

impl DemographicState {
    pub(super) fn add_adult(&mut self, adult: &SandboxAdult) {
        self.insert(DemographicRecord {
            unzr: adult.unzr,
            rnokpp: Some(adult.rnokpp),
            name: adult.name.clone(),
            birth_date: adult.birth_date,
            sex: adult.sex,
            ukrainian_citizen: adult.ukrainian_citizen,
            declared_residence: adult.declared_residence.clone(),
            birth_act_record_number: None,
        });
    }

    fn insert(&mut self, record: DemographicRecord) {
        if let Some(rnokpp) = record.rnokpp {
            self.by_rnokpp.insert(rnokpp, record.unzr);
        }
        if let Some(number) = &record.birth_act_record_number {
            self.by_birth_act.insert(number.clone(), record.unzr);
        }
        self.records.insert(record.unzr, record);
    }

    pub(super) fn record(&self, unzr: Unzr) -> Option<&DemographicRecord> {
        self.records.get(&unzr)
    }

    fn find(&self, key: PersonKey) -> Option<&DemographicRecord> {
        match key {
            PersonKey::Unzr(unzr) => self.records.get(&unzr),
            PersonKey::Rnokpp(rnokpp) => self.by_rnokpp.get(&rnokpp).and_then(|unzr| self.records.get(unzr)),
        }
    }

    fn newborn(&self, birth_act_record_number: &ActRecordNumber) -> Option<&DemographicRecord> {
        self.by_birth_act.get(birth_act_record_number).and_then(|unzr| self.records.get(unzr))
    }

    /// The first UNZR of a birth date that nobody has: serials from 1 up.
    fn free_unzr(&self, birth_date: NaiveDate) -> Option<Unzr> {
        (1..=9999)
            .filter_map(|serial| Unzr::compose(birth_date, serial).ok())
            .find(|unzr| !self.records.contains_key(unzr))
    }

    /// Records the RNOKPP the tax register gave a person.
    pub(super) fn set_rnokpp(&mut self, unzr: Unzr, rnokpp: Rnokpp) {
        if let Some(record) = self.records.get_mut(&unzr) {
            record.rnokpp = Some(rnokpp);
            self.by_rnokpp.insert(rnokpp, unzr);
        }
    }
}

/// The demographic register's gRPC service.
#[derive(Debug, Clone)]
pub struct DemographicRegisterSimulator {
    world: Arc<World>,
}

impl DemographicRegisterSimulator {
    pub(super) fn new(world: Arc<World>) -> Self {
        Self { world }
    }
}

#[tonic::async_trait]
impl DemographicRegisterService for DemographicRegisterSimulator {
    async fn check_person_registration(
        &self,
        request: Request<pb::CheckPersonRegistrationRequest>,
    ) -> Result<Response<pb::CheckPersonRegistrationResponse>, Status> {
        let request = request.into_inner();
        let key = convert::request(|violations| match &request.person {
            Some(Person::Rnokpp(text)) => convert::identifier(violations, "rnokpp", text).map(PersonKey::Rnokpp),
            Some(Person::Unzr(text)) => convert::identifier(violations, "unzr", text).map(PersonKey::Unzr),
            None => {
                violations.add("person", "one of rnokpp and unzr is required");
                None
            }
        })?;
        let state = lock(&self.world.demographic);
        let record = state.find(key).map(demographic_record_to_proto);
        Ok(Response::new(pb::CheckPersonRegistrationResponse { registered: record.is_some(), record }))
    }

    async fn assign_newborn_unzr(
        &self,
        request: Request<pb::AssignNewbornUnzrRequest>,
    ) -> Result<Response<pb::AssignNewbornUnzrResponse>, Status> {
        let request = request.into_inner();
        let number: ActRecordNumber = convert::request(|violations| {
            convert::identifier(violations, "birth_act_record_number", &request.birth_act_record_number)
        })?;
        if let Some(record) = lock(&self.world.demographic).newborn(&number) {
            return Ok(Response::new(pb::AssignNewbornUnzrResponse {
                record: Some(demographic_record_to_proto(record)),
                newly_assigned: false,
            }));
        }
        let birth = lock(&self.world.civil_registry)
            .record(&number)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("the civil registry has no act record {number}")))?;

        let mut state = lock(&self.world.demographic);
        // Another request may have added the child since the check above.
        if let Some(record) = state.newborn(&number) {
            return Ok(Response::new(pb::AssignNewbornUnzrResponse {
                record: Some(demographic_record_to_proto(record)),
                newly_assigned: false,
            }));
        }
        if state.records.len() >= RECORDS_MAX {
            return Err(Status::resource_exhausted("the simulated demographic register is full"));
        }
        let registration = birth.registration;
        let unzr = state
            .free_unzr(registration.birth_date)
            .ok_or_else(|| Status::resource_exhausted(format!("every UNZR of {} is taken", registration.birth_date)))?;
        let record = DemographicRecord {
            unzr,
            rnokpp: None,
            name: registration.child,
            birth_date: registration.birth_date,
            sex: registration.sex,
            // A child of a citizen of Ukraine is a citizen by birth; the
            // civil registry registers births of citizens here.
            ukrainian_citizen: true,
            declared_residence: None,
            birth_act_record_number: Some(number),
        };
        state.insert(record.clone());
        tracing::info!(%unzr, "simulated demographic register: newborn added");
        Ok(Response::new(pb::AssignNewbornUnzrResponse {
            record: Some(demographic_record_to_proto(&record)),
            newly_assigned: true,
        }))
    }

    async fn get_person_record(
        &self,
        request: Request<pb::GetPersonRecordRequest>,
    ) -> Result<Response<pb::GetPersonRecordResponse>, Status> {
        let request = request.into_inner();
        let unzr: Unzr = convert::request(|violations| convert::identifier(violations, "unzr", &request.unzr))?;
        let state = lock(&self.world.demographic);
        let record = state.record(unzr).ok_or_else(|| Status::not_found(format!("no record {unzr}")))?;
        Ok(Response::new(pb::GetPersonRecordResponse { record: Some(demographic_record_to_proto(record)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_unzrs_skip_the_serials_taken() {
        let mut state = DemographicState::default();
        let adult = &crate::sandbox_adults()[0];
        state.add_adult(adult);
        let free = state.free_unzr(adult.birth_date).expect("free");
        assert_ne!(free, adult.unzr);
        assert_eq!(free.birth_date(), adult.birth_date);
        assert_eq!(state.find(PersonKey::Rnokpp(adult.rnokpp)).map(|record| record.unzr), Some(adult.unzr));
        let date = NaiveDate::from_ymd_opt(2026, 1, 10).expect("date");
        assert_eq!(state.free_unzr(date), Unzr::compose(date, 1).ok());
    }
}
