//! Field readers shared by the adapters (reading responses) and the
//! simulators (reading requests): every problem is collected under its proto
//! field path.

use std::str::FromStr;

use chrono::NaiveDate;
use esocial_identifiers::{Money, Sex};
use esocial_kit::{ApiError, Violations};
use esocial_proto::common::v1 as common;

use crate::{Error, FieldProblem, PersonName};

/// The longest part of a name, in characters.
pub(crate) const NAME_LENGTH_MAX: usize = 100;

/// Runs a reader, giving its value when nothing was wrong, or every problem.
fn read_all<Value>(read: impl FnOnce(&mut Violations) -> Option<Value>) -> Result<Value, Vec<FieldProblem>> {
    let mut violations = Violations::new();
    let value = read(&mut violations);
    match (violations.finish(), value) {
        (Ok(()), Some(value)) => Ok(value),
        (Err(ApiError::InvalidArgument(found)), _) => Err(found
            .into_iter()
            .map(|violation| FieldProblem { field: violation.field, description: violation.description })
            .collect()),
        (Err(other), _) => Err(vec![FieldProblem { field: String::new(), description: other.to_string() }]),
        (Ok(()), None) => Err(vec![FieldProblem { field: String::new(), description: "could not be read".to_owned() }]),
    }
}

/// Reads a response of `system`; problems make an invalid response.
pub(crate) fn response<Value>(
    system: &'static str,
    read: impl FnOnce(&mut Violations) -> Option<Value>,
) -> Result<Value, Error> {
    read_all(read).map_err(|problems| Error::InvalidResponse { system, problems })
}

/// Reads a request (in a simulator); problems make `INVALID_ARGUMENT` with
/// `google.rpc.BadRequest`.
pub(crate) fn request<Value>(read: impl FnOnce(&mut Violations) -> Option<Value>) -> Result<Value, tonic::Status> {
    read_all(read).map_err(|problems| {
        tonic::Status::from(ApiError::InvalidArgument(
            problems
                .into_iter()
                .map(|problem| esocial_kit::FieldViolation::new(problem.field, problem.description))
                .collect(),
        ))
    })
}

/// `prefix.name`, or `name` at the top level.
pub(crate) fn path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_owned() } else { format!("{prefix}.{name}") }
}

/// A required message.
pub(crate) fn required<'message, Message>(
    violations: &mut Violations,
    field: &str,
    message: Option<&'message Message>,
) -> Option<&'message Message> {
    if message.is_none() {
        violations.add(field, "is required");
    }
    message
}

/// A required identifier in its printed form.
pub(crate) fn identifier<Identifier>(violations: &mut Violations, field: &str, text: &str) -> Option<Identifier>
where
    Identifier: FromStr,
    Identifier::Err: std::fmt::Display,
{
    if text.trim().is_empty() {
        violations.add(field, "is required");
        return None;
    }
    violations.check(field, text.parse())
}

/// An optional identifier: empty text is `Some(None)`, invalid text `None`.
pub(crate) fn optional_identifier<Identifier>(
    violations: &mut Violations,
    field: &str,
    text: &str,
) -> Option<Option<Identifier>>
where
    Identifier: FromStr,
    Identifier::Err: std::fmt::Display,
{
    if text.trim().is_empty() {
        return Some(None);
    }
    violations.check(field, text.parse()).map(Some)
}

/// Trimmed text of at most `length_max` characters; required text must not
/// be blank.
pub(crate) fn text(violations: &mut Violations, field: &str, value: &str, required: bool, length_max: usize) -> String {
    let trimmed = value.trim();
    if required && trimmed.is_empty() {
        violations.add(field, "is required");
    } else if trimmed.chars().count() > length_max {
        violations.add(field, format!("must have at most {length_max} characters"));
    }
    trimmed.to_owned()
}

/// A name from its three fields (surname and first name required).
pub(crate) fn person_name(violations: &mut Violations, fields: [&str; 3], values: [&str; 3]) -> PersonName {
    PersonName {
        last_name: text(violations, fields[0], values[0], true, NAME_LENGTH_MAX),
        first_name: text(violations, fields[1], values[1], true, NAME_LENGTH_MAX),
        patronymic: text(violations, fields[2], values[2], false, NAME_LENGTH_MAX),
    }
}

pub(crate) fn date(violations: &mut Violations, field: &str, date: Option<&common::Date>) -> Option<NaiveDate> {
    esocial_kit::dates::required(violations, field, date)
}

pub(crate) fn date_to_proto(date: NaiveDate) -> common::Date {
    esocial_kit::dates::to_proto(date)
}

/// Every external package numbers its `Sex` enum alike: 1 male, 2 female.
const SEX_MALE: i32 = 1;
const SEX_FEMALE: i32 = 2;

pub(crate) fn sex(violations: &mut Violations, field: &str, value: i32) -> Option<Sex> {
    match value {
        SEX_MALE => Some(Sex::Male),
        SEX_FEMALE => Some(Sex::Female),
        _ => {
            violations.add(field, "must be male or female");
            None
        }
    }
}

pub(crate) fn sex_to_proto(sex: Sex) -> i32 {
    match sex {
        Sex::Male => SEX_MALE,
        Sex::Female => SEX_FEMALE,
    }
}

pub(crate) fn money(violations: &mut Violations, field: &str, money: Option<&common::Money>) -> Option<Money> {
    required(violations, field, money).map(|money| Money::from_kopiykas(money.kopiykas))
}

pub(crate) fn money_to_proto(money: Money) -> common::Money {
    common::Money { kopiykas: money.kopiykas() }
}

#[cfg(test)]
mod tests {
    use esocial_identifiers::Rnokpp;

    use super::*;

    #[test]
    fn every_external_sex_enum_numbers_male_and_female_alike() {
        use esocial_proto::external::{civil_registry, demographic, ehealth, tax};
        for (male, female) in [
            (civil_registry::v1::Sex::Male as i32, civil_registry::v1::Sex::Female as i32),
            (demographic::v1::Sex::Male as i32, demographic::v1::Sex::Female as i32),
            (tax::v1::Sex::Male as i32, tax::v1::Sex::Female as i32),
            (ehealth::v1::Sex::Male as i32, ehealth::v1::Sex::Female as i32),
        ] {
            assert_eq!((male, female), (SEX_MALE, SEX_FEMALE));
        }
    }

    #[test]
    fn problems_are_collected_under_their_paths() {
        let result = response("tax register", |violations| {
            let rnokpp: Option<Rnokpp> = identifier(violations, &path("taxpayer", "rnokpp"), "1759013770");
            let sex = sex(violations, "taxpayer.sex", 0);
            let name = person_name(violations, ["last_name", "first_name", "patronymic"], ["", "Ім’я", ""]);
            Some((rnokpp?, sex?, name))
        });
        match result {
            Err(Error::InvalidResponse { system, problems }) => {
                assert_eq!(system, "tax register");
                let fields: Vec<&str> = problems.iter().map(|problem| problem.field.as_str()).collect();
                assert_eq!(fields, ["taxpayer.rnokpp", "taxpayer.sex", "last_name"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn optional_identifiers_accept_empty_text_only_as_absent() {
        let mut violations = Violations::new();
        assert_eq!(optional_identifier::<Rnokpp>(&mut violations, "rnokpp", ""), Some(None));
        assert!(
            optional_identifier::<Rnokpp>(&mut violations, "rnokpp", "3652504575").is_some_and(|found| found.is_some())
        );
        assert_eq!(optional_identifier::<Rnokpp>(&mut violations, "rnokpp", "123"), None);
        assert!(!violations.is_empty());
    }

    #[test]
    fn a_request_with_problems_is_invalid_argument() {
        let status = request(|violations| identifier::<Rnokpp>(violations, "rnokpp", "")).expect_err("invalid");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("rnokpp: is required"), "{}", status.message());
    }
}
