//! Turning a person's data from the API (or an import row) into validated
//! `PersonData`, every problem named by its field.

use chrono::{Datelike, NaiveDate};
use esocial_identifiers::{Katottg, Rnokpp, Sex as RnokppSex};
use esocial_kit::Violations;

use crate::domain::{Address, Contacts, Disability, Name, PersonData, Sex};
use crate::replica::Territories;

/// A person's data as it arrives, before checking (the gRPC message and an
/// import row both become this).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct PersonInput {
    pub rnokpp: String,
    pub rnokpp_refused: bool,
    pub unzr: String,
    pub passport_number: String,
    pub last_name: String,
    pub first_name: String,
    pub patronymic: String,
    pub birth_date: Option<NaiveDate>,
    /// Set when the date was given but is not a calendar date.
    #[serde(skip)]
    pub birth_date_invalid: bool,
    pub sex: String,
    pub citizenship: String,
    pub registered_territory: String,
    pub registered_address: String,
    pub actual_territory: String,
    pub actual_address: String,
    pub phone: String,
    pub email: String,
    pub disability: String,
}

const NAME_LENGTH_MAX: usize = 100;
const TEXT_LENGTH_MAX: usize = 300;

fn name_part(violations: &mut Violations, field: &str, value: &str, required: bool) -> String {
    let trimmed = value.trim();
    // Cyrillic and ASCII letters first: `is_alphabetic` is slow outside ASCII.
    let letters_ok = trimmed.chars().all(|character| {
        character.is_ascii_alphabetic()
            || matches!(character, '\u{0400}'..='\u{0481}' | '\u{048A}'..='\u{04FF}')
            || matches!(character, ' ' | '-' | '\'' | '’' | 'ʼ' | '`' | '.')
            || character.is_alphabetic()
    });
    if required && trimmed.is_empty() {
        violations.add(field, "is required");
    } else if trimmed.chars().count() > NAME_LENGTH_MAX {
        violations.add(field, format!("must be at most {NAME_LENGTH_MAX} characters"));
    } else if !letters_ok {
        violations.add(field, "must contain only letters, spaces, hyphens and apostrophes");
    }
    trimmed.to_owned()
}

fn plain_text(violations: &mut Violations, field: &str, value: &str) -> String {
    let trimmed = value.trim();
    if trimmed.chars().count() > TEXT_LENGTH_MAX {
        violations.add(field, format!("must be at most {TEXT_LENGTH_MAX} characters"));
    } else if trimmed.chars().any(char::is_control) {
        violations.add(field, "must not contain control characters");
    }
    trimmed.to_owned()
}

/// `+` and 9 to 15 digits.
fn is_international_phone(phone: &str) -> bool {
    phone
        .strip_prefix('+')
        .is_some_and(|digits| (9..=15).contains(&digits.len()) && digits.bytes().all(|byte| byte.is_ascii_digit()))
}

/// Checks a territory code's form and that the classifier knows it today.
pub async fn territory(
    violations: &mut Violations,
    field: &str,
    code: &str,
    territories: &Territories,
    today: NaiveDate,
) -> Option<Katottg> {
    let parsed = violations.check(field, code.trim().parse::<Katottg>())?;
    if territories.known_on(parsed.as_str(), today).await {
        Some(parsed)
    } else {
        violations.add(field, "is not a territorial unit the classifier knows");
        None
    }
}

/// Validates everything; `prefix` is the field path of the data (`data.` for
/// the API, empty for import rows).
pub async fn person_data(
    violations: &mut Violations,
    prefix: &str,
    input: &PersonInput,
    territories: &Territories,
    today: NaiveDate,
) -> Option<PersonData> {
    let field = |name: &str| format!("{prefix}{name}");
    let rnokpp = if input.rnokpp.trim().is_empty() {
        None
    } else {
        violations.check(&field("rnokpp"), input.rnokpp.parse::<Rnokpp>())
    };
    if input.rnokpp_refused && !input.rnokpp.trim().is_empty() {
        violations.add(field("rnokpp"), "must be empty when the person refused it");
    }
    let unzr = if input.unzr.trim().is_empty() { None } else { violations.check(&field("unzr"), input.unzr.parse()) };
    let passport_number = if input.passport_number.trim().is_empty() {
        None
    } else {
        violations.check(&field("passport_number"), input.passport_number.parse())
    };
    if input.rnokpp.trim().is_empty() && !input.rnokpp_refused && input.unzr.trim().is_empty() {
        violations.add(field("rnokpp"), "is required unless the person refused it (then a passport) or has a UNZR");
    }
    if input.rnokpp_refused && input.passport_number.trim().is_empty() {
        violations.add(field("passport_number"), "is required when the person refused an RNOKPP");
    }
    let name = Name {
        last: name_part(violations, &field("name.last_name"), &input.last_name, true),
        first: name_part(violations, &field("name.first_name"), &input.first_name, true),
        patronymic: name_part(violations, &field("name.patronymic"), &input.patronymic, false),
    };
    let birth_date = match input.birth_date {
        Some(date) if date > today => {
            violations.add(field("birth_date"), "must not be in the future");
            None
        }
        Some(date) if date.year() < 1900 => {
            violations.add(field("birth_date"), "must be in 1900 or later");
            None
        }
        Some(date) => Some(date),
        None if input.birth_date_invalid => {
            violations.add(field("birth_date"), "is not a calendar date");
            None
        }
        None => {
            violations.add(field("birth_date"), "is required");
            None
        }
    };
    let sex = match input.sex.trim() {
        "male" | "SEX_MALE" | "m" | "M" => Some(Sex::Male),
        "female" | "SEX_FEMALE" | "f" | "F" => Some(Sex::Female),
        _ => {
            violations.add(field("sex"), "must be male or female");
            None
        }
    };
    // The RNOKPP encodes the birth date and sex; the UNZR the birth date.
    if let (Some(rnokpp), Some(birth_date)) = (&rnokpp, birth_date) {
        if rnokpp.birth_date() != birth_date {
            violations
                .add(field("rnokpp"), format!("encodes the birth date {}, not {birth_date}", rnokpp.birth_date()));
        }
        let encoded = match rnokpp.sex() {
            RnokppSex::Male => Sex::Male,
            RnokppSex::Female => Sex::Female,
        };
        if sex.is_some_and(|sex| sex != encoded) {
            violations.add(field("sex"), "does not match the sex encoded in the RNOKPP");
        }
    }
    if let (Some(unzr), Some(birth_date)) = (&unzr, birth_date)
        && esocial_identifiers::Unzr::birth_date(unzr) != birth_date
    {
        violations.add(field("unzr"), format!("encodes the birth date {}, not {birth_date}", unzr.birth_date()));
    }
    let citizenship = input.citizenship.trim().to_ascii_uppercase();
    if citizenship.len() != 2 || !citizenship.bytes().all(|byte| byte.is_ascii_uppercase()) {
        violations.add(field("citizenship"), "must be an ISO 3166-1 alpha-2 code, such as UA");
    }
    let registered =
        territory(violations, &field("registered_address.territory"), &input.registered_territory, territories, today)
            .await;
    let registered_line = plain_text(violations, &field("registered_address.line"), &input.registered_address);
    let actual = if input.actual_territory.trim().is_empty() {
        None
    } else {
        territory(violations, &field("actual_address.territory"), &input.actual_territory, territories, today)
            .await
            .map(|code| Address {
                territory: code.to_string(),
                line: plain_text(violations, &field("actual_address.line"), &input.actual_address),
            })
    };
    let phone = plain_text(violations, &field("contacts.phone"), &input.phone);
    if !phone.is_empty() && !is_international_phone(&phone) {
        violations.add(field("contacts.phone"), "must be an international number such as +380501234567");
    }
    let email = plain_text(violations, &field("contacts.email"), &input.email);
    if !email.is_empty()
        && !email.split_once('@').is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'))
    {
        violations.add(field("contacts.email"), "is not an e-mail address");
    }
    let disability = match input.disability.trim() {
        "" | "none" | "DISABILITY_NONE" | "DISABILITY_UNSPECIFIED" => Disability::None,
        "group_i" | "DISABILITY_GROUP_I" => Disability::GroupI,
        "group_ii" | "DISABILITY_GROUP_II" => Disability::GroupIi,
        "group_iii" | "DISABILITY_GROUP_III" => Disability::GroupIii,
        "child" | "DISABILITY_CHILD" => Disability::Child,
        _ => {
            violations.add(field("disability"), "must be none, group_i, group_ii, group_iii or child");
            Disability::None
        }
    };
    Some(PersonData {
        rnokpp,
        rnokpp_refused: input.rnokpp_refused,
        unzr,
        passport_number,
        name,
        birth_date: birth_date?,
        sex: sex?,
        citizenship,
        registered_address: Address { territory: registered?.to_string(), line: registered_line },
        actual_address: actual,
        contacts: Contacts { phone, email },
        disability,
    })
    .filter(|_| violations.is_empty())
}

/// The sex an RNOKPP says, for generated data and tests.
pub fn sex_of(rnokpp: &Rnokpp) -> Sex {
    match rnokpp.sex() {
        RnokppSex::Male => Sex::Male,
        RnokppSex::Female => Sex::Female,
    }
}
