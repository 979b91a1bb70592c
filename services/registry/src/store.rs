//! The registry's SQL for persons, family links, merges, the access log and
//! imports. (Providers, support relations, IDP records and extracts have
//! their SQL next to their logic in their own modules.)

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{Actor, FamilyLink, FamilyRelation, Person, PersonData};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
}

fn corrupt(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(detail.to_string())
}

fn version_number(version: i32) -> Result<u32, StoreError> {
    u32::try_from(version).map_err(corrupt)
}

const PERSON_SELECT: &str = "SELECT p.id, p.status, p.merged_into, p.version, p.valid_from, v.data
     FROM persons p JOIN person_versions v ON v.person_id = p.id AND v.version = p.data_version";

/// A person's row as stored (its current data from the version in force).
#[derive(Debug, sqlx::FromRow)]
struct PersonRow {
    id: Uuid,
    status: String,
    merged_into: Option<Uuid>,
    version: i32,
    valid_from: NaiveDate,
    data: Json<PersonData>,
}

/// Where a lookup ended up.
#[derive(Debug, Clone)]
pub enum Found {
    Active(Person),
    /// The id was merged into this person.
    Redirected {
        from: Uuid,
        person: Person,
    },
}

/// One version of a person, as history shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub person_id: Uuid,
    pub version: i32,
    pub valid_from: NaiveDate,
    pub data: Json<PersonData>,
    pub reason: String,
    pub source_document: String,
    pub recorded_by: String,
    pub recorded_by_org: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identifier<'a> {
    Id(Uuid),
    Rnokpp(&'a str),
    Unzr(&'a str),
}

/// A person's identifiers and birth date, for matching.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MatchRow {
    pub id: Uuid,
    pub name_key: String,
    pub passport_number: Option<String>,
    pub same_birth_date: bool,
}

/// An access log entry.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccessRow {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub reader: String,
    pub reader_org: Option<String>,
    pub method: String,
    pub purpose: String,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn family(connection: &mut PgConnection, id: Uuid) -> Result<Vec<FamilyLink>, StoreError> {
        let rows: Vec<(Uuid, String, NaiveDate)> = sqlx::query_as(
            "SELECT related_person_id, relation, valid_from FROM family_links WHERE person_id = $1 ORDER BY relation, related_person_id",
        )
        .bind(id)
        .fetch_all(connection)
        .await?;
        rows.into_iter()
            .map(|(related_person_id, relation, valid_from)| {
                Ok(FamilyLink {
                    related_person_id,
                    relation: FamilyRelation::parse(&relation).ok_or_else(|| corrupt(&relation))?,
                    valid_from,
                })
            })
            .collect()
    }

    async fn into_person(connection: &mut PgConnection, row: PersonRow) -> Result<Person, StoreError> {
        let family = Self::family(connection, row.id).await?;
        Ok(Person {
            id: row.id,
            data: row.data.0,
            version: version_number(row.version)?,
            valid_from: row.valid_from,
            family,
        })
    }

    /// A person's current data, following merges.
    pub async fn find(connection: &mut PgConnection, key: Identifier<'_>) -> Result<Option<Found>, StoreError> {
        let query = match key {
            Identifier::Id(_) => "WHERE p.id = $1::uuid",
            Identifier::Rnokpp(_) => "WHERE p.rnokpp = $1 AND p.status = 'active'",
            Identifier::Unzr(_) => "WHERE p.unzr = $1 AND p.status = 'active'",
        };
        let query = format!("{PERSON_SELECT} {query}");
        let value = match key {
            Identifier::Id(id) => id.to_string(),
            Identifier::Rnokpp(text) | Identifier::Unzr(text) => text.to_owned(),
        };
        let Some(mut row) =
            sqlx::query_as::<_, PersonRow>(AssertSqlSafe(query)).bind(&value).fetch_optional(&mut *connection).await?
        else {
            return Ok(None);
        };
        let requested = row.id;
        // Merges may chain; each hop moves to a surviving record.
        for _ in 0..16 {
            if row.status != "merged" {
                break;
            }
            let target = row.merged_into.ok_or_else(|| corrupt("merged without a target"))?;
            row = sqlx::query_as(AssertSqlSafe(format!("{PERSON_SELECT} WHERE p.id = $1")))
                .bind(target)
                .fetch_one(&mut *connection)
                .await?;
        }
        let person = Self::into_person(connection, row).await?;
        Ok(Some(if person.id == requested {
            Found::Active(person)
        } else {
            Found::Redirected { from: requested, person }
        }))
    }

    /// The version of a person's data that applied on `date`, with the
    /// person's current version number and family.
    pub async fn as_of(
        connection: &mut PgConnection,
        person: &Person,
        date: NaiveDate,
    ) -> Result<Option<Person>, StoreError> {
        let row: Option<(i32, NaiveDate, Json<PersonData>)> = sqlx::query_as(
            "SELECT version, valid_from, data FROM person_versions
             WHERE person_id = $1 AND valid_from <= $2 ORDER BY valid_from DESC, version DESC LIMIT 1",
        )
        .bind(person.id)
        .bind(date)
        .fetch_optional(connection)
        .await?;
        row.map(|(version, valid_from, data)| {
            Ok(Person {
                id: person.id,
                data: data.0,
                version: version_number(version)?,
                valid_from,
                family: person.family.clone(),
            })
        })
        .transpose()
    }

    /// Writes a version and makes the current row the version in force today.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_version(
        connection: &mut PgConnection,
        id: Uuid,
        version: u32,
        valid_from: NaiveDate,
        data: &PersonData,
        reason: &str,
        source_document: &str,
        actor: &Actor,
        today: NaiveDate,
    ) -> Result<(), StoreError> {
        let version = i32::try_from(version).map_err(corrupt)?;
        sqlx::query(
            "INSERT INTO person_versions (person_id, version, valid_from, data, reason, source_document, recorded_by, recorded_by_org)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(version)
        .bind(valid_from)
        .bind(Json(data))
        .bind(reason)
        .bind(source_document)
        .bind(&actor.subject)
        .bind(&actor.organization)
        .execute(&mut *connection)
        .await?;
        // The current row is the version in force today (a correction dated
        // earlier than the current version goes into history only).
        let (current_version, current_from, current): (i32, NaiveDate, Json<PersonData>) = sqlx::query_as(
            "SELECT version, valid_from, data FROM person_versions WHERE person_id = $1
             ORDER BY valid_from <= $2 DESC, CASE WHEN valid_from <= $2 THEN valid_from END DESC, valid_from, version DESC
             LIMIT 1",
        )
        .bind(id)
        .bind(today)
        .fetch_one(&mut *connection)
        .await?;
        let current = current.0;
        sqlx::query(
            "UPDATE persons SET version = $2, valid_from = $3, rnokpp = $4, unzr = $5, passport_number = $6, last_name = $7,
                    first_name = $8, patronymic = $9, name_key = $10, birth_date = $11, registered_territory = $12,
                    data_version = $13, updated_at = now()
             WHERE id = $1",
        )
        .bind(id)
        .bind(version)
        .bind(current_from)
        .bind(current.rnokpp.as_ref().map(ToString::to_string))
        .bind(current.unzr.as_ref().map(ToString::to_string))
        .bind(current.passport_number.as_ref().map(ToString::to_string))
        .bind(&current.name.last)
        .bind(&current.name.first)
        .bind(&current.name.patronymic)
        .bind(current.name.key())
        .bind(current.birth_date)
        .bind(&current.registered_address.territory)
        .bind(current_version)
        .execute(connection)
        .await?;
        Ok(())
    }

    /// A new person with its first version.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_person(
        connection: &mut PgConnection,
        id: Uuid,
        valid_from: NaiveDate,
        data: &PersonData,
        reason: &str,
        source_document: &str,
        actor: &Actor,
        today: NaiveDate,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO persons (id, status, version, valid_from, rnokpp, unzr, passport_number, last_name, first_name,
                                  patronymic, name_key, birth_date, registered_territory, data_version)
             VALUES ($1, 'active', 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1)",
        )
        .bind(id)
        .bind(valid_from)
        .bind(data.rnokpp.as_ref().map(ToString::to_string))
        .bind(data.unzr.as_ref().map(ToString::to_string))
        .bind(data.passport_number.as_ref().map(ToString::to_string))
        .bind(&data.name.last)
        .bind(&data.name.first)
        .bind(&data.name.patronymic)
        .bind(data.name.key())
        .bind(data.birth_date)
        .bind(&data.registered_address.territory)
        .execute(&mut *connection)
        .await?;
        Self::record_version(connection, id, 1, valid_from, data, reason, source_document, actor, today).await
    }

    /// Locks a person's row; its current version and status.
    pub async fn lock(connection: &mut PgConnection, id: Uuid) -> Result<Option<(u32, String)>, StoreError> {
        let row: Option<(i32, String)> = sqlx::query_as("SELECT version, status FROM persons WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(connection)
            .await?;
        row.map(|(version, status)| Ok((version_number(version)?, status))).transpose()
    }

    /// An active person holding this RNOKPP or UNZR, other than `except`.
    pub async fn holder_of(
        connection: &mut PgConnection,
        rnokpp: Option<&str>,
        unzr: Option<&str>,
        except: Option<Uuid>,
    ) -> Result<Option<(Uuid, &'static str)>, StoreError> {
        let row: Option<(Uuid, bool)> = sqlx::query_as(
            "SELECT id, rnokpp IS NOT DISTINCT FROM $1 FROM persons
             WHERE status = 'active' AND ((rnokpp = $1) OR (unzr = $2)) AND ($3::uuid IS NULL OR id <> $3) LIMIT 1",
        )
        .bind(rnokpp)
        .bind(unzr)
        .bind(except)
        .fetch_optional(connection)
        .await?;
        Ok(row.map(|(id, by_rnokpp)| (id, if by_rnokpp { "rnokpp" } else { "unzr" })))
    }

    /// Probable duplicates: the same birth date and a similar name key, or
    /// the same passport; never merged records or pairs marked distinct.
    pub async fn candidates(
        connection: &mut PgConnection,
        name_key: &str,
        birth_date: NaiveDate,
        passport: Option<&str>,
        except: Option<Uuid>,
    ) -> Result<Vec<MatchRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT p.id, p.name_key, p.passport_number, p.birth_date = $2 AS same_birth_date
             FROM persons p
             WHERE p.status = 'active'
               AND ($4::uuid IS NULL OR p.id <> $4)
               AND ((p.birth_date = $2 AND similarity(p.name_key, $1) >= 0.35) OR (p.passport_number = $3))
               AND NOT EXISTS (SELECT 1 FROM distinct_persons d
                               WHERE (d.person_a = p.id AND d.person_b = $4) OR (d.person_b = p.id AND d.person_a = $4))
             ORDER BY similarity(p.name_key, $1) DESC LIMIT 20",
        )
        .bind(name_key)
        .bind(birth_date)
        .bind(passport)
        .bind(except)
        .fetch_all(connection)
        .await?)
    }

    /// Persons by name key and birth date, most similar first.
    pub async fn search_by_name(
        &self,
        name_key: &str,
        birth_date: NaiveDate,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<(Uuid, f32)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, similarity(name_key, $1) AS score FROM persons
             WHERE status = 'active' AND birth_date = $2 AND similarity(name_key, $1) >= 0.35
             ORDER BY score DESC, id OFFSET $3 LIMIT $4",
        )
        .bind(name_key)
        .bind(birth_date)
        .bind(offset)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn ids_by_passport(&self, passport: &str, offset: i64, limit: i64) -> Result<Vec<Uuid>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM persons WHERE passport_number = $1 AND status = 'active' ORDER BY id OFFSET $2 LIMIT $3",
        )
        .bind(passport)
        .bind(offset)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every version of these persons, oldest first.
    pub async fn versions(&self, ids: &[Uuid]) -> Result<Vec<VersionRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT person_id, version, valid_from, data, reason, source_document, recorded_by, recorded_by_org, recorded_at
             FROM person_versions WHERE person_id = ANY($1) ORDER BY recorded_at, person_id, version",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The ids merged into a person, directly or through chains.
    pub async fn merged_into(&self, id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        Ok(sqlx::query_scalar(
            "WITH RECURSIVE merged(id) AS (
                 SELECT merged_person_id FROM person_merges WHERE surviving_person_id = $1
                 UNION SELECT m.merged_person_id FROM person_merges m JOIN merged ON m.surviving_person_id = merged.id)
             SELECT id FROM merged",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn merge(
        connection: &mut PgConnection,
        surviving: Uuid,
        merged: Uuid,
        reason: &str,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE persons SET status = 'merged', merged_into = $2, updated_at = now() WHERE id = $1")
            .bind(merged)
            .bind(surviving)
            .execute(&mut *connection)
            .await?;
        sqlx::query("INSERT INTO person_merges (merged_person_id, surviving_person_id, reason, recorded_by) VALUES ($1, $2, $3, $4)")
            .bind(merged)
            .bind(surviving)
            .bind(reason)
            .bind(&actor.subject)
            .execute(connection)
            .await?;
        Ok(())
    }

    pub async fn mark_distinct(
        connection: &mut PgConnection,
        one: Uuid,
        other: Uuid,
        reason: &str,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let (first, second) = if one < other { (one, other) } else { (other, one) };
        sqlx::query(
            "INSERT INTO distinct_persons (person_a, person_b, reason, recorded_by) VALUES ($1, $2, $3, $4)
             ON CONFLICT (person_a, person_b) DO NOTHING",
        )
        .bind(first)
        .bind(second)
        .bind(reason)
        .bind(&actor.subject)
        .execute(connection)
        .await?;
        Ok(())
    }

    /// Records a family link in both directions.
    pub async fn link_family(
        connection: &mut PgConnection,
        person: Uuid,
        related: Uuid,
        relation: FamilyRelation,
        valid_from: NaiveDate,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        for (from, to, relation) in [(person, related, relation), (related, person, relation.inverse())] {
            sqlx::query(
                "INSERT INTO family_links (person_id, related_person_id, relation, valid_from, recorded_by)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(from)
            .bind(to)
            .bind(relation.as_str())
            .bind(valid_from)
            .bind(&actor.subject)
            .execute(&mut *connection)
            .await?;
        }
        Ok(())
    }

    /// Records reads of persons' data.
    pub async fn log_reads(
        &self,
        actor: &Actor,
        person_ids: &[Uuid],
        method: &str,
        purpose: &str,
    ) -> Result<(), StoreError> {
        if person_ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO access_log (reader, reader_org, person_id, method, purpose)
             SELECT $1, $2, unnest($3::uuid[]), $4, $5",
        )
        .bind(&actor.subject)
        .bind(&actor.organization)
        .bind(person_ids)
        .bind(method)
        .bind(purpose)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn access_log(
        &self,
        person_ids: &[Uuid],
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AccessRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, occurred_at, reader, reader_org, method, purpose FROM access_log
             WHERE person_id = ANY($1) AND ($2::bigint IS NULL OR id > $2) ORDER BY id LIMIT $3",
        )
        .bind(person_ids)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
