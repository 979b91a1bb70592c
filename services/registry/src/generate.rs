//! Synthetic persons for the sandbox and benchmarks: households from
//! `esocial-people` (names, RNOKPP and UNZR consistent with the birth dates,
//! ID cards, addresses in territorial units the classifier published),
//! written as import rows and loaded through the same bulk import an
//! operator uses, then linked as families.

use std::fmt::Write as _;

use chrono::NaiveDate;
use esocial_auth::{Caller, Role};
use esocial_identifiers::{Katottg, Sex};
use esocial_people::{Generator, Household, Relation};
use uuid::Uuid;

use crate::import::{Format, Import};
use crate::service::{Error, Registry};

/// The CSV header of generated rows (columns of the bulk import).
pub const CSV_HEADER: &str = "rnokpp,unzr,passport_number,last_name,first_name,patronymic,birth_date,sex,citizenship,registered_territory,registered_address,phone\n";

/// Appends a person as a CSV row in [`CSV_HEADER`]'s columns.
pub fn push_csv_row(output: &mut String, person: &esocial_people::Person) {
    let quoted = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
    let _ = writeln!(
        output,
        "{},{},{},{},{},{},{},{},UA,{},{},{}",
        person.rnokpp,
        person.unzr,
        person.passport.as_ref().map(ToString::to_string).unwrap_or_default(),
        quoted(&person.last_name),
        quoted(&person.first_name),
        quoted(&person.patronymic),
        person.birth_date,
        if person.sex == Sex::Male { "male" } else { "female" },
        person.territory,
        quoted(&person.address),
        person.phone.as_deref().unwrap_or_default(),
    );
}

/// The caller generated data is recorded as.
pub fn generator_caller() -> Caller {
    Caller {
        subject: "esocial-registry-generate".to_owned(),
        roles: vec![Role::Service],
        organization_edrpou: None,
        territories: Vec::new(),
        authentication_methods: Vec::new(),
        token_id: Uuid::now_v7().to_string(),
        session_id: None,
        actor: None,
        token_accepted_until: u64::MAX,
    }
}

/// What a generation run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generated {
    pub households: u64,
    pub persons: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub family_links: u64,
}

/// Generates `persons` persons (whole households, so a few more) in the
/// territorial units the registry knows and loads them; `progress` hears
/// the persons generated so far.
pub async fn load(
    registry: &Registry,
    persons: u64,
    seed: u64,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Generated> {
    let territories: Vec<Katottg> = registry
        .territories
        .leaves(esocial_kit::time::kyiv_today())
        .await
        .iter()
        .filter_map(|code| code.parse().ok())
        .collect();
    if territories.is_empty() {
        anyhow::bail!(
            "the registry knows no territorial units yet: it receives them from the classifier's events (start the platform, `esocial up`)"
        );
    }
    let mut generator = Generator::new(seed, territories)?;
    let caller = generator_caller();
    let Ok(mut import) =
        Import::start(registry, &caller, Uuid::now_v7(), Format::Csv, "synthetic data (esocial registry generate)")
            .await?
    else {
        anyhow::bail!("a new request id was taken");
    };
    import.feed(CSV_HEADER.as_bytes()).await?;
    let mut links: Vec<(String, String, &'static str, NaiveDate)> = Vec::new();
    let mut generated = Generated::default();
    let mut chunk = String::with_capacity(1 << 20);
    while generated.persons < persons {
        let household = generator.next_household()?;
        generated.households += 1;
        generated.persons += u64::try_from(household.members.len()).unwrap_or_default();
        for person in &household.members {
            push_csv_row(&mut chunk, person);
        }
        collect_links(&household, &mut links);
        if chunk.len() >= 1 << 20 {
            import.feed(chunk.as_bytes()).await?;
            chunk.clear();
            progress(generated.persons);
        }
        if links.len() >= 20_000 {
            generated.family_links += link(registry, &mut links).await?;
        }
    }
    import.feed(chunk.as_bytes()).await?;
    let report = import.finish().await?;
    generated.family_links += link(registry, &mut links).await?;
    progress(generated.persons);
    generated.accepted = report.accepted;
    generated.duplicates = report.duplicates;
    generated.rejected = report.rejected;
    Ok(generated)
}

fn collect_links(household: &Household, links: &mut Vec<(String, String, &'static str, NaiveDate)>) {
    for link in &household.links {
        let person = &household.members[link.person];
        let relative = &household.members[link.relative];
        let relation = match link.relation {
            Relation::Spouse => "spouse",
            Relation::Parent => "parent",
            Relation::Child => "child",
        };
        // A parent link holds from the child's birth; a marriage, for
        // generated data, from the younger spouse's eighteenth birthday.
        let since = match link.relation {
            Relation::Parent => person.birth_date,
            Relation::Child => relative.birth_date,
            Relation::Spouse => {
                let younger = person.birth_date.max(relative.birth_date);
                younger.checked_add_months(chrono::Months::new(18 * 12)).unwrap_or(younger)
            }
        };
        links.push((person.rnokpp.to_string(), relative.rnokpp.to_string(), relation, since));
    }
}

/// Records links between persons found by RNOKPP; returns how many were new.
async fn link(registry: &Registry, links: &mut Vec<(String, String, &'static str, NaiveDate)>) -> Result<u64, Error> {
    if links.is_empty() {
        return Ok(0);
    }
    let pending = std::mem::take(links);
    let persons: Vec<&str> = pending.iter().map(|(person, ..)| person.as_str()).collect();
    let relatives: Vec<&str> = pending.iter().map(|(_, relative, ..)| relative.as_str()).collect();
    let relations: Vec<&str> = pending.iter().map(|(_, _, relation, _)| *relation).collect();
    let since: Vec<NaiveDate> = pending.iter().map(|(.., since)| *since).collect();
    let inserted = sqlx::query(
        "INSERT INTO family_links (person_id, related_person_id, relation, valid_from, recorded_by)
         SELECT p.id, r.id, link.relation, link.since, 'esocial-registry-generate'
         FROM unnest($1::text[], $2::text[], $3::text[], $4::date[]) AS link(person, relative, relation, since)
         JOIN persons p ON p.rnokpp = link.person AND p.status = 'active'
         JOIN persons r ON r.rnokpp = link.relative AND r.status = 'active'
         ON CONFLICT DO NOTHING",
    )
    .bind(&persons)
    .bind(&relatives)
    .bind(&relations)
    .bind(&since)
    .execute(registry.store.pool())
    .await?
    .rows_affected();
    Ok(inserted)
}
