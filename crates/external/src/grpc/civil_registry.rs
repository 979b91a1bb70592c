//! [`CivilRegistry`] over gRPC, and its proto conversions.

use esocial_identifiers::{Katottg, Rnokpp};
use esocial_kit::Violations;
use esocial_proto::external::civil_registry::v1 as pb;
use esocial_proto::external::civil_registry::v1::birth_registration::Basis;
use esocial_proto::external::civil_registry::v1::civil_registry_service_client::CivilRegistryServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use super::Gateway;
use super::convert::{self, path};
use crate::Error;
use crate::civil_registry::{
    ActRecordNumber, BirthBasis, BirthRecord, BirthRegistration, CivilRegistry, DOCUMENT_NUMBER_LENGTH_MAX,
};

const SYSTEM: &str = "civil registry";

/// The civil registry through the exchange gateway.
#[derive(Debug, Clone)]
pub struct GrpcCivilRegistry {
    gateway: Gateway,
}

impl GrpcCivilRegistry {
    pub fn new(gateway: Gateway) -> Self {
        Self { gateway }
    }

    fn client(&self) -> CivilRegistryServiceClient<Channel> {
        CivilRegistryServiceClient::new(self.gateway.channel.clone())
    }
}

impl CivilRegistry for GrpcCivilRegistry {
    async fn find_birth_record_by_medical_conclusion(
        &self,
        medical_conclusion_number: &str,
    ) -> Result<Option<BirthRecord>, Error> {
        let request = self
            .gateway
            .request(pb::FindBirthRecordByMedicalConclusionRequest {
                medical_birth_conclusion_number: medical_conclusion_number.to_owned(),
            })
            .await?;
        match self.client().find_birth_record_by_medical_conclusion(request).await {
            Ok(response) => {
                let response = response.into_inner();
                convert::response(SYSTEM, |violations| {
                    record_from_proto(violations, "record", response.record.as_ref())
                })
                .map(Some)
            }
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status.into()),
        }
    }

    async fn register_birth(&self, registration: &BirthRegistration) -> Result<BirthRecord, Error> {
        let request = self
            .gateway
            .request(pb::RegisterBirthRequest { registration: Some(registration_to_proto(registration)) })
            .await?;
        let response = self.client().register_birth(request).await?.into_inner();
        convert::response(SYSTEM, |violations| record_from_proto(violations, "record", response.record.as_ref()))
    }

    async fn birth_record(&self, act_record_number: &ActRecordNumber) -> Result<BirthRecord, Error> {
        let request = self
            .gateway
            .request(pb::GetBirthRecordRequest { act_record_number: act_record_number.as_str().to_owned() })
            .await?;
        let response = self.client().get_birth_record(request).await?.into_inner();
        let record =
            convert::response(SYSTEM, |violations| record_from_proto(violations, "record", response.record.as_ref()))?;
        if record.act_record_number != *act_record_number {
            return Err(Error::invalid_response(SYSTEM, "record.act_record_number", "is not the record asked for"));
        }
        Ok(record)
    }
}

pub(crate) fn registration_to_proto(registration: &BirthRegistration) -> pb::BirthRegistration {
    let basis = match &registration.basis {
        BirthBasis::MedicalConclusion(number) => Basis::MedicalBirthConclusionNumber(number.clone()),
        BirthBasis::CourtDecision(number) => Basis::CourtDecisionNumber(number.clone()),
    };
    pb::BirthRegistration {
        child_last_name: registration.child.last_name.clone(),
        child_first_name: registration.child.first_name.clone(),
        child_patronymic: registration.child.patronymic.clone(),
        birth_date: Some(convert::date_to_proto(registration.birth_date)),
        sex: convert::sex_to_proto(registration.sex),
        place_of_birth_katottg: registration.place_of_birth.as_str().to_owned(),
        mother_rnokpp: registration.mother.as_str().to_owned(),
        father_rnokpp: registration.father.map(|father| father.as_str().to_owned()).unwrap_or_default(),
        established_by_court: registration.basis.established_by_court(),
        basis: Some(basis),
    }
}

/// A birth registration, with every field checked; the flag
/// `established_by_court` must agree with the basis.
pub(crate) fn registration_from_proto(
    violations: &mut Violations,
    field: &str,
    registration: Option<&pb::BirthRegistration>,
) -> Option<BirthRegistration> {
    let registration = convert::required(violations, field, registration)?;
    let child = convert::person_name(
        violations,
        [&path(field, "child_last_name"), &path(field, "child_first_name"), &path(field, "child_patronymic")],
        [&registration.child_last_name, &registration.child_first_name, &registration.child_patronymic],
    );
    let birth_date = convert::date(violations, &path(field, "birth_date"), registration.birth_date.as_ref());
    let sex = convert::sex(violations, &path(field, "sex"), registration.sex);
    let place_of_birth: Option<Katottg> =
        convert::identifier(violations, &path(field, "place_of_birth_katottg"), &registration.place_of_birth_katottg);
    let mother: Option<Rnokpp> =
        convert::identifier(violations, &path(field, "mother_rnokpp"), &registration.mother_rnokpp);
    let father: Option<Option<Rnokpp>> =
        convert::optional_identifier(violations, &path(field, "father_rnokpp"), &registration.father_rnokpp);
    let basis = match &registration.basis {
        Some(Basis::MedicalBirthConclusionNumber(number)) => {
            let field = path(field, "medical_birth_conclusion_number");
            Some(BirthBasis::MedicalConclusion(convert::text(
                violations,
                &field,
                number,
                true,
                DOCUMENT_NUMBER_LENGTH_MAX,
            )))
        }
        Some(Basis::CourtDecisionNumber(number)) => {
            let field = path(field, "court_decision_number");
            Some(BirthBasis::CourtDecision(convert::text(violations, &field, number, true, DOCUMENT_NUMBER_LENGTH_MAX)))
        }
        None => {
            violations.add(
                path(field, "basis"),
                "one of medical_birth_conclusion_number and court_decision_number is required",
            );
            None
        }
    };
    if let Some(basis) = &basis
        && basis.established_by_court() != registration.established_by_court
    {
        violations
            .add(path(field, "established_by_court"), "must be true exactly when the basis is a court decision number");
    }
    Some(BirthRegistration {
        child,
        birth_date: birth_date?,
        sex: sex?,
        place_of_birth: place_of_birth?,
        mother: mother?,
        father: father?,
        basis: basis?,
    })
}

pub(crate) fn record_to_proto(record: &BirthRecord) -> pb::BirthRecord {
    pb::BirthRecord {
        act_record_number: record.act_record_number.as_str().to_owned(),
        registration_date: Some(convert::date_to_proto(record.registration_date)),
        registration: Some(registration_to_proto(&record.registration)),
    }
}

fn record_from_proto(
    violations: &mut Violations,
    field: &str,
    record: Option<&pb::BirthRecord>,
) -> Option<BirthRecord> {
    let record = convert::required(violations, field, record)?;
    let act_record_number: Option<ActRecordNumber> =
        convert::identifier(violations, &path(field, "act_record_number"), &record.act_record_number);
    let registration_date =
        convert::date(violations, &path(field, "registration_date"), record.registration_date.as_ref());
    let registration = registration_from_proto(violations, &path(field, "registration"), record.registration.as_ref());
    Some(BirthRecord {
        act_record_number: act_record_number?,
        registration_date: registration_date?,
        registration: registration?,
    })
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use esocial_identifiers::Sex;

    use super::*;
    use crate::PersonName;

    fn registration() -> BirthRegistration {
        BirthRegistration {
            child: PersonName::new("Мельник", "Софія", "Андріївна"),
            birth_date: NaiveDate::from_ymd_opt(2026, 1, 10).expect("date"),
            sex: Sex::Female,
            place_of_birth: "UA80000000000126643".parse().expect("katottg"),
            mother: "3300912347".parse().expect("rnokpp"),
            father: Some("3652504575".parse().expect("rnokpp")),
            basis: BirthBasis::CourtDecision("757/1234/25".to_owned()),
        }
    }

    #[test]
    fn a_registration_survives_the_round_trip_with_the_court_flag() {
        let proto = registration_to_proto(&registration());
        assert!(proto.established_by_court);
        let parsed = convert::response(SYSTEM, |violations| registration_from_proto(violations, "", Some(&proto)));
        assert_eq!(parsed.expect("valid"), registration());
    }

    #[test]
    fn a_flag_that_contradicts_the_basis_and_bad_identifiers_are_named() {
        let mut proto = registration_to_proto(&registration());
        proto.established_by_court = false;
        proto.mother_rnokpp = "1759013770".to_owned();
        proto.father_rnokpp = String::new();
        let problems = match convert::response(SYSTEM, |violations| {
            registration_from_proto(violations, "registration", Some(&proto))
        }) {
            Err(Error::InvalidResponse { problems, .. }) => problems,
            other => panic!("unexpected {other:?}"),
        };
        let fields: Vec<&str> = problems.iter().map(|problem| problem.field.as_str()).collect();
        assert_eq!(fields, ["registration.mother_rnokpp", "registration.established_by_court"]);
    }
}
