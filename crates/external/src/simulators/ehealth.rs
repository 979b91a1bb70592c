//! The e-health patient register simulator: newborns added from the civil
//! registry's birth records, except births established by a court.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use esocial_identifiers::{Rnokpp, Unzr};
use esocial_proto::external::ehealth::v1 as pb;
use esocial_proto::external::ehealth::v1::patient_register_service_server::PatientRegisterService;
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;

use super::{World, deterministic_uuid, lock, status_with_info};
use crate::civil_registry::{ActRecordNumber, BirthRecord};
use crate::ehealth::{Patient, REASON_BIRTH_ESTABLISHED_BY_COURT};
use crate::grpc::convert;
use crate::grpc::patient_to_proto;

/// The most patients the simulator keeps.
const PATIENTS_MAX: usize = 100_000;
/// The stream of [`deterministic_uuid`] for patient ids.
const PATIENT_ID_STREAM: u64 = 1;

#[derive(Debug, Default)]
pub(super) struct PatientRegisterState {
    patients: BTreeMap<Uuid, Patient>,
    by_birth_act: HashMap<ActRecordNumber, Uuid>,
    added: u64,
}

/// The request, read.
struct NewbornRequest {
    birth_act_record_number: ActRecordNumber,
    unzr: Option<Unzr>,
    rnokpp: Option<Rnokpp>,
}

/// The identifiers given must be the child's: they carry the birth date
/// (and the RNOKPP the sex).
fn check_identifiers_fit(newborn: &NewbornRequest, birth: &BirthRecord) -> Result<(), Status> {
    convert::request(|violations| {
        let child = &birth.registration;
        if newborn.unzr.is_some_and(|unzr| unzr.birth_date() != child.birth_date) {
            violations.add("unzr", "does not carry the child's birth date");
        }
        if newborn.rnokpp.is_some_and(|rnokpp| rnokpp.birth_date() != child.birth_date || rnokpp.sex() != child.sex) {
            violations.add("rnokpp", "does not encode the child's birth date and sex");
        }
        Some(())
    })
}

/// The e-health patient register's gRPC service.
#[derive(Debug, Clone)]
pub struct PatientRegisterSimulator {
    world: Arc<World>,
}

impl PatientRegisterSimulator {
    pub(super) fn new(world: Arc<World>) -> Self {
        Self { world }
    }
}

#[tonic::async_trait]
impl PatientRegisterService for PatientRegisterSimulator {
    async fn add_newborn_patient(
        &self,
        request: Request<pb::AddNewbornPatientRequest>,
    ) -> Result<Response<pb::AddNewbornPatientResponse>, Status> {
        let request = request.into_inner();
        let newborn = convert::request(|violations| {
            let birth_act_record_number =
                convert::identifier(violations, "birth_act_record_number", &request.birth_act_record_number);
            let unzr = convert::optional_identifier(violations, "unzr", &request.unzr);
            let rnokpp = convert::optional_identifier(violations, "rnokpp", &request.rnokpp);
            Some(NewbornRequest { birth_act_record_number: birth_act_record_number?, unzr: unzr?, rnokpp: rnokpp? })
        })?;
        let number = &newborn.birth_act_record_number;
        let birth = lock(&self.world.civil_registry)
            .record(number)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("the civil registry has no act record {number}")))?;
        if birth.registration.basis.established_by_court() {
            return Err(status_with_info(
                Code::FailedPrecondition,
                format!(
                    "the birth of act record {number} was established by a court decision: \
                     the child is not added to the patient register this way"
                ),
                REASON_BIRTH_ESTABLISHED_BY_COURT,
                &[("act_record_number", number.as_str())],
            ));
        }
        check_identifiers_fit(&newborn, &birth)?;

        let mut state = lock(&self.world.ehealth);
        if let Some(patient_id) = state.by_birth_act.get(number).copied()
            && let Some(patient) = state.patients.get_mut(&patient_id)
        {
            // A repeat: identifiers assigned since the first request fill in.
            patient.unzr = patient.unzr.or(newborn.unzr);
            patient.rnokpp = patient.rnokpp.or(newborn.rnokpp);
            return Ok(Response::new(pb::AddNewbornPatientResponse {
                patient: Some(patient_to_proto(patient)),
                newly_added: false,
            }));
        }
        if state.patients.len() >= PATIENTS_MAX {
            return Err(Status::resource_exhausted("the simulated patient register is full"));
        }
        state.added += 1;
        let patient_id = deterministic_uuid(PATIENT_ID_STREAM, state.added);
        let registration = birth.registration;
        let patient = Patient {
            patient_id,
            unzr: newborn.unzr,
            rnokpp: newborn.rnokpp,
            name: registration.child,
            birth_date: registration.birth_date,
            sex: registration.sex,
            birth_act_record_number: Some(newborn.birth_act_record_number.clone()),
            registered_on: esocial_kit::time::kyiv_today(),
        };
        state.by_birth_act.insert(newborn.birth_act_record_number, patient_id);
        state.patients.insert(patient_id, patient.clone());
        tracing::info!(%patient_id, "simulated patient register: newborn added");
        Ok(Response::new(pb::AddNewbornPatientResponse {
            patient: Some(patient_to_proto(&patient)),
            newly_added: true,
        }))
    }

    async fn get_patient(
        &self,
        request: Request<pb::GetPatientRequest>,
    ) -> Result<Response<pb::GetPatientResponse>, Status> {
        let request = request.into_inner();
        let patient_id: Uuid =
            convert::request(|violations| convert::identifier(violations, "patient_id", &request.patient_id))?;
        let state = lock(&self.world.ehealth);
        let patient =
            state.patients.get(&patient_id).ok_or_else(|| Status::not_found(format!("no patient {patient_id}")))?;
        Ok(Response::new(pb::GetPatientResponse { patient: Some(patient_to_proto(patient)) }))
    }
}
