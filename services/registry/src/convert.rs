//! Between the registry's protobuf messages and its own types.

use chrono::SecondsFormat;
use esocial_kit::dates;
use esocial_proto::common::v1 as common;
use esocial_proto::registry::v1 as pb;

use crate::domain::{Actor, Disability, FamilyRelation, Name, Person, PersonData, Sex};
use crate::store::VersionRow;
use crate::validate::PersonInput;

pub fn actor_to_proto(actor: &Actor) -> common::Actor {
    common::Actor {
        subject: actor.subject.clone(),
        organization_edrpou: actor.organization.clone().unwrap_or_default(),
    }
}

fn sex_to_proto(sex: Sex) -> pb::Sex {
    match sex {
        Sex::Male => pb::Sex::Male,
        Sex::Female => pb::Sex::Female,
    }
}

fn disability_to_proto(disability: Disability) -> pb::Disability {
    match disability {
        Disability::None => pb::Disability::None,
        Disability::GroupI => pb::Disability::GroupI,
        Disability::GroupIi => pb::Disability::GroupIi,
        Disability::GroupIii => pb::Disability::GroupIii,
        Disability::Child => pb::Disability::Child,
    }
}

pub fn relation_to_proto(relation: FamilyRelation) -> pb::FamilyRelation {
    match relation {
        FamilyRelation::Parent => pb::FamilyRelation::Parent,
        FamilyRelation::Child => pb::FamilyRelation::Child,
        FamilyRelation::Spouse => pb::FamilyRelation::Spouse,
        FamilyRelation::Guardian => pb::FamilyRelation::Guardian,
        FamilyRelation::Ward => pb::FamilyRelation::Ward,
    }
}

pub fn relation_from_proto(relation: i32) -> Option<FamilyRelation> {
    match pb::FamilyRelation::try_from(relation).ok()? {
        pb::FamilyRelation::Unspecified => None,
        pb::FamilyRelation::Parent => Some(FamilyRelation::Parent),
        pb::FamilyRelation::Child => Some(FamilyRelation::Child),
        pb::FamilyRelation::Spouse => Some(FamilyRelation::Spouse),
        pb::FamilyRelation::Guardian => Some(FamilyRelation::Guardian),
        pb::FamilyRelation::Ward => Some(FamilyRelation::Ward),
    }
}

fn name_to_proto(name: &Name) -> pb::PersonName {
    pb::PersonName { last_name: name.last.clone(), first_name: name.first.clone(), patronymic: name.patronymic.clone() }
}

pub fn person_data_to_proto(data: &PersonData) -> pb::PersonData {
    pb::PersonData {
        rnokpp: data.rnokpp.map(|rnokpp| rnokpp.to_string()).unwrap_or_default(),
        rnokpp_refused: data.rnokpp_refused,
        unzr: data.unzr.map(|unzr| unzr.to_string()).unwrap_or_default(),
        passport_number: data.passport_number.as_ref().map(ToString::to_string).unwrap_or_default(),
        name: Some(name_to_proto(&data.name)),
        birth_date: Some(dates::to_proto(data.birth_date)),
        sex: sex_to_proto(data.sex).into(),
        citizenship: data.citizenship.clone(),
        registered_address: Some(pb::Address {
            territory: data.registered_address.territory.clone(),
            line: data.registered_address.line.clone(),
        }),
        actual_address: data
            .actual_address
            .as_ref()
            .map(|address| pb::Address { territory: address.territory.clone(), line: address.line.clone() }),
        contacts: Some(pb::Contacts { phone: data.contacts.phone.clone(), email: data.contacts.email.clone() }),
        disability: disability_to_proto(data.disability).into(),
    }
}

pub fn person_to_proto(person: &Person) -> pb::Person {
    pb::Person {
        id: person.id.to_string(),
        data: Some(person_data_to_proto(&person.data)),
        latin_name: Some(name_to_proto(&person.data.name.latin())),
        version: person.version,
        valid_from: Some(dates::to_proto(person.valid_from)),
        family: person
            .family
            .iter()
            .map(|link| pb::FamilyLink {
                related_person_id: link.related_person_id.to_string(),
                relation: relation_to_proto(link.relation).into(),
                valid_from: Some(dates::to_proto(link.valid_from)),
            })
            .collect(),
    }
}

pub fn version_to_proto(row: &VersionRow) -> pb::PersonVersion {
    pb::PersonVersion {
        version: u32::try_from(row.version).unwrap_or_default(),
        valid_from: Some(dates::to_proto(row.valid_from)),
        data: Some(person_data_to_proto(&row.data.0)),
        reason: row.reason.clone(),
        source_document: row.source_document.clone(),
        recorded_by: Some(common::Actor {
            subject: row.recorded_by.clone(),
            organization_edrpou: row.recorded_by_org.clone().unwrap_or_default(),
        }),
        recorded_at: row.recorded_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        person_id: row.person_id.to_string(),
    }
}

/// The unchecked input of a `PersonData` message.
pub fn person_input(data: &pb::PersonData) -> PersonInput {
    let name = data.name.clone().unwrap_or_default();
    let registered = data.registered_address.clone().unwrap_or_default();
    let actual = data.actual_address.clone().unwrap_or_default();
    let contacts = data.contacts.clone().unwrap_or_default();
    let birth_date = data.birth_date.as_ref().and_then(dates::from_proto);
    PersonInput {
        rnokpp: data.rnokpp.clone(),
        rnokpp_refused: data.rnokpp_refused,
        unzr: data.unzr.clone(),
        passport_number: data.passport_number.clone(),
        last_name: name.last_name,
        first_name: name.first_name,
        patronymic: name.patronymic,
        birth_date,
        birth_date_invalid: data.birth_date.is_some() && birth_date.is_none(),
        sex: pb::Sex::try_from(data.sex).map(|sex| sex.as_str_name().to_owned()).unwrap_or_default(),
        citizenship: data.citizenship.clone(),
        registered_territory: registered.territory,
        registered_address: registered.line,
        actual_territory: actual.territory,
        actual_address: actual.line,
        phone: contacts.phone,
        email: contacts.email,
        disability: pb::Disability::try_from(data.disability)
            .map(|value| value.as_str_name().to_owned())
            .unwrap_or_default(),
    }
}
