//! The providers part of the register, in its three sections (social
//! protection bodies; social service providers; individuals who care without
//! running a business), each provider a series of versions; and the support
//! relations: which recipient gets which support type version from which
//! provider, on which decision, for which period.

use chrono::NaiveDate;
use esocial_auth::Caller;
use esocial_identifiers::{Edrpou, Rnokpp};
use esocial_kit::{ApiError, Violations};
use esocial_proto::registry::v1 as pb;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

use crate::access::{actor, require_territory};
use crate::convert::actor_to_proto;
use crate::domain::Actor;
use crate::events;
use crate::service::{Error, Registry};
use crate::store::{Found, Identifier, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    SocialProtectionBody,
    ServiceProvider,
    IndividualCaregiver,
}

impl Section {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SocialProtectionBody => "social_protection_body",
            Self::ServiceProvider => "service_provider",
            Self::IndividualCaregiver => "individual_caregiver",
        }
    }

    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::ProviderSection::try_from(value).ok()? {
            pb::ProviderSection::Unspecified => None,
            pb::ProviderSection::SocialProtectionBody => Some(Self::SocialProtectionBody),
            pb::ProviderSection::ServiceProvider => Some(Self::ServiceProvider),
            pb::ProviderSection::IndividualCaregiver => Some(Self::IndividualCaregiver),
        }
    }

    fn to_proto(self) -> pb::ProviderSection {
        match self {
            Self::SocialProtectionBody => pb::ProviderSection::SocialProtectionBody,
            Self::ServiceProvider => pb::ProviderSection::ServiceProvider,
            Self::IndividualCaregiver => pb::ProviderSection::IndividualCaregiver,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderStatus {
    Active,
    Suspended,
    Closed,
}

impl ProviderStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Closed => "closed",
        }
    }
}

/// What a version of a provider says; only built by [`provider_data`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderData {
    pub section: Section,
    pub name: String,
    pub edrpou: Option<Edrpou>,
    pub rnokpp: Option<Rnokpp>,
    pub territory: String,
    pub services: Vec<String>,
    pub status: ProviderStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub id: Uuid,
    pub data: ProviderData,
    pub version: u32,
    pub valid_from: NaiveDate,
}

/// A support type code as the classifier writes them.
pub fn is_support_code(code: &str) -> bool {
    let mut characters = code.chars();
    characters.next().is_some_and(|first| first.is_ascii_uppercase())
        && code.len() <= 64
        && characters.all(|character| character.is_ascii_uppercase() || character.is_ascii_digit() || character == '_')
}

/// Validates a provider's data; `prefix` is the field path (`data.`).
pub async fn provider_data(
    violations: &mut Violations,
    data: &pb::ProviderData,
    registry: &Registry,
    today: NaiveDate,
) -> Option<ProviderData> {
    let section = Section::from_proto(data.section);
    if section.is_none() {
        violations.add("data.section", "must be one of the register's three sections");
    }
    let name = data.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 300 || name.chars().any(char::is_control) {
        violations.add("data.name", "is required: at most 300 characters of text");
    }
    let edrpou = if data.edrpou.trim().is_empty() {
        None
    } else {
        violations.check("data.edrpou", data.edrpou.trim().parse::<Edrpou>())
    };
    let rnokpp = if data.rnokpp.trim().is_empty() {
        None
    } else {
        violations.check("data.rnokpp", data.rnokpp.trim().parse::<Rnokpp>())
    };
    match section {
        Some(Section::SocialProtectionBody) if data.edrpou.trim().is_empty() => {
            violations.add("data.edrpou", "is required for a social protection body");
        }
        Some(Section::ServiceProvider) if data.edrpou.trim().is_empty() && data.rnokpp.trim().is_empty() => {
            violations.add("data.edrpou", "is required for a legal entity (an entrepreneur gives an RNOKPP instead)");
        }
        Some(Section::IndividualCaregiver) if data.rnokpp.trim().is_empty() => {
            violations.add("data.rnokpp", "is required for an individual caregiver");
        }
        Some(Section::IndividualCaregiver) if !data.edrpou.trim().is_empty() => {
            violations.add("data.edrpou", "must be empty for an individual caregiver, who runs no business");
        }
        _ => {}
    }
    let territory =
        crate::validate::territory(violations, "data.territory", &data.territory, &registry.territories, today).await;
    let mut services = Vec::with_capacity(data.services.len());
    for (index, code) in data.services.iter().enumerate() {
        let code = code.trim();
        if !is_support_code(code) {
            violations.add(format!("data.services[{index}]"), "is not a support type code");
        } else if !services.iter().any(|known| known == code) {
            services.push(code.to_owned());
        }
    }
    let status = match pb::ProviderStatus::try_from(data.status) {
        Ok(pb::ProviderStatus::Unspecified | pb::ProviderStatus::Active) => ProviderStatus::Active,
        Ok(pb::ProviderStatus::Suspended) => ProviderStatus::Suspended,
        Ok(pb::ProviderStatus::Closed) => ProviderStatus::Closed,
        Err(_) => {
            violations.add("data.status", "is not a provider status");
            ProviderStatus::Active
        }
    };
    let data =
        ProviderData { section: section?, name, edrpou, rnokpp, territory: territory?.to_string(), services, status };
    violations.is_empty().then_some(data)
}

/// A provider as the API shows it; the RNOKPP of entrepreneurs and
/// individuals only to callers who may read personal data.
pub fn provider_to_proto(provider: &Provider, show_rnokpp: bool) -> pb::Provider {
    let data = &provider.data;
    pb::Provider {
        id: provider.id.to_string(),
        data: Some(pb::ProviderData {
            section: data.section.to_proto().into(),
            name: data.name.clone(),
            edrpou: data.edrpou.map(|edrpou| edrpou.to_string()).unwrap_or_default(),
            rnokpp: data.rnokpp.filter(|_| show_rnokpp).map(|rnokpp| rnokpp.to_string()).unwrap_or_default(),
            territory: data.territory.clone(),
            services: data.services.clone(),
            status: match data.status {
                ProviderStatus::Active => pb::ProviderStatus::Active,
                ProviderStatus::Suspended => pb::ProviderStatus::Suspended,
                ProviderStatus::Closed => pb::ProviderStatus::Closed,
            }
            .into(),
        }),
        version: provider.version,
        valid_from: Some(esocial_kit::dates::to_proto(provider.valid_from)),
    }
}

#[derive(Debug, sqlx::FromRow)]
struct ProviderRow {
    id: Uuid,
    version: i32,
    valid_from: NaiveDate,
    data: Json<ProviderData>,
}

fn provider_from_row(row: ProviderRow) -> Result<Provider, Error> {
    Ok(Provider {
        id: row.id,
        data: row.data.0,
        version: u32::try_from(row.version)
            .map_err(|error| ApiError::internal(anyhow::anyhow!("provider version: {error}")))?,
        valid_from: row.valid_from,
    })
}

async fn provider_event(
    connection: &mut PgConnection,
    event: &esocial_events::EventType,
    provider: &Provider,
    actor: &Actor,
) -> Result<(), Error> {
    let payload = pb::ProviderChanged {
        provider: Some(provider_to_proto(provider, true)),
        changed_by: Some(actor_to_proto(actor)),
    };
    esocial_events::outbox::enqueue(connection, event, Some(&provider.id.to_string()), &payload).await?;
    Ok(())
}

/// Writes a version, and the provider's current row when the version is in
/// force today.
async fn record_provider_version(
    connection: &mut PgConnection,
    id: Uuid,
    version: u32,
    valid_from: NaiveDate,
    data: &ProviderData,
    reason: &str,
    actor: &Actor,
) -> Result<(), Error> {
    let version = i32::try_from(version).map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO providers (id, version, valid_from, section, name, edrpou, rnokpp, territory, services, status, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (id) DO UPDATE SET version = $2, valid_from = $3, section = $4, name = $5, edrpou = $6, rnokpp = $7,
                                        territory = $8, services = $9, status = $10, data = $11, updated_at = now()",
    )
    .bind(id)
    .bind(version)
    .bind(valid_from)
    .bind(data.section.as_str())
    .bind(&data.name)
    .bind(data.edrpou.map(|edrpou| edrpou.to_string()))
    .bind(data.rnokpp.map(|rnokpp| rnokpp.to_string()))
    .bind(&data.territory)
    .bind(&data.services)
    .bind(data.status.as_str())
    .bind(Json(data))
    .execute(&mut *connection)
    .await?;
    sqlx::query(
        "INSERT INTO provider_versions (provider_id, version, valid_from, data, reason, recorded_by) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(version)
    .bind(valid_from)
    .bind(Json(data))
    .bind(reason)
    .bind(&actor.subject)
    .execute(connection)
    .await?;
    Ok(())
}

/// The caller may act on providers serving `territory`.
async fn require_provider_territory(registry: &Registry, caller: &Caller, territory: &str) -> Result<(), Error> {
    require_territory(&registry.territories, caller, territory).await.map_err(Error::from)
}

impl Registry {
    pub async fn register_provider(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        data: ProviderData,
        valid_from: NaiveDate,
        reason: &str,
    ) -> Result<Provider, Error> {
        require_provider_territory(self, caller, &data.territory).await?;
        let actor = actor(caller);
        let id = Uuid::now_v7();
        record_provider_version(connection, id, 1, valid_from, &data, reason, &actor).await?;
        let provider = Provider { id, data, version: 1, valid_from };
        provider_event(connection, &events::PROVIDER_REGISTERED, &provider, &actor).await?;
        Ok(provider)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn update_provider(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        id: Uuid,
        expected_version: u32,
        data: ProviderData,
        valid_from: NaiveDate,
        reason: &str,
    ) -> Result<Provider, Error> {
        let Some(current) = Self::provider_row(connection, id, true).await? else {
            return Err(ApiError::NotFound(format!("provider {id} is not in the register")).into());
        };
        if current.version != expected_version {
            return Err(ApiError::Aborted(format!(
                "the provider is at version {}, not {expected_version}: re-read and retry",
                current.version
            ))
            .into());
        }
        if valid_from < current.valid_from {
            return Err(ApiError::invalid_field(
                "valid_from",
                format!("must not be before the current version's {}", current.valid_from),
            )
            .into());
        }
        if data.section != current.data.section {
            return Err(ApiError::invalid_field(
                "data.section",
                "cannot change: register the provider in the other section",
            )
            .into());
        }
        require_provider_territory(self, caller, &current.data.territory).await?;
        require_provider_territory(self, caller, &data.territory).await?;
        let actor = actor(caller);
        let version = current.version + 1;
        record_provider_version(connection, id, version, valid_from, &data, reason, &actor).await?;
        let provider = Provider { id, data, version, valid_from };
        provider_event(connection, &events::PROVIDER_UPDATED, &provider, &actor).await?;
        Ok(provider)
    }

    async fn provider_row(connection: &mut PgConnection, id: Uuid, lock: bool) -> Result<Option<Provider>, Error> {
        let query = if lock {
            "SELECT id, version, valid_from, data FROM providers WHERE id = $1 FOR UPDATE"
        } else {
            "SELECT id, version, valid_from, data FROM providers WHERE id = $1"
        };
        sqlx::query_as::<_, ProviderRow>(query)
            .bind(id)
            .fetch_optional(connection)
            .await?
            .map(provider_from_row)
            .transpose()
    }

    /// A provider as of a date.
    pub async fn provider(&self, id: Uuid, as_of: NaiveDate) -> Result<Provider, Error> {
        let row: Option<ProviderRow> = sqlx::query_as(
            "SELECT provider_id AS id, version, valid_from, data FROM provider_versions
             WHERE provider_id = $1 AND valid_from <= $2 ORDER BY valid_from DESC, version DESC LIMIT 1",
        )
        .bind(id)
        .bind(as_of)
        .fetch_optional(self.store.pool())
        .await?;
        match row {
            Some(row) => provider_from_row(row),
            None => Err(ApiError::NotFound(format!("provider {id} is not in the register as of {as_of}")).into()),
        }
    }

    /// Providers in a section and territory (the unit or inside it), in the
    /// order they were registered.
    pub async fn providers(
        &self,
        section: Option<Section>,
        territory: Option<&str>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Provider>, Error> {
        let rows: Vec<ProviderRow> = sqlx::query_as(
            "SELECT id, version, valid_from, data FROM providers
             WHERE ($1::text IS NULL OR section = $1)
               AND ($2::text IS NULL OR territory = ANY($3))
               AND ($4::uuid IS NULL OR id > $4)
             ORDER BY id LIMIT $5",
        )
        .bind(section.map(Section::as_str))
        .bind(territory)
        .bind(match territory {
            Some(scope) => self.territories.units_within(scope).await,
            None => Vec::new(),
        })
        .bind(after)
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        rows.into_iter().map(provider_from_row).collect()
    }
}

/// A support relation's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupportStatus {
    Assigned,
    Suspended,
    Terminated,
}

impl SupportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Assigned => "assigned",
            Self::Suspended => "suspended",
            Self::Terminated => "terminated",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Assigned, Self::Suspended, Self::Terminated].into_iter().find(|status| status.as_str() == text)
    }

    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::SupportStatus::try_from(value).ok()? {
            pb::SupportStatus::Unspecified => None,
            pb::SupportStatus::Assigned => Some(Self::Assigned),
            pb::SupportStatus::Suspended => Some(Self::Suspended),
            pb::SupportStatus::Terminated => Some(Self::Terminated),
        }
    }
}

/// A recipient's support from a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SupportRelation {
    pub id: Uuid,
    pub person_id: Uuid,
    pub support_type_code: String,
    pub support_type_version: i32,
    pub provider_id: Uuid,
    pub decision_number: String,
    pub decision_date: NaiveDate,
    pub period_from: NaiveDate,
    pub period_to: Option<NaiveDate>,
    pub status: String,
    pub version: i32,
}

/// What assigning support needs, validated.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub person_id: Uuid,
    pub support_type_code: String,
    pub support_type_version: u32,
    pub provider_id: Uuid,
    pub decision_number: String,
    pub decision_date: NaiveDate,
    pub period_from: NaiveDate,
    pub period_to: Option<NaiveDate>,
}

pub fn relation_to_proto(relation: &SupportRelation) -> pb::SupportRelation {
    let status = match SupportStatus::parse(&relation.status) {
        Some(SupportStatus::Assigned) => pb::SupportStatus::Assigned,
        Some(SupportStatus::Suspended) => pb::SupportStatus::Suspended,
        Some(SupportStatus::Terminated) => pb::SupportStatus::Terminated,
        None => pb::SupportStatus::Unspecified,
    };
    pb::SupportRelation {
        id: relation.id.to_string(),
        person_id: relation.person_id.to_string(),
        support_type_code: relation.support_type_code.clone(),
        support_type_version: u32::try_from(relation.support_type_version).unwrap_or_default(),
        provider_id: relation.provider_id.to_string(),
        decision_number: relation.decision_number.clone(),
        decision_date: Some(esocial_kit::dates::to_proto(relation.decision_date)),
        period: Some(esocial_proto::common::v1::ValidityPeriod {
            valid_from: Some(esocial_kit::dates::to_proto(relation.period_from)),
            valid_to: relation.period_to.map(esocial_kit::dates::to_proto),
        }),
        status: status.into(),
        version: u32::try_from(relation.version).unwrap_or_default(),
    }
}

const RELATION_COLUMNS: &str =
    "id, person_id, support_type_code, support_type_version, provider_id, decision_number, decision_date,
     period_from, period_to, status, version";

async fn relation_version(
    connection: &mut PgConnection,
    relation: &SupportRelation,
    reason: &str,
    actor: &Actor,
) -> Result<(), Error> {
    sqlx::query("INSERT INTO support_relation_versions (relation_id, version, data, reason, recorded_by) VALUES ($1, $2, $3, $4, $5)")
        .bind(relation.id)
        .bind(relation.version)
        .bind(Json(relation))
        .bind(reason)
        .bind(&actor.subject)
        .execute(connection)
        .await?;
    Ok(())
}

async fn support_event(
    connection: &mut PgConnection,
    event: &esocial_events::EventType,
    relation: &SupportRelation,
    actor: &Actor,
    reason: &str,
) -> Result<(), Error> {
    let payload = pb::SupportChanged {
        relation: Some(relation_to_proto(relation)),
        changed_by: Some(actor_to_proto(actor)),
        reason: reason.to_owned(),
    };
    esocial_events::outbox::enqueue(connection, event, Some(&relation.person_id.to_string()), &payload).await?;
    Ok(())
}

impl Registry {
    pub async fn assign_support(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        assignment: Assignment,
    ) -> Result<SupportRelation, Error> {
        let Some(found) = Store::find(connection, Identifier::Id(assignment.person_id)).await? else {
            return Err(ApiError::NotFound(format!("person {} is not in the register", assignment.person_id)).into());
        };
        let person = match found {
            Found::Active(person) => person,
            Found::Redirected { person, .. } => {
                return Err(ApiError::FailedPrecondition(format!(
                    "person {} was merged into {}: assign to that record",
                    assignment.person_id, person.id
                ))
                .into());
            }
        };
        require_territory(&self.territories, caller, &person.data.registered_address.territory).await?;
        let Some((valid_from, valid_to)) =
            self.support_types.validity(&assignment.support_type_code, assignment.support_type_version).await
        else {
            return Err(ApiError::invalid_field(
                "support_type_version",
                format!(
                    "the classifier has no version {} of {}",
                    assignment.support_type_version, assignment.support_type_code
                ),
            )
            .into());
        };
        let overlaps = valid_from <= assignment.period_to.unwrap_or(NaiveDate::MAX)
            && valid_to.is_none_or(|last| assignment.period_from <= last);
        if !overlaps {
            return Err(
                ApiError::invalid_field("period", "lies outside the validity of the support type version").into()
            );
        }
        let Some(provider) = Self::provider_row(connection, assignment.provider_id, false).await? else {
            return Err(
                ApiError::NotFound(format!("provider {} is not in the register", assignment.provider_id)).into()
            );
        };
        if provider.data.status != ProviderStatus::Active {
            return Err(ApiError::FailedPrecondition(format!(
                "provider {} is {}",
                provider.id,
                provider.data.status.as_str()
            ))
            .into());
        }
        let relation = SupportRelation {
            id: Uuid::now_v7(),
            person_id: person.id,
            support_type_code: assignment.support_type_code,
            support_type_version: i32::try_from(assignment.support_type_version).map_err(ApiError::internal)?,
            provider_id: provider.id,
            decision_number: assignment.decision_number,
            decision_date: assignment.decision_date,
            period_from: assignment.period_from,
            period_to: assignment.period_to,
            status: SupportStatus::Assigned.as_str().to_owned(),
            version: 1,
        };
        sqlx::query(
            "INSERT INTO support_relations (id, person_id, support_type_code, support_type_version, provider_id, decision_number,
                                            decision_date, period_from, period_to, status, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(relation.id)
        .bind(relation.person_id)
        .bind(&relation.support_type_code)
        .bind(relation.support_type_version)
        .bind(relation.provider_id)
        .bind(&relation.decision_number)
        .bind(relation.decision_date)
        .bind(relation.period_from)
        .bind(relation.period_to)
        .bind(&relation.status)
        .bind(relation.version)
        .execute(&mut *connection)
        .await?;
        let actor = actor(caller);
        relation_version(connection, &relation, "assigned", &actor).await?;
        support_event(connection, &events::SUPPORT_ASSIGNED, &relation, &actor, "assigned").await?;
        Ok(relation)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn change_support(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        id: Uuid,
        expected_version: u32,
        status: Option<SupportStatus>,
        period: Option<(NaiveDate, Option<NaiveDate>)>,
        reason: &str,
    ) -> Result<SupportRelation, Error> {
        let query = format!("SELECT {RELATION_COLUMNS} FROM support_relations WHERE id = $1 FOR UPDATE");
        let Some(mut relation) = sqlx::query_as::<_, SupportRelation>(AssertSqlSafe(query))
            .bind(id)
            .fetch_optional(&mut *connection)
            .await?
        else {
            return Err(ApiError::NotFound(format!("support relation {id} does not exist")).into());
        };
        if i64::from(expected_version) != i64::from(relation.version) {
            return Err(ApiError::Aborted(format!(
                "the relation is at version {}, not {expected_version}: re-read and retry",
                relation.version
            ))
            .into());
        }
        if relation.status == SupportStatus::Terminated.as_str() {
            return Err(ApiError::FailedPrecondition("a terminated support relation does not change".to_owned()).into());
        }
        let Some(Found::Active(person) | Found::Redirected { person, .. }) =
            Store::find(connection, Identifier::Id(relation.person_id)).await?
        else {
            return Err(ApiError::NotFound("the relation's person is not in the register".to_owned()).into());
        };
        require_territory(&self.territories, caller, &person.data.registered_address.territory).await?;
        if let Some(status) = status {
            relation.status = status.as_str().to_owned();
        }
        if let Some((from, to)) = period {
            relation.period_from = from;
            relation.period_to = to;
        }
        relation.version += 1;
        sqlx::query(
            "UPDATE support_relations SET status = $2, period_from = $3, period_to = $4, version = $5, updated_at = now() WHERE id = $1",
        )
        .bind(relation.id)
        .bind(&relation.status)
        .bind(relation.period_from)
        .bind(relation.period_to)
        .bind(relation.version)
        .execute(&mut *connection)
        .await?;
        let actor = actor(caller);
        relation_version(connection, &relation, reason, &actor).await?;
        support_event(connection, &events::SUPPORT_CHANGED, &relation, &actor, reason).await?;
        Ok(relation)
    }

    /// A person's support relations (and of records merged into them); the
    /// read is recorded.
    pub async fn support_of(
        &self,
        caller: &Caller,
        person_id: Uuid,
        purpose: &str,
    ) -> Result<Vec<SupportRelation>, Error> {
        let (person, _) = self
            .read_person(caller, Identifier::Id(person_id), esocial_kit::time::kyiv_today(), "ListSupport", purpose)
            .await?;
        let mut ids = vec![person.id];
        ids.extend(self.store.merged_into(person.id).await?);
        let query = format!(
            "SELECT {RELATION_COLUMNS} FROM support_relations WHERE person_id = ANY($1) ORDER BY period_from, id"
        );
        Ok(sqlx::query_as(AssertSqlSafe(query)).bind(&ids).fetch_all(self.store.pool()).await?)
    }
}
