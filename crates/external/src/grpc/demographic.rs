//! [`DemographicRegister`] over gRPC, and its proto conversions.

use esocial_identifiers::{Katottg, Rnokpp, Unzr};
use esocial_kit::Violations;
use esocial_proto::external::demographic::v1 as pb;
use esocial_proto::external::demographic::v1::check_person_registration_request::Person;
use esocial_proto::external::demographic::v1::demographic_register_service_client::DemographicRegisterServiceClient;
use tonic::transport::Channel;

use super::Gateway;
use super::convert::{self, path};
use crate::Error;
use crate::civil_registry::ActRecordNumber;
use crate::demographic::{DeclaredResidence, DemographicRecord, DemographicRegister, PersonKey, UnzrAssignment};

const SYSTEM: &str = "demographic register";
const ADDRESS_LENGTH_MAX: usize = 300;

/// The demographic register through the exchange gateway.
#[derive(Debug, Clone)]
pub struct GrpcDemographicRegister {
    gateway: Gateway,
}

impl GrpcDemographicRegister {
    pub fn new(gateway: Gateway) -> Self {
        Self { gateway }
    }

    fn client(&self) -> DemographicRegisterServiceClient<Channel> {
        DemographicRegisterServiceClient::new(self.gateway.channel.clone())
    }
}

impl DemographicRegister for GrpcDemographicRegister {
    async fn find_person(&self, key: PersonKey) -> Result<Option<DemographicRecord>, Error> {
        let person = match key {
            PersonKey::Rnokpp(rnokpp) => Person::Rnokpp(rnokpp.as_str().to_owned()),
            PersonKey::Unzr(unzr) => Person::Unzr(unzr.as_str().to_owned()),
        };
        let request = self.gateway.request(pb::CheckPersonRegistrationRequest { person: Some(person) }).await?;
        let response = self.client().check_person_registration(request).await?.into_inner();
        let record = match (response.registered, response.record.as_ref()) {
            (false, None) => return Ok(None),
            (false, Some(_)) => {
                return Err(Error::invalid_response(SYSTEM, "record", "is given for a person not registered"));
            }
            (true, record) => convert::response(SYSTEM, |violations| record_from_proto(violations, "record", record))?,
        };
        let matches = match key {
            PersonKey::Rnokpp(rnokpp) => record.rnokpp == Some(rnokpp),
            PersonKey::Unzr(unzr) => record.unzr == unzr,
        };
        if !matches {
            return Err(Error::invalid_response(SYSTEM, "record", "is not the person asked for"));
        }
        Ok(Some(record))
    }

    async fn assign_newborn_unzr(&self, birth_act_record_number: &ActRecordNumber) -> Result<UnzrAssignment, Error> {
        let request = self
            .gateway
            .request(pb::AssignNewbornUnzrRequest {
                birth_act_record_number: birth_act_record_number.as_str().to_owned(),
            })
            .await?;
        let response = self.client().assign_newborn_unzr(request).await?.into_inner();
        let record =
            convert::response(SYSTEM, |violations| record_from_proto(violations, "record", response.record.as_ref()))?;
        if record.birth_act_record_number.as_ref() != Some(birth_act_record_number) {
            return Err(Error::invalid_response(
                SYSTEM,
                "record.birth_act_record_number",
                "is not the act record the UNZR was asked for",
            ));
        }
        Ok(UnzrAssignment { record, newly_assigned: response.newly_assigned })
    }

    async fn person_record(&self, unzr: Unzr) -> Result<DemographicRecord, Error> {
        let request = self.gateway.request(pb::GetPersonRecordRequest { unzr: unzr.as_str().to_owned() }).await?;
        let response = self.client().get_person_record(request).await?.into_inner();
        let record =
            convert::response(SYSTEM, |violations| record_from_proto(violations, "record", response.record.as_ref()))?;
        if record.unzr != unzr {
            return Err(Error::invalid_response(SYSTEM, "record.unzr", "is not the UNZR asked for"));
        }
        Ok(record)
    }
}

pub(crate) fn record_to_proto(record: &DemographicRecord) -> pb::PersonRecord {
    pb::PersonRecord {
        unzr: record.unzr.as_str().to_owned(),
        rnokpp: record.rnokpp.map(|rnokpp| rnokpp.as_str().to_owned()).unwrap_or_default(),
        last_name: record.name.last_name.clone(),
        first_name: record.name.first_name.clone(),
        patronymic: record.name.patronymic.clone(),
        birth_date: Some(convert::date_to_proto(record.birth_date)),
        sex: convert::sex_to_proto(record.sex),
        ukrainian_citizen: record.ukrainian_citizen,
        declared_residence_katottg: record
            .declared_residence
            .as_ref()
            .map(|residence| residence.territory.as_str().to_owned())
            .unwrap_or_default(),
        declared_residence_address: record
            .declared_residence
            .as_ref()
            .map(|residence| residence.address.clone())
            .unwrap_or_default(),
        birth_act_record_number: record
            .birth_act_record_number
            .as_ref()
            .map(|number| number.as_str().to_owned())
            .unwrap_or_default(),
    }
}

/// A record whose UNZR carries its birth date.
fn record_from_proto(
    violations: &mut Violations,
    field: &str,
    record: Option<&pb::PersonRecord>,
) -> Option<DemographicRecord> {
    let record = convert::required(violations, field, record)?;
    let unzr: Option<Unzr> = convert::identifier(violations, &path(field, "unzr"), &record.unzr);
    let rnokpp: Option<Option<Rnokpp>> =
        convert::optional_identifier(violations, &path(field, "rnokpp"), &record.rnokpp);
    let name = convert::person_name(
        violations,
        [&path(field, "last_name"), &path(field, "first_name"), &path(field, "patronymic")],
        [&record.last_name, &record.first_name, &record.patronymic],
    );
    let birth_date = convert::date(violations, &path(field, "birth_date"), record.birth_date.as_ref());
    let sex = convert::sex(violations, &path(field, "sex"), record.sex);
    let territory: Option<Option<Katottg>> = convert::optional_identifier(
        violations,
        &path(field, "declared_residence_katottg"),
        &record.declared_residence_katottg,
    );
    let address = convert::text(
        violations,
        &path(field, "declared_residence_address"),
        &record.declared_residence_address,
        false,
        ADDRESS_LENGTH_MAX,
    );
    let birth_act_record_number: Option<Option<ActRecordNumber>> = convert::optional_identifier(
        violations,
        &path(field, "birth_act_record_number"),
        &record.birth_act_record_number,
    );
    if let (Some(unzr), Some(birth_date)) = (unzr, birth_date)
        && unzr.birth_date() != birth_date
    {
        violations.add(path(field, "unzr"), "does not carry the birth date");
    }
    Some(DemographicRecord {
        unzr: unzr?,
        rnokpp: rnokpp?,
        name,
        birth_date: birth_date?,
        sex: sex?,
        ukrainian_citizen: record.ukrainian_citizen,
        declared_residence: territory?.map(|territory| DeclaredResidence { territory, address }),
        birth_act_record_number: birth_act_record_number?,
    })
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use esocial_identifiers::Sex;

    use super::*;
    use crate::PersonName;

    fn record() -> DemographicRecord {
        DemographicRecord {
            unzr: "19900517-00017".parse().expect("unzr"),
            rnokpp: Some("3300912347".parse().expect("rnokpp")),
            name: PersonName::new("Мельник", "Ірина", "Василівна"),
            birth_date: NaiveDate::from_ymd_opt(1990, 5, 17).expect("date"),
            sex: Sex::Female,
            ukrainian_citizen: true,
            declared_residence: Some(DeclaredResidence {
                territory: "UA80000000000126643".parse().expect("katottg"),
                address: "вул. Васильківська, буд. 1".to_owned(),
            }),
            birth_act_record_number: None,
        }
    }

    #[test]
    fn a_record_survives_the_round_trip() {
        let proto = record_to_proto(&record());
        let parsed = convert::response(SYSTEM, |violations| record_from_proto(violations, "record", Some(&proto)));
        assert_eq!(parsed.expect("valid"), record());
    }

    #[test]
    fn a_unzr_that_does_not_carry_the_birth_date_is_an_invalid_response() {
        let mut proto = record_to_proto(&record());
        proto.birth_date = Some(convert::date_to_proto(NaiveDate::from_ymd_opt(1990, 5, 18).expect("date")));
        let parsed = convert::response(SYSTEM, |violations| record_from_proto(violations, "record", Some(&proto)));
        assert!(
            matches!(&parsed, Err(Error::InvalidResponse { problems, .. }) if problems[0].field == "record.unzr"),
            "{parsed:?}"
        );
        proto.unzr = "19900517-00018".to_owned();
        let parsed = convert::response(SYSTEM, |violations| record_from_proto(violations, "record", Some(&proto)));
        assert!(matches!(parsed, Err(Error::InvalidResponse { .. })));
    }
}
