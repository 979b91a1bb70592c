//! What the registry needs of the classifier, replicated from its events
//! (`classifier.>`): the territorial units (KATOTTG codes and their
//! hierarchy) and the support type versions with their validity.
//!
//! Validation ("a KATOTTG known to the classifier", "a support type version
//! the classifier has") and territorial access checks (is this person's
//! territory inside the operator's) read the in-memory copy; the tables keep
//! it across restarts and the durable consumer keeps it current. The
//! registry does not call the classifier.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::NaiveDate;
use esocial_events::{EventHandler, HandleError, ReceivedEvent};
use esocial_proto::classifier::v1 as classifier;
use prost::Message as _;
use sqlx::{PgConnection, PgPool};
use tokio::sync::RwLock;

/// The consumer's durable name.
pub const CONSUMER: &str = "registry-classifier";
/// Its subject filter (without the deployment prefix).
pub const SUBJECTS: &str = "classifier.>";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub parent: Option<String>,
    pub valid_from: NaiveDate,
    pub valid_to: Option<NaiveDate>,
}

/// The known units, by code.
#[derive(Debug, Clone, Default)]
pub struct Territories {
    units: Arc<RwLock<HashMap<String, Unit>>>,
}

impl Territories {
    /// Loads what the table holds.
    pub async fn load(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let rows: Vec<(String, Option<String>, NaiveDate, Option<NaiveDate>)> =
            sqlx::query_as("SELECT code, parent_code, valid_from, valid_to FROM territories").fetch_all(pool).await?;
        let units = rows
            .into_iter()
            .map(|(code, parent, valid_from, valid_to)| (code, Unit { parent, valid_from, valid_to }))
            .collect();
        Ok(Self { units: Arc::new(RwLock::new(units)) })
    }

    /// Whether a code is a unit in force on `date`.
    pub async fn known_on(&self, code: &str, date: NaiveDate) -> bool {
        self.units
            .read()
            .await
            .get(code)
            .is_some_and(|unit| unit.valid_from <= date && unit.valid_to.is_none_or(|last| date <= last))
    }

    /// Whether `code` is `scope` or lies inside it (any ancestor is `scope`).
    pub async fn within(&self, code: &str, scope: &str) -> bool {
        within(&*self.units.read().await, code, scope)
    }

    /// Every code that is `scope` or inside it.
    pub async fn units_within(&self, scope: &str) -> Vec<String> {
        let units = self.units.read().await;
        units.keys().filter(|code| within(&units, code, scope)).cloned().collect()
    }

    /// Units in force on `date` that contain no other unit (settlements,
    /// city districts), sorted.
    pub async fn leaves(&self, date: NaiveDate) -> Vec<String> {
        let units = self.units.read().await;
        let parents: std::collections::HashSet<&str> =
            units.values().filter_map(|unit| unit.parent.as_deref()).collect();
        let mut leaves: Vec<String> = units
            .iter()
            .filter(|(code, unit)| {
                !parents.contains(code.as_str())
                    && unit.valid_from <= date
                    && unit.valid_to.is_none_or(|last| date <= last)
            })
            .map(|(code, _)| code.clone())
            .collect();
        leaves.sort();
        leaves
    }

    pub async fn is_empty(&self) -> bool {
        self.units.read().await.is_empty()
    }

    pub async fn len(&self) -> usize {
        self.units.read().await.len()
    }

    /// A new version of a unit: the unit exists from its first version's
    /// start to the newest version's end.
    async fn remember(&self, code: String, mut unit: Unit) {
        let mut units = self.units.write().await;
        if let Some(known) = units.get(&code) {
            unit.valid_from = unit.valid_from.min(known.valid_from);
        }
        units.insert(code, unit);
    }

    async fn end(&self, code: &str, valid_to: Option<NaiveDate>) {
        if let Some(unit) = self.units.write().await.get_mut(code) {
            unit.valid_to = valid_to;
        }
    }
}

/// A first day and, if there is one, a last day.
pub type Validity = (NaiveDate, Option<NaiveDate>);

/// The support type versions the classifier has, by code and version: their
/// validity periods.
#[derive(Debug, Clone, Default)]
pub struct SupportTypes {
    versions: Arc<RwLock<HashMap<(String, u32), Validity>>>,
}

impl SupportTypes {
    pub async fn load(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let rows: Vec<(String, i32, NaiveDate, Option<NaiveDate>)> =
            sqlx::query_as("SELECT code, version, valid_from, valid_to FROM support_type_versions")
                .fetch_all(pool)
                .await?;
        let versions = rows
            .into_iter()
            .filter_map(|(code, version, from, to)| Some(((code, u32::try_from(version).ok()?), (from, to))))
            .collect();
        Ok(Self { versions: Arc::new(RwLock::new(versions)) })
    }

    /// The validity of a version, if the classifier has it.
    pub async fn validity(&self, code: &str, version: u32) -> Option<(NaiveDate, Option<NaiveDate>)> {
        self.versions.read().await.get(&(code.to_owned(), version)).copied()
    }

    async fn set(&self, code: &str, version: u32, validity: (NaiveDate, Option<NaiveDate>)) {
        self.versions.write().await.insert((code.to_owned(), version), validity);
    }

    async fn end(&self, code: &str, version: u32, valid_to: Option<NaiveDate>) {
        if let Some(validity) = self.versions.write().await.get_mut(&(code.to_owned(), version)) {
            validity.1 = valid_to;
        }
    }
}

fn within(units: &HashMap<String, Unit>, code: &str, scope: &str) -> bool {
    let mut current = Some(code);
    // The codifier has at most five levels; the bound guards bad data.
    for _ in 0..8 {
        match current {
            Some(here) if here == scope => return true,
            Some(here) => current = units.get(here).and_then(|unit| unit.parent.as_deref()),
            None => return false,
        }
    }
    false
}

fn date(date: Option<&esocial_proto::common::v1::Date>) -> Option<NaiveDate> {
    let date = date?;
    NaiveDate::from_ymd_opt(date.year, u32::try_from(date.month).ok()?, u32::try_from(date.day).ok()?)
}

/// Applies the classifier's events to the replica.
#[derive(Debug, Clone)]
pub struct ClassifierEvents {
    pub territories: Territories,
    pub support_types: SupportTypes,
}

async fn upsert_unit(
    connection: &mut PgConnection,
    code: &str,
    unit: &Unit,
    level: &str,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO territories (code, parent_code, level, name_uk, valid_from, valid_to)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (code) DO UPDATE SET parent_code = $2, level = $3, name_uk = $4,
                                          valid_from = LEAST(territories.valid_from, $5), valid_to = $6, updated_at = now()",
    )
    .bind(code)
    .bind(&unit.parent)
    .bind(level)
    .bind(name)
    .bind(unit.valid_from)
    .bind(unit.valid_to)
    .execute(connection)
    .await?;
    Ok(())
}

async fn end_support_type_version(
    connection: &mut PgConnection,
    code: &str,
    version: u32,
    valid_to: Option<NaiveDate>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE support_type_versions SET valid_to = $3 WHERE code = $1 AND version = $2")
        .bind(code)
        .bind(i64::from(version))
        .bind(valid_to)
        .execute(connection)
        .await?;
    Ok(())
}

fn reject(error: impl Into<anyhow::Error>) -> HandleError {
    HandleError::Reject(error.into())
}

impl ClassifierEvents {
    async fn reference_entry_created(&self, connection: &mut PgConnection, payload: &[u8]) -> Result<(), HandleError> {
        let payload = classifier::ReferenceEntryVersionCreated::decode(payload).map_err(reject)?;
        let territorial = i32::from(classifier::ReferenceBook::TerritorialUnits);
        let Some(entry) = payload.entry.filter(|entry| entry.book == territorial) else { return Ok(()) };
        let content = entry.content.unwrap_or_default();
        let validity = entry.validity.unwrap_or_default();
        let Some(valid_from) = date(validity.valid_from.as_ref()) else {
            return Err(reject(anyhow::anyhow!("territorial unit {} has no valid_from", entry.code)));
        };
        let level = match content.details {
            Some(classifier::reference_entry_content::Details::TerritorialUnit(details)) => {
                classifier::TerritorialLevel::try_from(details.level)
                    .map(|level| level.as_str_name().to_owned())
                    .unwrap_or_default()
            }
            None => String::new(),
        };
        let unit = Unit {
            parent: Some(content.parent_code).filter(|parent| !parent.is_empty()),
            valid_from,
            valid_to: date(validity.valid_to.as_ref()),
        };
        upsert_unit(connection, &entry.code, &unit, &level, &content.name_uk).await?;
        self.territories.remember(entry.code, unit).await;
        Ok(())
    }

    async fn reference_entry_retired(&self, connection: &mut PgConnection, payload: &[u8]) -> Result<(), HandleError> {
        let payload = classifier::ReferenceEntryRetired::decode(payload).map_err(reject)?;
        if payload.book != i32::from(classifier::ReferenceBook::TerritorialUnits) {
            return Ok(());
        }
        let valid_to = date(payload.valid_to.as_ref());
        sqlx::query("UPDATE territories SET valid_to = $2, updated_at = now() WHERE code = $1")
            .bind(&payload.code)
            .bind(valid_to)
            .execute(connection)
            .await?;
        self.territories.end(&payload.code, valid_to).await;
        Ok(())
    }

    async fn support_type_created(&self, connection: &mut PgConnection, payload: &[u8]) -> Result<(), HandleError> {
        let payload = classifier::SupportTypeVersionCreated::decode(payload).map_err(reject)?;
        let Some(version) = payload.version else {
            return Err(reject(anyhow::anyhow!("a support type event without a version")));
        };
        let validity = version.validity.unwrap_or_default();
        let Some(valid_from) = date(validity.valid_from.as_ref()) else {
            return Err(reject(anyhow::anyhow!(
                "support type {} version {} has no valid_from",
                version.code,
                version.version
            )));
        };
        let valid_to = date(validity.valid_to.as_ref());
        sqlx::query(
            "INSERT INTO support_type_versions (code, version, valid_from, valid_to) VALUES ($1, $2, $3, $4)
             ON CONFLICT (code, version) DO UPDATE SET valid_from = $3, valid_to = $4",
        )
        .bind(&version.code)
        .bind(i64::from(version.version))
        .bind(valid_from)
        .bind(valid_to)
        .execute(&mut *connection)
        .await?;
        if let Some(ended) = payload.end_dated_version {
            let ended_to = date(payload.end_dated_valid_to.as_ref());
            end_support_type_version(connection, &version.code, ended, ended_to).await?;
            self.support_types.end(&version.code, ended, ended_to).await;
        }
        self.support_types.set(&version.code, version.version, (valid_from, valid_to)).await;
        Ok(())
    }

    async fn support_type_retired(&self, connection: &mut PgConnection, payload: &[u8]) -> Result<(), HandleError> {
        let payload = classifier::SupportTypeRetired::decode(payload).map_err(reject)?;
        let valid_to = date(payload.valid_to.as_ref());
        end_support_type_version(connection, &payload.code, payload.end_dated_version, valid_to).await?;
        self.support_types.end(&payload.code, payload.end_dated_version, valid_to).await;
        Ok(())
    }
}

impl EventHandler for ClassifierEvents {
    fn handle<'a>(
        &'a self,
        transaction: &'a mut PgConnection,
        event: &'a ReceivedEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), HandleError>> + Send + 'a>> {
        Box::pin(async move {
            let payload = event.payload.as_slice();
            let kind = event.event_type.as_str();
            if kind.ends_with(".reference_entry.version_created.v1") {
                self.reference_entry_created(transaction, payload).await
            } else if kind.ends_with(".reference_entry.retired.v1") {
                self.reference_entry_retired(transaction, payload).await
            } else if kind.ends_with(".support_type.version_created.v1") {
                self.support_type_created(transaction, payload).await
            } else if kind.ends_with(".support_type.retired.v1") {
                self.support_type_retired(transaction, payload).await
            } else {
                Ok(())
            }
        })
    }
}
