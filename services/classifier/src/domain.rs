//! The classifier's own types, free of protobuf and SQL: catalogue entries,
//! their versions, and the rules for adding and ending versions.

use chrono::{DateTime, NaiveDate, Utc};
use esocial_identifiers::{Katottg, Money, MoneyError};
use serde::{Deserialize, Serialize};

/// A support type code: upper-case letters, digits and `_`, starting with a
/// letter, at most 64 characters (`BIRTH_ASSISTANCE`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SupportTypeCode(String);

impl SupportTypeCode {
    pub fn parse(text: &str) -> Result<Self, String> {
        if is_upper_snake_code(text) {
            Ok(Self(text.to_owned()))
        } else {
            Err("must be 1 to 64 upper-case letters, digits or `_`, starting with a letter".to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_upper_snake_code(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text.starts_with(|character: char| character.is_ascii_uppercase())
        && text
            .chars()
            .all(|character| character.is_ascii_uppercase() || character.is_ascii_digit() || character == '_')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupportCategory {
    Payment,
    Benefit,
    SocialService,
    HousingSubsidy,
}

impl SupportCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            SupportCategory::Payment => "payment",
            SupportCategory::Benefit => "benefit",
            SupportCategory::SocialService => "social_service",
            SupportCategory::HousingSubsidy => "housing_subsidy",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Payment, Self::Benefit, Self::SocialService, Self::HousingSubsidy]
            .into_iter()
            .find(|category| category.as_str() == text)
    }
}

/// Which date of a case decides the version of a rule that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisiveDate {
    BirthDate,
    ApplicationDate,
    PaymentMonth,
}

impl DecisiveDate {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisiveDate::BirthDate => "birth_date",
            DecisiveDate::ApplicationDate => "application_date",
            DecisiveDate::PaymentMonth => "payment_month",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::BirthDate, Self::ApplicationDate, Self::PaymentMonth].into_iter().find(|date| date.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryAmount {
    pub recipient_category: String,
    pub amount: Money,
}

/// How a support type is paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PaymentRule {
    OneOff { amount: Money },
    Monthly { amounts: Vec<CategoryAmount>, grant_period_months: u32 },
    Instalments { first_payment: Money, monthly_payment: Money, months: u32 },
}

impl PaymentRule {
    /// The total per recipient, where there is one (not for open-ended
    /// monthly payments).
    pub fn total(&self) -> Result<Option<Money>, MoneyError> {
        match self {
            PaymentRule::OneOff { amount } => Ok(Some(*amount)),
            PaymentRule::Monthly { .. } => Ok(None),
            PaymentRule::Instalments { first_payment, monthly_payment, months } => {
                Ok(Some(first_payment.checked_add(monthly_payment.checked_mul(i64::from(*months))?)?))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Threshold {
    pub name: String,
    pub amount: Money,
}

/// Everything a version of a support type says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportTypeContent {
    pub name_uk: String,
    pub name_en: String,
    pub category: SupportCategory,
    pub legal_basis: String,
    pub payment_rule: Option<PaymentRule>,
    pub decisive_date: DecisiveDate,
    pub thresholds: Vec<Threshold>,
    pub eligibility_notes: String,
}

/// The days a version applies: from `valid_from` to `valid_to`, both
/// inclusive; no `valid_to` means until something ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub valid_from: NaiveDate,
    pub valid_to: Option<NaiveDate>,
}

impl Validity {
    pub fn contains(&self, date: NaiveDate) -> bool {
        date >= self.valid_from && self.valid_to.is_none_or(|last| date <= last)
    }
}

/// Who recorded a version, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub by: String,
    pub by_organization: Option<String>,
    pub at: DateTime<Utc>,
}

/// Who is making a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub subject: String,
    pub organization: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportTypeVersion {
    pub code: String,
    pub version: u32,
    pub validity: Validity,
    pub content: SupportTypeContent,
    pub change_reason: String,
    pub recorded: Recorded,
}

/// The reference books.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferenceBook {
    TerritorialUnits,
    DocumentTypes,
    OrganizationTypes,
    Banks,
    RelationshipKinds,
}

impl ReferenceBook {
    pub const ALL: [ReferenceBook; 5] = [
        ReferenceBook::TerritorialUnits,
        ReferenceBook::DocumentTypes,
        ReferenceBook::OrganizationTypes,
        ReferenceBook::Banks,
        ReferenceBook::RelationshipKinds,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReferenceBook::TerritorialUnits => "territorial_units",
            ReferenceBook::DocumentTypes => "document_types",
            ReferenceBook::OrganizationTypes => "organization_types",
            ReferenceBook::Banks => "banks",
            ReferenceBook::RelationshipKinds => "relationship_kinds",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|book| book.as_str() == text)
    }

    /// Checks a code's form for this book and returns it in canonical form.
    pub fn canonical_code(self, code: &str) -> Result<String, String> {
        match self {
            ReferenceBook::TerritorialUnits => code
                .parse::<Katottg>()
                .map(|code| code.to_string())
                .map_err(|error| format!("is not a KATOTTG code (UA + 17 digits): {error}")),
            ReferenceBook::Banks => {
                if code.len() == 6 && code.bytes().all(|byte| byte.is_ascii_digit()) {
                    Ok(code.to_owned())
                } else {
                    Err("must be the bank's 6-digit MFO code".to_owned())
                }
            }
            ReferenceBook::DocumentTypes | ReferenceBook::OrganizationTypes | ReferenceBook::RelationshipKinds => {
                if is_upper_snake_code(code) {
                    Ok(code.to_owned())
                } else {
                    Err("must be 1 to 64 upper-case letters, digits or `_`, starting with a letter".to_owned())
                }
            }
        }
    }
}

/// Levels of the territorial codifier, top down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TerritorialLevel {
    Oblast,
    Raion,
    Hromada,
    Settlement,
    CityDistrict,
}

impl TerritorialLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            TerritorialLevel::Oblast => "oblast",
            TerritorialLevel::Raion => "raion",
            TerritorialLevel::Hromada => "hromada",
            TerritorialLevel::Settlement => "settlement",
            TerritorialLevel::CityDistrict => "city_district",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Oblast, Self::Raion, Self::Hromada, Self::Settlement, Self::CityDistrict]
            .into_iter()
            .find(|level| level.as_str() == text)
    }

    /// The codifier category letters a unit of this level may have.
    pub fn categories(self) -> &'static [char] {
        match self {
            // Oblasts and the ARC (O); Kyiv and Sevastopol (K).
            TerritorialLevel::Oblast => &['O', 'K'],
            TerritorialLevel::Raion => &['P'],
            TerritorialLevel::Hromada => &['H'],
            // City, urban-type settlement (older editions), selyshche, village.
            TerritorialLevel::Settlement => &['M', 'T', 'X', 'C'],
            TerritorialLevel::CityDistrict => &['B'],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerritorialDetails {
    pub level: TerritorialLevel,
    pub category: char,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceEntryContent {
    pub name_uk: String,
    pub name_en: String,
    pub parent_code: Option<String>,
    pub territorial: Option<TerritorialDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceEntry {
    pub book: ReferenceBook,
    pub code: String,
    pub version: u32,
    pub validity: Validity,
    pub content: ReferenceEntryContent,
    pub change_reason: String,
    pub recorded: Recorded,
}

/// A name as search compares it: lower case, the apostrophe variants
/// (’ ' ʼ ‘ ` ′) as one, hyphens and runs of spaces as one space.
pub fn normalize_for_search(text: &str) -> String {
    let mut normalized = String::with_capacity(text.len());
    let mut pending_space = false;
    for character in text.chars().flat_map(char::to_lowercase) {
        let character = match character {
            '\u{2019}' | '\u{02BC}' | '\u{2018}' | '`' | '\u{2032}' | '\u{00B4}' => '\'',
            '-' | '\u{2013}' | '\u{2014}' => ' ',
            other => other,
        };
        if character.is_whitespace() {
            pending_space = !normalized.is_empty();
            continue;
        }
        if pending_space {
            normalized.push(' ');
            pending_space = false;
        }
        normalized.push(character);
    }
    normalized
}

/// The bounds of the latest version of an entry, as the versioning rules need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatestVersion {
    pub version: u32,
    pub validity: Validity,
}

/// Why a new version or a retirement cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersioningRejection {
    /// The client expected another latest version (concurrent change).
    Stale { expected: u32, actual: u32 },
    /// The new period does not start after the latest version's start.
    NotAfterLatest { latest: u32, latest_from: NaiveDate },
    /// The new period overlaps the latest version, which already ends.
    Overlaps { latest: u32, latest_to: NaiveDate },
    /// Retiring something that already ends.
    AlreadyEnds { latest: u32, latest_to: NaiveDate },
    /// Retiring something that does not exist.
    Unknown,
}

impl std::fmt::Display for VersioningRejection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersioningRejection::Stale { expected, actual } => {
                write!(formatter, "the latest version is {actual}, not {expected}: re-read and retry")
            }
            VersioningRejection::NotAfterLatest { latest, latest_from } => write!(
                formatter,
                "versions are added in time order: a new version must start after {latest_from}, when version {latest} starts"
            ),
            VersioningRejection::Overlaps { latest, latest_to } => {
                write!(formatter, "the validity period overlaps version {latest}, which applies until {latest_to}")
            }
            VersioningRejection::AlreadyEnds { latest, latest_to } => {
                write!(formatter, "already ends: version {latest} is the last and applies until {latest_to}")
            }
            VersioningRejection::Unknown => write!(formatter, "no such entry"),
        }
    }
}

/// What adding a version does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionPlan {
    pub new_version: u32,
    /// The open-ended latest version to end, and its new last day.
    pub end_date: Option<(u32, NaiveDate)>,
}

/// Decides how a version with `validity` is added after `latest`. Versions
/// are appended in time order; an open-ended latest version is end-dated on
/// the day before the new one starts; a latest version that already ends
/// must end before the new one starts.
pub fn plan_new_version(
    latest: Option<LatestVersion>,
    expected_latest: u32,
    validity: Validity,
) -> Result<VersionPlan, VersioningRejection> {
    let Some(latest) = latest else {
        if expected_latest != 0 {
            return Err(VersioningRejection::Stale { expected: expected_latest, actual: 0 });
        }
        return Ok(VersionPlan { new_version: 1, end_date: None });
    };
    if expected_latest != latest.version {
        return Err(VersioningRejection::Stale { expected: expected_latest, actual: latest.version });
    }
    if validity.valid_from <= latest.validity.valid_from {
        return Err(VersioningRejection::NotAfterLatest {
            latest: latest.version,
            latest_from: latest.validity.valid_from,
        });
    }
    let end_date = match latest.validity.valid_to {
        None => validity.valid_from.pred_opt().map(|day_before| (latest.version, day_before)),
        Some(latest_to) if latest_to >= validity.valid_from => {
            return Err(VersioningRejection::Overlaps { latest: latest.version, latest_to });
        }
        Some(_) => None,
    };
    Ok(VersionPlan { new_version: latest.version + 1, end_date })
}

/// Decides how an entry stops applying from `effective_from` on: its
/// open-ended latest version is end-dated on the day before.
pub fn plan_retirement(
    latest: Option<LatestVersion>,
    effective_from: NaiveDate,
) -> Result<(u32, NaiveDate), VersioningRejection> {
    let latest = latest.ok_or(VersioningRejection::Unknown)?;
    if let Some(latest_to) = latest.validity.valid_to {
        return Err(VersioningRejection::AlreadyEnds { latest: latest.version, latest_to });
    }
    if effective_from <= latest.validity.valid_from {
        return Err(VersioningRejection::NotAfterLatest {
            latest: latest.version,
            latest_from: latest.validity.valid_from,
        });
    }
    let last_day = effective_from.pred_opt().ok_or(VersioningRejection::Unknown)?;
    Ok((latest.version, last_day))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap_or(NaiveDate::MIN)
    }

    fn open_from(version: u32, from: &str) -> Option<LatestVersion> {
        Some(LatestVersion { version, validity: Validity { valid_from: date(from), valid_to: None } })
    }

    #[test]
    fn a_new_version_end_dates_the_open_one_on_the_day_before() {
        let plan = plan_new_version(
            open_from(1, "2014-07-01"),
            1,
            Validity { valid_from: date("2026-01-01"), valid_to: None },
        );
        assert_eq!(plan, Ok(VersionPlan { new_version: 2, end_date: Some((1, date("2025-12-31"))) }));
    }

    #[test]
    fn versions_are_appended_in_time_order_only() {
        let plan = plan_new_version(
            open_from(1, "2020-01-01"),
            1,
            Validity { valid_from: date("2020-01-01"), valid_to: None },
        );
        assert_eq!(plan, Err(VersioningRejection::NotAfterLatest { latest: 1, latest_from: date("2020-01-01") }));
    }

    #[test]
    fn a_closed_latest_version_must_end_before_the_new_one_starts() {
        let latest = Some(LatestVersion {
            version: 2,
            validity: Validity { valid_from: date("2020-01-01"), valid_to: Some(date("2020-12-31")) },
        });
        let overlapping = plan_new_version(latest, 2, Validity { valid_from: date("2020-06-01"), valid_to: None });
        assert_eq!(overlapping, Err(VersioningRejection::Overlaps { latest: 2, latest_to: date("2020-12-31") }));
        let after_a_gap = plan_new_version(latest, 2, Validity { valid_from: date("2021-03-01"), valid_to: None });
        assert_eq!(after_a_gap, Ok(VersionPlan { new_version: 3, end_date: None }));
    }

    #[test]
    fn a_stale_expected_version_is_refused() {
        let plan = plan_new_version(
            open_from(3, "2020-01-01"),
            2,
            Validity { valid_from: date("2021-01-01"), valid_to: None },
        );
        assert_eq!(plan, Err(VersioningRejection::Stale { expected: 2, actual: 3 }));
        let new_code = plan_new_version(None, 1, Validity { valid_from: date("2021-01-01"), valid_to: None });
        assert_eq!(new_code, Err(VersioningRejection::Stale { expected: 1, actual: 0 }));
    }

    #[test]
    fn retirement_end_dates_the_open_version() {
        assert_eq!(plan_retirement(open_from(2, "2024-01-01"), date("2025-01-01")), Ok((2, date("2024-12-31"))));
        assert_eq!(
            plan_retirement(open_from(2, "2024-01-01"), date("2024-01-01")),
            Err(VersioningRejection::NotAfterLatest { latest: 2, latest_from: date("2024-01-01") })
        );
        assert_eq!(plan_retirement(None, date("2024-01-01")), Err(VersioningRejection::Unknown));
    }

    #[test]
    fn search_normalisation_treats_apostrophes_case_and_spacing_alike() {
        let forms = ["Кам’янка", "кам'янка", "КАМʼЯНКА", "Кам‘янка", "Кам`янка"];
        for form in forms {
            assert_eq!(normalize_for_search(form), "кам'янка", "{form}");
        }
        assert_eq!(normalize_for_search("  Біла   Церква "), "біла церква");
        assert_eq!(normalize_for_search("Кам’янець-Подільський"), "кам'янець подільський");
    }

    #[test]
    fn the_birth_assistance_schedule_totals_41_280() {
        let rule = PaymentRule::Instalments {
            first_payment: Money::from_kopiykas(1_032_000),
            monthly_payment: Money::from_kopiykas(86_000),
            months: 36,
        };
        assert_eq!(rule.total(), Ok(Some(Money::from_kopiykas(4_128_000))));
    }

    #[test]
    fn codes_are_checked_per_book() {
        assert!(ReferenceBook::Banks.canonical_code("305299").is_ok());
        assert!(ReferenceBook::Banks.canonical_code("30529").is_err());
        assert_eq!(
            ReferenceBook::TerritorialUnits.canonical_code("ua71020010000037786"),
            Ok("UA71020010000037786".to_owned())
        );
        assert!(ReferenceBook::DocumentTypes.canonical_code("id-card").is_err());
        assert!(SupportTypeCode::parse("BIRTH_ASSISTANCE").is_ok());
        assert!(SupportTypeCode::parse("birth").is_err());
    }
}
