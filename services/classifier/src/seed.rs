//! Loads the seed data in `seed/` through the same validation and service
//! functions as the admin gRPC methods. Idempotent: what is already there is
//! skipped.

use esocial_kit::Violations;
use esocial_proto::classifier::v1 as pb;
use esocial_proto::common::v1 as common;
use serde::Deserialize;
use sqlx::PgPool;

use crate::convert::{
    book_code, category_to_proto, date_to_proto, decisive_date_to_proto, level_to_proto, money_to_proto,
    payment_rule_to_proto, reference_content_from_proto, support_content_from_proto, validity_from_proto,
};
use crate::domain::{Actor, DecisiveDate, PaymentRule, ReferenceBook, SupportCategory, TerritorialLevel, Threshold};
use crate::service::{self, Error};
use crate::store::Store;

const SUPPORT_TYPES: &str = include_str!("../seed/support_types.json");
const REFERENCE_BOOKS: &str = include_str!("../seed/reference_books.json");
const TERRITORIAL_UNITS: &str = include_str!("../seed/territorial_units.csv");
/// The codifier edition the territorial sample comes from.
const TERRITORIAL_EDITION: &str = "2025-05-16";

#[derive(Deserialize)]
struct SeedSupportType {
    code: String,
    name_uk: String,
    name_en: String,
    category: SupportCategory,
    decisive_date: DecisiveDate,
    versions: Vec<SeedSupportVersion>,
}

#[derive(Deserialize)]
struct SeedSupportVersion {
    valid_from: chrono::NaiveDate,
    legal_basis: String,
    payment_rule: Option<PaymentRule>,
    thresholds: Vec<Threshold>,
    eligibility_notes: String,
    change_reason: String,
}

#[derive(Deserialize)]
struct SeedBooks {
    valid_from: chrono::NaiveDate,
    document_types: Vec<SeedEntry>,
    organization_types: Vec<SeedEntry>,
    banks: Vec<SeedEntry>,
    relationship_kinds: Vec<SeedEntry>,
}

#[derive(Deserialize)]
struct SeedEntry {
    code: String,
    name_uk: String,
    name_en: String,
}

/// What a seed run added.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub support_type_versions: usize,
    pub reference_entries: usize,
}

fn money(amount: esocial_identifiers::Money) -> Option<common::Money> {
    Some(money_to_proto(amount))
}

fn invalid(what: &str, violations: Violations) -> anyhow::Error {
    match violations.finish() {
        Ok(()) => anyhow::anyhow!("seed {what} is incomplete"),
        Err(error) => anyhow::anyhow!("seed {what} is invalid: {:?}", error),
    }
}

fn open_from(date: chrono::NaiveDate) -> common::ValidityPeriod {
    common::ValidityPeriod { valid_from: Some(date_to_proto(date)), valid_to: None }
}

/// One reference entry as the admin method would receive it.
struct EntryInput {
    book: ReferenceBook,
    code: String,
    valid_from: chrono::NaiveDate,
    content: pb::ReferenceEntryContent,
}

fn reference_inputs() -> anyhow::Result<Vec<EntryInput>> {
    let books: SeedBooks = serde_json::from_str(REFERENCE_BOOKS)?;
    let mut inputs = Vec::new();
    let plain = [
        (ReferenceBook::DocumentTypes, &books.document_types),
        (ReferenceBook::OrganizationTypes, &books.organization_types),
        (ReferenceBook::Banks, &books.banks),
        (ReferenceBook::RelationshipKinds, &books.relationship_kinds),
    ];
    for (book, entries) in plain {
        for entry in entries {
            inputs.push(EntryInput {
                book,
                code: entry.code.clone(),
                valid_from: books.valid_from,
                content: pb::ReferenceEntryContent {
                    name_uk: entry.name_uk.clone(),
                    name_en: entry.name_en.clone(),
                    parent_code: String::new(),
                    details: None,
                },
            });
        }
    }
    let edition: chrono::NaiveDate = TERRITORIAL_EDITION.parse()?;
    let mut units = Vec::new();
    for (line_number, line) in TERRITORIAL_UNITS.lines().enumerate().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let [code, parent, level, category, name_uk, name_en] = fields.as_slice() else {
            anyhow::bail!("territorial_units.csv line {}: expected 6 fields", line_number + 1);
        };
        let depth = TerritorialLevel::parse(level)
            .ok_or_else(|| anyhow::anyhow!("territorial_units.csv line {}: unknown level {level}", line_number + 1))?;
        units.push((
            depth,
            EntryInput {
                book: ReferenceBook::TerritorialUnits,
                code: (*code).to_owned(),
                valid_from: edition,
                content: pb::ReferenceEntryContent {
                    name_uk: (*name_uk).to_owned(),
                    name_en: (*name_en).to_owned(),
                    parent_code: (*parent).to_owned(),
                    details: Some(pb::reference_entry_content::Details::TerritorialUnit(pb::TerritorialUnitDetails {
                        level: level_to_proto(depth).into(),
                        category: (*category).to_owned(),
                    })),
                },
            },
        ));
    }
    // Parents before children.
    units.sort_by_key(|(depth, _)| *depth);
    inputs.extend(units.into_iter().map(|(_, input)| input));
    Ok(inputs)
}

/// The seed's settlements and city districts (the units people live in),
/// for generating synthetic persons without a database.
pub fn settlement_codes() -> anyhow::Result<Vec<esocial_identifiers::Katottg>> {
    TERRITORIAL_UNITS
        .lines()
        .skip(1)
        .filter(|line| matches!(line.split(',').nth(2), Some("settlement" | "city_district")))
        .map(|line| line.split(',').next().unwrap_or_default().parse().map_err(anyhow::Error::from))
        .collect()
}

/// Loads whatever of the seed data is missing.
pub async fn seed(pool: &PgPool) -> anyhow::Result<SeedReport> {
    let actor = Actor { subject: "esocial-seed".to_owned(), organization: None };
    let mut report = SeedReport::default();

    let support_types: Vec<SeedSupportType> = serde_json::from_str(SUPPORT_TYPES)?;
    for support_type in &support_types {
        let mut transaction = pool.begin().await?;
        let latest = Store::lock_support_type(&mut transaction, &support_type.code).await.map_err(Error::from)?;
        let present = latest.map_or(0, |latest| latest.version);
        for (index, version) in support_type.versions.iter().enumerate() {
            let number = u32::try_from(index + 1)?;
            if number <= present {
                continue;
            }
            let mut violations = Violations::new();
            let content = pb::SupportTypeContent {
                name_uk: support_type.name_uk.clone(),
                name_en: support_type.name_en.clone(),
                category: category_to_proto(support_type.category).into(),
                legal_basis: version.legal_basis.clone(),
                payment_rule: version.payment_rule.as_ref().map(payment_rule_to_proto),
                decisive_date: decisive_date_to_proto(support_type.decisive_date).into(),
                thresholds: version
                    .thresholds
                    .iter()
                    .map(|threshold| pb::Threshold { name: threshold.name.clone(), amount: money(threshold.amount) })
                    .collect(),
                eligibility_notes: version.eligibility_notes.clone(),
            };
            let validity = validity_from_proto(&mut violations, "validity", Some(&open_from(version.valid_from)));
            let content = support_content_from_proto(&mut violations, Some(&content));
            let (Some(validity), Some(content), true) = (validity, content, violations.is_empty()) else {
                return Err(invalid(&support_type.code, violations));
            };
            service::create_support_type_version(
                &mut transaction,
                &actor,
                &support_type.code,
                validity,
                &content,
                &version.change_reason,
                number - 1,
            )
            .await
            .map_err(|error| anyhow::anyhow!("seed {} version {number}: {error}", support_type.code))?;
            report.support_type_versions += 1;
        }
        transaction.commit().await?;
    }

    let mut transaction = pool.begin().await?;
    for input in reference_inputs()? {
        let mut violations = Violations::new();
        let code = book_code(&mut violations, "code", Some(input.book), &input.code);
        let validity = validity_from_proto(&mut violations, "validity", Some(&open_from(input.valid_from)));
        let content = reference_content_from_proto(&mut violations, Some(input.book), Some(&input.content));
        let (Some(code), Some(validity), Some(content), true) = (code, validity, content, violations.is_empty()) else {
            return Err(invalid(&input.code, violations));
        };
        if Store::lock_reference_entry(&mut transaction, input.book, &code).await.map_err(Error::from)?.is_some() {
            continue;
        }
        service::create_reference_entry_version(
            &mut transaction,
            &actor,
            input.book,
            &code,
            validity,
            &content,
            "Seed data",
            0,
        )
        .await
        .map_err(|error| anyhow::anyhow!("seed {} {code}: {error}", input.book.as_str()))?;
        report.reference_entries += 1;
    }
    transaction.commit().await?;
    Ok(report)
}
