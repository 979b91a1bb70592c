//! Between protobuf messages and the domain, with validation: every problem
//! of a request is collected under its proto field path.

use chrono::{NaiveDate, SecondsFormat};
use esocial_identifiers::Money;
use esocial_kit::Violations;
use esocial_proto::classifier::v1 as pb;
use esocial_proto::common::v1 as common;

use crate::domain::{
    CategoryAmount, DecisiveDate, PaymentRule, Recorded, ReferenceBook, ReferenceEntry, ReferenceEntryContent,
    SupportCategory, SupportTypeContent, SupportTypeVersion, TerritorialDetails, TerritorialLevel, Threshold, Validity,
};

const NAME_LENGTH_MAX: usize = 500;
const TEXT_LENGTH_MAX: usize = 2000;
const AMOUNTS_MAX: usize = 20;

pub use esocial_kit::dates::to_proto as date_to_proto;

/// A required date.
pub fn required_date(violations: &mut Violations, field: &str, date: Option<&common::Date>) -> Option<NaiveDate> {
    esocial_kit::dates::required(violations, field, date)
}

/// An optional "as of" date, today in Kyiv when absent.
pub fn as_of_date(violations: &mut Violations, field: &str, date: Option<&common::Date>) -> NaiveDate {
    esocial_kit::dates::or_default(violations, field, date, esocial_kit::time::kyiv_today())
}

pub fn validity_from_proto(
    violations: &mut Violations,
    field: &str,
    validity: Option<&common::ValidityPeriod>,
) -> Option<Validity> {
    let (valid_from, valid_to) = esocial_kit::dates::period(violations, field, validity)?;
    Some(Validity { valid_from, valid_to })
}

pub fn validity_to_proto(validity: &Validity) -> common::ValidityPeriod {
    common::ValidityPeriod {
        valid_from: Some(date_to_proto(validity.valid_from)),
        valid_to: validity.valid_to.map(date_to_proto),
    }
}

pub fn status(validity: &Validity, reference_date: NaiveDate) -> pb::VersionStatus {
    if validity.contains(reference_date) {
        pb::VersionStatus::InForce
    } else if reference_date < validity.valid_from {
        pb::VersionStatus::NotYetInForce
    } else {
        pb::VersionStatus::Ended
    }
}

/// Trimmed text with a length limit; required text must not be blank.
pub fn text(violations: &mut Violations, field: &str, value: &str, required: bool, length_max: usize) -> String {
    let trimmed = value.trim();
    if required && trimmed.is_empty() {
        violations.add(field, "is required");
    } else if trimmed.chars().count() > length_max {
        violations.add(field, format!("must be at most {length_max} characters"));
    } else if trimmed.chars().any(|character| character.is_control() && character != '\n') {
        violations.add(field, "must not contain control characters");
    }
    trimmed.to_owned()
}

fn positive_money(violations: &mut Violations, field: &str, money: Option<&common::Money>) -> Option<Money> {
    match money {
        None => {
            violations.add(field, "is required");
            None
        }
        Some(money) if money.kopiykas <= 0 => {
            violations.add(format!("{field}.kopiykas"), "must be a positive number of kopiykas");
            None
        }
        Some(money) => Some(Money::from_kopiykas(money.kopiykas)),
    }
}

pub(crate) fn money_to_proto(money: Money) -> common::Money {
    common::Money { kopiykas: money.kopiykas() }
}

fn payment_rule_from_proto(violations: &mut Violations, field: &str, rule: &pb::PaymentRule) -> Option<PaymentRule> {
    let Some(kind) = &rule.kind else {
        violations.add(
            field,
            "must be one of one_off, monthly, instalments (leave payment_rule out for support without money)",
        );
        return None;
    };
    let rule = match kind {
        pb::payment_rule::Kind::OneOff(one_off) => PaymentRule::OneOff {
            amount: positive_money(violations, &format!("{field}.one_off.amount"), one_off.amount.as_ref())?,
        },
        pb::payment_rule::Kind::Monthly(monthly) => {
            if monthly.amounts.is_empty() || monthly.amounts.len() > AMOUNTS_MAX {
                violations.add(format!("{field}.monthly.amounts"), format!("must have 1 to {AMOUNTS_MAX} amounts"));
            }
            let mut amounts = Vec::with_capacity(monthly.amounts.len());
            for (index, amount) in monthly.amounts.iter().enumerate() {
                let path = format!("{field}.monthly.amounts[{index}]");
                let category =
                    text(violations, &format!("{path}.recipient_category"), &amount.recipient_category, true, 100);
                if let Some(money) = positive_money(violations, &format!("{path}.amount"), amount.amount.as_ref()) {
                    amounts.push(CategoryAmount { recipient_category: category, amount: money });
                }
            }
            if monthly.grant_period_months > 120 {
                violations.add(format!("{field}.monthly.grant_period_months"), "must be at most 120");
            }
            PaymentRule::Monthly { amounts, grant_period_months: monthly.grant_period_months }
        }
        pb::payment_rule::Kind::Instalments(schedule) => {
            let first = positive_money(
                violations,
                &format!("{field}.instalments.first_payment"),
                schedule.first_payment.as_ref(),
            );
            let monthly = positive_money(
                violations,
                &format!("{field}.instalments.monthly_payment"),
                schedule.monthly_payment.as_ref(),
            );
            if !(1..=240).contains(&schedule.months) {
                violations.add(format!("{field}.instalments.months"), "must be between 1 and 240");
            }
            PaymentRule::Instalments { first_payment: first?, monthly_payment: monthly?, months: schedule.months }
        }
    };
    if rule.total().is_err() {
        violations.add(field, "amounts add up beyond the representable range");
        return None;
    }
    Some(rule)
}

pub(crate) fn payment_rule_to_proto(rule: &PaymentRule) -> pb::PaymentRule {
    let kind = match rule {
        PaymentRule::OneOff { amount } => {
            pb::payment_rule::Kind::OneOff(pb::OneOffPayment { amount: Some(money_to_proto(*amount)) })
        }
        PaymentRule::Monthly { amounts, grant_period_months } => pb::payment_rule::Kind::Monthly(pb::MonthlyPayment {
            amounts: amounts
                .iter()
                .map(|amount| pb::CategoryAmount {
                    recipient_category: amount.recipient_category.clone(),
                    amount: Some(money_to_proto(amount.amount)),
                })
                .collect(),
            grant_period_months: *grant_period_months,
        }),
        PaymentRule::Instalments { first_payment, monthly_payment, months } => {
            pb::payment_rule::Kind::Instalments(pb::InstalmentSchedule {
                first_payment: Some(money_to_proto(*first_payment)),
                monthly_payment: Some(money_to_proto(*monthly_payment)),
                months: *months,
            })
        }
    };
    pb::PaymentRule { kind: Some(kind), total: rule.total().ok().flatten().map(money_to_proto) }
}

pub fn category_from_proto(category: i32) -> Option<SupportCategory> {
    match pb::SupportCategory::try_from(category).ok()? {
        pb::SupportCategory::Unspecified => None,
        pb::SupportCategory::Payment => Some(SupportCategory::Payment),
        pb::SupportCategory::Benefit => Some(SupportCategory::Benefit),
        pb::SupportCategory::SocialService => Some(SupportCategory::SocialService),
        pb::SupportCategory::HousingSubsidy => Some(SupportCategory::HousingSubsidy),
    }
}

pub(crate) fn category_to_proto(category: SupportCategory) -> pb::SupportCategory {
    match category {
        SupportCategory::Payment => pb::SupportCategory::Payment,
        SupportCategory::Benefit => pb::SupportCategory::Benefit,
        SupportCategory::SocialService => pb::SupportCategory::SocialService,
        SupportCategory::HousingSubsidy => pb::SupportCategory::HousingSubsidy,
    }
}

pub(crate) fn decisive_date_to_proto(date: DecisiveDate) -> pb::DecisiveDate {
    match date {
        DecisiveDate::BirthDate => pb::DecisiveDate::BirthDate,
        DecisiveDate::ApplicationDate => pb::DecisiveDate::ApplicationDate,
        DecisiveDate::PaymentMonth => pb::DecisiveDate::PaymentMonth,
    }
}

pub fn support_content_from_proto(
    violations: &mut Violations,
    content: Option<&pb::SupportTypeContent>,
) -> Option<SupportTypeContent> {
    let Some(content) = content else {
        violations.add("content", "is required");
        return None;
    };
    let name_uk = text(violations, "content.name_uk", &content.name_uk, true, NAME_LENGTH_MAX);
    let name_en = text(violations, "content.name_en", &content.name_en, true, NAME_LENGTH_MAX);
    let category = category_from_proto(content.category);
    if category.is_none() {
        violations.add("content.category", "must be one of payment, benefit, social service, housing subsidy");
    }
    let legal_basis = text(violations, "content.legal_basis", &content.legal_basis, true, TEXT_LENGTH_MAX);
    // Checked whatever the other fields hold, so every violation is reported.
    let payment_rule =
        content.payment_rule.as_ref().map(|rule| payment_rule_from_proto(violations, "content.payment_rule", rule));
    let decisive_date = match pb::DecisiveDate::try_from(content.decisive_date) {
        Ok(pb::DecisiveDate::BirthDate) => Some(DecisiveDate::BirthDate),
        Ok(pb::DecisiveDate::ApplicationDate) => Some(DecisiveDate::ApplicationDate),
        Ok(pb::DecisiveDate::PaymentMonth) => Some(DecisiveDate::PaymentMonth),
        Ok(pb::DecisiveDate::Unspecified) | Err(_) => {
            violations.add("content.decisive_date", "must be birth date, application date or payment month");
            None
        }
    };
    if content.thresholds.len() > AMOUNTS_MAX {
        violations.add("content.thresholds", format!("must have at most {AMOUNTS_MAX} entries"));
    }
    let mut thresholds = Vec::with_capacity(content.thresholds.len());
    for (index, threshold) in content.thresholds.iter().enumerate() {
        let path = format!("content.thresholds[{index}]");
        let name = text(violations, &format!("{path}.name"), &threshold.name, true, 100);
        if let Some(amount) = positive_money(violations, &format!("{path}.amount"), threshold.amount.as_ref()) {
            thresholds.push(Threshold { name, amount });
        }
    }
    let eligibility_notes =
        text(violations, "content.eligibility_notes", &content.eligibility_notes, false, TEXT_LENGTH_MAX);
    let payment_rule = match payment_rule {
        None => None,
        Some(checked) => Some(checked?),
    };
    Some(SupportTypeContent {
        name_uk,
        name_en,
        category: category?,
        legal_basis,
        payment_rule,
        decisive_date: decisive_date?,
        thresholds,
        eligibility_notes,
    })
}

fn actor_to_proto(recorded: &Recorded) -> common::Actor {
    common::Actor {
        subject: recorded.by.clone(),
        organization_edrpou: recorded.by_organization.clone().unwrap_or_default(),
    }
}

pub fn support_version_to_proto(version: &SupportTypeVersion, reference_date: NaiveDate) -> pb::SupportTypeVersion {
    let content = &version.content;
    pb::SupportTypeVersion {
        code: version.code.clone(),
        version: version.version,
        validity: Some(validity_to_proto(&version.validity)),
        content: Some(pb::SupportTypeContent {
            name_uk: content.name_uk.clone(),
            name_en: content.name_en.clone(),
            category: category_to_proto(content.category).into(),
            legal_basis: content.legal_basis.clone(),
            payment_rule: content.payment_rule.as_ref().map(payment_rule_to_proto),
            decisive_date: decisive_date_to_proto(content.decisive_date).into(),
            thresholds: content
                .thresholds
                .iter()
                .map(|threshold| pb::Threshold {
                    name: threshold.name.clone(),
                    amount: Some(money_to_proto(threshold.amount)),
                })
                .collect(),
            eligibility_notes: content.eligibility_notes.clone(),
        }),
        change_reason: version.change_reason.clone(),
        recorded_by: Some(actor_to_proto(&version.recorded)),
        recorded_at: version.recorded.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        status: status(&version.validity, reference_date).into(),
    }
}

pub fn book_from_proto(violations: &mut Violations, field: &str, book: i32) -> Option<ReferenceBook> {
    let parsed = match pb::ReferenceBook::try_from(book) {
        Ok(pb::ReferenceBook::TerritorialUnits) => Some(ReferenceBook::TerritorialUnits),
        Ok(pb::ReferenceBook::DocumentTypes) => Some(ReferenceBook::DocumentTypes),
        Ok(pb::ReferenceBook::OrganizationTypes) => Some(ReferenceBook::OrganizationTypes),
        Ok(pb::ReferenceBook::Banks) => Some(ReferenceBook::Banks),
        Ok(pb::ReferenceBook::RelationshipKinds) => Some(ReferenceBook::RelationshipKinds),
        Ok(pb::ReferenceBook::Unspecified) | Err(_) => None,
    };
    if parsed.is_none() {
        violations.add(field, "must name a reference book");
    }
    parsed
}

pub fn book_to_proto(book: ReferenceBook) -> pb::ReferenceBook {
    match book {
        ReferenceBook::TerritorialUnits => pb::ReferenceBook::TerritorialUnits,
        ReferenceBook::DocumentTypes => pb::ReferenceBook::DocumentTypes,
        ReferenceBook::OrganizationTypes => pb::ReferenceBook::OrganizationTypes,
        ReferenceBook::Banks => pb::ReferenceBook::Banks,
        ReferenceBook::RelationshipKinds => pb::ReferenceBook::RelationshipKinds,
    }
}

/// A code checked against the book's form; `None` (with a violation) when bad.
pub fn book_code(violations: &mut Violations, field: &str, book: Option<ReferenceBook>, code: &str) -> Option<String> {
    let book = book?;
    let checked = book.canonical_code(code.trim());
    violations.check(field, checked)
}

fn level_from_proto(level: i32) -> Option<TerritorialLevel> {
    match pb::TerritorialLevel::try_from(level).ok()? {
        pb::TerritorialLevel::Unspecified => None,
        pb::TerritorialLevel::Oblast => Some(TerritorialLevel::Oblast),
        pb::TerritorialLevel::Raion => Some(TerritorialLevel::Raion),
        pb::TerritorialLevel::Hromada => Some(TerritorialLevel::Hromada),
        pb::TerritorialLevel::Settlement => Some(TerritorialLevel::Settlement),
        pb::TerritorialLevel::CityDistrict => Some(TerritorialLevel::CityDistrict),
    }
}

pub(crate) fn level_to_proto(level: TerritorialLevel) -> pb::TerritorialLevel {
    match level {
        TerritorialLevel::Oblast => pb::TerritorialLevel::Oblast,
        TerritorialLevel::Raion => pb::TerritorialLevel::Raion,
        TerritorialLevel::Hromada => pb::TerritorialLevel::Hromada,
        TerritorialLevel::Settlement => pb::TerritorialLevel::Settlement,
        TerritorialLevel::CityDistrict => pb::TerritorialLevel::CityDistrict,
    }
}

/// The content of a reference entry, with the book-specific rules that need
/// no database (the parent's existence is checked in the transaction).
pub fn reference_content_from_proto(
    violations: &mut Violations,
    book: Option<ReferenceBook>,
    content: Option<&pb::ReferenceEntryContent>,
) -> Option<ReferenceEntryContent> {
    let Some(content) = content else {
        violations.add("content", "is required");
        return None;
    };
    let name_uk = text(violations, "content.name_uk", &content.name_uk, true, NAME_LENGTH_MAX);
    let name_en = text(violations, "content.name_en", &content.name_en, false, NAME_LENGTH_MAX);
    let parent = content.parent_code.trim();
    let book = book?;
    let mut consistent = true;
    let territorial = match (book, &content.details) {
        (ReferenceBook::TerritorialUnits, Some(pb::reference_entry_content::Details::TerritorialUnit(details))) => {
            let level = level_from_proto(details.level);
            if level.is_none() {
                violations.add(
                    "content.territorial_unit.level",
                    "is required: oblast, raion, hromada, settlement or city district",
                );
            }
            let mut letters = details.category.trim().chars();
            let category = match (letters.next(), letters.next()) {
                (Some(letter), None) if level.is_some_and(|level| level.categories().contains(&letter)) => Some(letter),
                _ => {
                    let allowed: String = level
                        .map(|level| level.categories().iter().map(char::to_string).collect::<Vec<_>>().join(", "))
                        .unwrap_or_else(|| "the codifier's letters".to_owned());
                    violations
                        .add("content.territorial_unit.category", format!("must be one of {allowed} for this level"));
                    None
                }
            };
            level.zip(category).map(|(level, category)| TerritorialDetails { level, category })
        }
        (ReferenceBook::TerritorialUnits, None) => {
            violations.add("content.territorial_unit", "is required for territorial units");
            consistent = false;
            None
        }
        (_, Some(_)) => {
            violations.add("content.territorial_unit", "is only for territorial units");
            consistent = false;
            None
        }
        (_, None) => None,
    };
    let parent_code = if parent.is_empty() {
        None
    } else if book == ReferenceBook::TerritorialUnits {
        violations.check("content.parent_code", book.canonical_code(parent))
    } else {
        violations.add("content.parent_code", "is only for territorial units");
        consistent = false;
        None
    };
    if let Some(details) = territorial {
        match (details.level, &parent_code) {
            (TerritorialLevel::Oblast, Some(_)) => {
                violations.add("content.parent_code", "must be empty for a first-level unit");
            }
            (TerritorialLevel::Oblast, None) => {}
            (_, None) if parent.is_empty() => {
                violations.add("content.parent_code", "is required below the first level");
            }
            (_, _) => {}
        }
    }
    if !consistent || (book == ReferenceBook::TerritorialUnits && territorial.is_none()) {
        return None;
    }
    Some(ReferenceEntryContent { name_uk, name_en, parent_code, territorial })
}

pub fn reference_entry_to_proto(entry: &ReferenceEntry, reference_date: NaiveDate) -> pb::ReferenceEntry {
    pb::ReferenceEntry {
        book: book_to_proto(entry.book).into(),
        code: entry.code.clone(),
        version: entry.version,
        validity: Some(validity_to_proto(&entry.validity)),
        content: Some(pb::ReferenceEntryContent {
            name_uk: entry.content.name_uk.clone(),
            name_en: entry.content.name_en.clone(),
            parent_code: entry.content.parent_code.clone().unwrap_or_default(),
            details: entry.content.territorial.map(|details| {
                pb::reference_entry_content::Details::TerritorialUnit(pb::TerritorialUnitDetails {
                    level: level_to_proto(details.level).into(),
                    category: details.category.to_string(),
                })
            }),
        }),
        change_reason: entry.change_reason.clone(),
        recorded_by: Some(actor_to_proto(&entry.recorded)),
        recorded_at: entry.recorded.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        status: status(&entry.validity, reference_date).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_date_is_named() {
        let mut violations = Violations::new();
        let date = common::Date { year: 2025, month: 2, day: 30 };
        assert_eq!(required_date(&mut violations, "as_of", Some(&date)), None);
        assert!(!violations.is_empty());
    }
}
