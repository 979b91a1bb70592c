//! [`PatientRegister`] over gRPC, and its proto conversions.

use esocial_identifiers::{Rnokpp, Unzr};
use esocial_kit::Violations;
use esocial_proto::external::ehealth::v1 as pb;
use esocial_proto::external::ehealth::v1::patient_register_service_client::PatientRegisterServiceClient;
use tonic::transport::Channel;
use uuid::Uuid;

use super::Gateway;
use super::convert::{self, path};
use crate::Error;
use crate::civil_registry::ActRecordNumber;
use crate::ehealth::{NewbornPatient, Patient, PatientAddition, PatientRegister};

const SYSTEM: &str = "e-health patient register";

/// The e-health patient register through the exchange gateway.
#[derive(Debug, Clone)]
pub struct GrpcPatientRegister {
    gateway: Gateway,
}

impl GrpcPatientRegister {
    pub fn new(gateway: Gateway) -> Self {
        Self { gateway }
    }

    fn client(&self) -> PatientRegisterServiceClient<Channel> {
        PatientRegisterServiceClient::new(self.gateway.channel.clone())
    }
}

impl PatientRegister for GrpcPatientRegister {
    async fn add_newborn_patient(&self, newborn: &NewbornPatient) -> Result<PatientAddition, Error> {
        let request = self
            .gateway
            .request(pb::AddNewbornPatientRequest {
                birth_act_record_number: newborn.birth_act_record_number.as_str().to_owned(),
                unzr: newborn.unzr.map(|unzr| unzr.as_str().to_owned()).unwrap_or_default(),
                rnokpp: newborn.rnokpp.map(|rnokpp| rnokpp.as_str().to_owned()).unwrap_or_default(),
            })
            .await?;
        let response = self.client().add_newborn_patient(request).await?.into_inner();
        let patient = convert::response(SYSTEM, |violations| {
            patient_from_proto(violations, "patient", response.patient.as_ref())
        })?;
        if patient.birth_act_record_number.as_ref() != Some(&newborn.birth_act_record_number) {
            return Err(Error::invalid_response(
                SYSTEM,
                "patient.birth_act_record_number",
                "is not the act record the patient was added from",
            ));
        }
        Ok(PatientAddition { patient, newly_added: response.newly_added })
    }

    async fn patient(&self, patient_id: Uuid) -> Result<Patient, Error> {
        let request = self.gateway.request(pb::GetPatientRequest { patient_id: patient_id.to_string() }).await?;
        let response = self.client().get_patient(request).await?.into_inner();
        let patient = convert::response(SYSTEM, |violations| {
            patient_from_proto(violations, "patient", response.patient.as_ref())
        })?;
        if patient.patient_id != patient_id {
            return Err(Error::invalid_response(SYSTEM, "patient.patient_id", "is not the patient asked for"));
        }
        Ok(patient)
    }
}

pub(crate) fn patient_to_proto(patient: &Patient) -> pb::Patient {
    pb::Patient {
        patient_id: patient.patient_id.to_string(),
        unzr: patient.unzr.map(|unzr| unzr.as_str().to_owned()).unwrap_or_default(),
        rnokpp: patient.rnokpp.map(|rnokpp| rnokpp.as_str().to_owned()).unwrap_or_default(),
        last_name: patient.name.last_name.clone(),
        first_name: patient.name.first_name.clone(),
        patronymic: patient.name.patronymic.clone(),
        birth_date: Some(convert::date_to_proto(patient.birth_date)),
        sex: convert::sex_to_proto(patient.sex),
        birth_act_record_number: patient
            .birth_act_record_number
            .as_ref()
            .map(|number| number.as_str().to_owned())
            .unwrap_or_default(),
        registered_on: Some(convert::date_to_proto(patient.registered_on)),
    }
}

fn patient_from_proto(violations: &mut Violations, field: &str, patient: Option<&pb::Patient>) -> Option<Patient> {
    let patient = convert::required(violations, field, patient)?;
    let patient_id: Option<Uuid> = convert::identifier(violations, &path(field, "patient_id"), &patient.patient_id);
    let unzr: Option<Option<Unzr>> = convert::optional_identifier(violations, &path(field, "unzr"), &patient.unzr);
    let rnokpp: Option<Option<Rnokpp>> =
        convert::optional_identifier(violations, &path(field, "rnokpp"), &patient.rnokpp);
    let name = convert::person_name(
        violations,
        [&path(field, "last_name"), &path(field, "first_name"), &path(field, "patronymic")],
        [&patient.last_name, &patient.first_name, &patient.patronymic],
    );
    let birth_date = convert::date(violations, &path(field, "birth_date"), patient.birth_date.as_ref());
    let sex = convert::sex(violations, &path(field, "sex"), patient.sex);
    let birth_act_record_number: Option<Option<ActRecordNumber>> = convert::optional_identifier(
        violations,
        &path(field, "birth_act_record_number"),
        &patient.birth_act_record_number,
    );
    let registered_on = convert::date(violations, &path(field, "registered_on"), patient.registered_on.as_ref());
    if let (Some(Some(unzr)), Some(birth_date)) = (unzr, birth_date)
        && unzr.birth_date() != birth_date
    {
        violations.add(path(field, "unzr"), "does not carry the birth date");
    }
    Some(Patient {
        patient_id: patient_id?,
        unzr: unzr?,
        rnokpp: rnokpp?,
        name,
        birth_date: birth_date?,
        sex: sex?,
        birth_act_record_number: birth_act_record_number?,
        registered_on: registered_on?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patient_id_that_is_not_a_uuid_is_an_invalid_response() {
        let proto = pb::Patient {
            patient_id: "patient-1".to_owned(),
            last_name: "Мельник".to_owned(),
            first_name: "Софія".to_owned(),
            birth_date: Some(esocial_proto::common::v1::Date { year: 2026, month: 1, day: 10 }),
            sex: 2,
            registered_on: Some(esocial_proto::common::v1::Date { year: 2026, month: 1, day: 12 }),
            ..pb::Patient::default()
        };
        let parsed = convert::response(SYSTEM, |violations| patient_from_proto(violations, "patient", Some(&proto)));
        let fields: Vec<String> = match &parsed {
            Err(Error::InvalidResponse { problems, .. }) => {
                problems.iter().map(|problem| problem.field.clone()).collect()
            }
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(fields, ["patient.patient_id"]);
    }
}
