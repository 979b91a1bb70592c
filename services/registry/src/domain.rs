//! The registry's own types.

use chrono::NaiveDate;
use esocial_identifiers::{Katottg, PassportNumber, Rnokpp, Unzr};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Male,
    Female,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Disability {
    #[default]
    None,
    GroupI,
    GroupIi,
    GroupIii,
    Child,
}

impl Disability {
    pub fn is_none(&self) -> bool {
        *self == Disability::None
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Name {
    pub last: String,
    pub first: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub patronymic: String,
}

impl Name {
    pub fn full(&self) -> String {
        [self.last.as_str(), self.first.as_str(), self.patronymic.as_str()]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The name in Latin letters by the national standard.
    pub fn latin(&self) -> Name {
        Name {
            last: esocial_people::transliterate(&self.last),
            first: esocial_people::transliterate(&self.first),
            patronymic: esocial_people::transliterate(&self.patronymic),
        }
    }

    /// The key names are matched by (spelling variants, look-alike letters
    /// and transliterations reduce to the same key).
    pub fn key(&self) -> String {
        esocial_people::comparable_key(&self.full())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Address {
    pub territory: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub line: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Contacts {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phone: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
}

impl Contacts {
    pub fn is_empty(&self) -> bool {
        self.phone.is_empty() && self.email.is_empty()
    }
}

/// What a version of a person says; only ever built by validation. Stored
/// as JSON without the fields that are absent or at their default (a
/// million versions are a lot of bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rnokpp: Option<Rnokpp>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rnokpp_refused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unzr: Option<Unzr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passport_number: Option<PassportNumber>,
    pub name: Name,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub citizenship: String,
    pub registered_address: Address,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_address: Option<Address>,
    #[serde(default, skip_serializing_if = "Contacts::is_empty")]
    pub contacts: Contacts,
    #[serde(default, skip_serializing_if = "Disability::is_none")]
    pub disability: Disability,
}

impl PersonData {
    pub fn registered_territory(&self) -> Option<Katottg> {
        self.registered_address.territory.parse().ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyRelation {
    Parent,
    Child,
    Spouse,
    Guardian,
    Ward,
}

impl FamilyRelation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parent => "parent",
            Self::Child => "child",
            Self::Spouse => "spouse",
            Self::Guardian => "guardian",
            Self::Ward => "ward",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Parent, Self::Child, Self::Spouse, Self::Guardian, Self::Ward]
            .into_iter()
            .find(|relation| relation.as_str() == text)
    }

    /// What this person is to the related person.
    pub fn inverse(self) -> Self {
        match self {
            Self::Parent => Self::Child,
            Self::Child => Self::Parent,
            Self::Spouse => Self::Spouse,
            Self::Guardian => Self::Ward,
            Self::Ward => Self::Guardian,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyLink {
    pub related_person_id: Uuid,
    pub relation: FamilyRelation,
    pub valid_from: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: Uuid,
    pub data: PersonData,
    pub version: u32,
    pub valid_from: NaiveDate,
    pub family: Vec<FamilyLink>,
}

/// Who is acting, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub subject: String,
    pub organization: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateCandidate {
    pub person_id: Uuid,
    pub score: f64,
    pub reasons: Vec<&'static str>,
}
