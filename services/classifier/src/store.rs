//! All of the classifier's SQL.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use crate::domain::{
    Actor, DecisiveDate, LatestVersion, PaymentRule, Recorded, ReferenceBook, ReferenceEntry, ReferenceEntryContent,
    SupportCategory, SupportTypeContent, SupportTypeVersion, TerritorialDetails, TerritorialLevel, Threshold, Validity,
    normalize_for_search,
};

/// A stored row that does not map back to the domain: a bug or a manual edit.
#[derive(Debug, thiserror::Error)]
#[error("stored {what} is not valid: {detail}")]
pub struct CorruptRow {
    what: &'static str,
    detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Corrupt(#[from] CorruptRow),
}

fn corrupt(what: &'static str, detail: impl Into<String>) -> CorruptRow {
    CorruptRow { what, detail: detail.into() }
}

fn version_number(version: i32) -> Result<u32, CorruptRow> {
    u32::try_from(version).map_err(|_| corrupt("version", version.to_string()))
}

#[derive(sqlx::FromRow)]
struct SupportTypeRow {
    code: String,
    version: i32,
    valid_from: NaiveDate,
    valid_to: Option<NaiveDate>,
    name_uk: String,
    name_en: String,
    category: String,
    legal_basis: String,
    payment_rule: Option<Json<PaymentRule>>,
    decisive_date: String,
    thresholds: Json<Vec<Threshold>>,
    eligibility_notes: String,
    change_reason: String,
    recorded_by: String,
    recorded_by_org: Option<String>,
    recorded_at: DateTime<Utc>,
}

const SUPPORT_TYPE_COLUMNS: &str = "code, version, valid_from, valid_to, name_uk, name_en, category, legal_basis, \
     payment_rule, decisive_date, thresholds, eligibility_notes, change_reason, recorded_by, recorded_by_org, recorded_at";

impl TryFrom<SupportTypeRow> for SupportTypeVersion {
    type Error = CorruptRow;

    fn try_from(row: SupportTypeRow) -> Result<Self, Self::Error> {
        Ok(SupportTypeVersion {
            version: version_number(row.version)?,
            validity: Validity { valid_from: row.valid_from, valid_to: row.valid_to },
            content: SupportTypeContent {
                name_uk: row.name_uk,
                name_en: row.name_en,
                category: SupportCategory::parse(&row.category).ok_or_else(|| corrupt("category", &row.category))?,
                legal_basis: row.legal_basis,
                payment_rule: row.payment_rule.map(|rule| rule.0),
                decisive_date: DecisiveDate::parse(&row.decisive_date)
                    .ok_or_else(|| corrupt("decisive date", &row.decisive_date))?,
                thresholds: row.thresholds.0,
                eligibility_notes: row.eligibility_notes,
            },
            change_reason: row.change_reason,
            recorded: Recorded { by: row.recorded_by, by_organization: row.recorded_by_org, at: row.recorded_at },
            code: row.code,
        })
    }
}

fn convert_all<R, T: TryFrom<R, Error = CorruptRow>>(rows: Vec<R>) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(|row| T::try_from(row).map_err(StoreError::from)).collect()
}

#[derive(sqlx::FromRow)]
struct ReferenceRow {
    book: String,
    code: String,
    version: i32,
    valid_from: NaiveDate,
    valid_to: Option<NaiveDate>,
    name_uk: String,
    name_en: String,
    parent_code: Option<String>,
    territorial_level: Option<String>,
    territorial_category: Option<String>,
    change_reason: String,
    recorded_by: String,
    recorded_by_org: Option<String>,
    recorded_at: DateTime<Utc>,
}

const REFERENCE_COLUMNS: &str = "book, code, version, valid_from, valid_to, name_uk, name_en, parent_code, \
     territorial_level, territorial_category, change_reason, recorded_by, recorded_by_org, recorded_at";

impl TryFrom<ReferenceRow> for ReferenceEntry {
    type Error = CorruptRow;

    fn try_from(row: ReferenceRow) -> Result<Self, Self::Error> {
        let territorial = match (&row.territorial_level, &row.territorial_category) {
            (Some(level), Some(category)) => Some(TerritorialDetails {
                level: TerritorialLevel::parse(level).ok_or_else(|| corrupt("territorial level", level))?,
                category: category.chars().next().ok_or_else(|| corrupt("territorial category", category))?,
            }),
            _ => None,
        };
        Ok(ReferenceEntry {
            book: ReferenceBook::parse(&row.book).ok_or_else(|| corrupt("book", &row.book))?,
            code: row.code,
            version: version_number(row.version)?,
            validity: Validity { valid_from: row.valid_from, valid_to: row.valid_to },
            content: ReferenceEntryContent {
                name_uk: row.name_uk,
                name_en: row.name_en,
                parent_code: row.parent_code,
                territorial,
            },
            change_reason: row.change_reason,
            recorded: Recorded { by: row.recorded_by, by_organization: row.recorded_by_org, at: row.recorded_at },
        })
    }
}

/// Reads and writes of the classifier schema.
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

    // ------------------------------------------------------------ support types

    pub async fn support_type_in_force(
        &self,
        code: &str,
        as_of: NaiveDate,
    ) -> Result<Option<SupportTypeVersion>, StoreError> {
        let row: Option<SupportTypeRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SUPPORT_TYPE_COLUMNS} FROM support_type_versions
             WHERE code = $1 AND daterange(valid_from, valid_to, '[]') @> $2"
        )))
        .bind(code)
        .bind(as_of)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(SupportTypeVersion::try_from).transpose()?)
    }

    pub async fn support_type_exists(&self, code: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM support_types WHERE code = $1)")
            .bind(code)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Support types in force on a date, by code, after `after_code`.
    pub async fn support_types_in_force(
        &self,
        as_of: NaiveDate,
        category: Option<SupportCategory>,
        after_code: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SupportTypeVersion>, StoreError> {
        let rows: Vec<SupportTypeRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SUPPORT_TYPE_COLUMNS} FROM support_type_versions
             WHERE daterange(valid_from, valid_to, '[]') @> $1
               AND ($2::text IS NULL OR category = $2)
               AND ($3::text IS NULL OR code > $3)
             ORDER BY code LIMIT $4"
        )))
        .bind(as_of)
        .bind(category.map(SupportCategory::as_str))
        .bind(after_code)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        convert_all(rows)
    }

    pub async fn support_type_versions(&self, code: &str) -> Result<Vec<SupportTypeVersion>, StoreError> {
        let rows: Vec<SupportTypeRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SUPPORT_TYPE_COLUMNS} FROM support_type_versions WHERE code = $1 ORDER BY version"
        )))
        .bind(code)
        .fetch_all(&self.pool)
        .await?;
        convert_all(rows)
    }

    /// Locks a support type for a change and returns its latest version.
    ///
    /// The lock is taken on its own first: the version is read by a second
    /// statement, whose snapshot includes whatever a concurrent change
    /// committed while this one waited for the lock.
    pub async fn lock_support_type(
        connection: &mut PgConnection,
        code: &str,
    ) -> Result<Option<LatestVersion>, StoreError> {
        let latest: Option<i32> =
            sqlx::query_scalar("SELECT latest_version FROM support_types WHERE code = $1 FOR UPDATE")
                .bind(code)
                .fetch_optional(&mut *connection)
                .await?;
        let Some(latest) = latest else { return Ok(None) };
        let (valid_from, valid_to): (NaiveDate, Option<NaiveDate>) =
            sqlx::query_as("SELECT valid_from, valid_to FROM support_type_versions WHERE code = $1 AND version = $2")
                .bind(code)
                .bind(latest)
                .fetch_one(connection)
                .await?;
        Ok(Some(LatestVersion { version: version_number(latest)?, validity: Validity { valid_from, valid_to } }))
    }

    pub async fn insert_support_type_version(
        connection: &mut PgConnection,
        code: &str,
        version: u32,
        validity: Validity,
        content: &SupportTypeContent,
        change_reason: &str,
        actor: &Actor,
    ) -> Result<SupportTypeVersion, StoreError> {
        let version_value = i32::try_from(version).map_err(|_| corrupt("version", version.to_string()))?;
        if version == 1 {
            sqlx::query("INSERT INTO support_types (code, latest_version) VALUES ($1, 1)")
                .bind(code)
                .execute(&mut *connection)
                .await?;
        } else {
            sqlx::query("UPDATE support_types SET latest_version = $2 WHERE code = $1")
                .bind(code)
                .bind(version_value)
                .execute(&mut *connection)
                .await?;
        }
        let row: SupportTypeRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO support_type_versions
                (code, version, valid_from, valid_to, name_uk, name_en, category, legal_basis, payment_rule,
                 decisive_date, thresholds, eligibility_notes, change_reason, recorded_by, recorded_by_org)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             RETURNING {SUPPORT_TYPE_COLUMNS}"
        )))
        .bind(code)
        .bind(version_value)
        .bind(validity.valid_from)
        .bind(validity.valid_to)
        .bind(&content.name_uk)
        .bind(&content.name_en)
        .bind(content.category.as_str())
        .bind(&content.legal_basis)
        .bind(content.payment_rule.as_ref().map(Json))
        .bind(content.decisive_date.as_str())
        .bind(Json(&content.thresholds))
        .bind(&content.eligibility_notes)
        .bind(change_reason)
        .bind(&actor.subject)
        .bind(&actor.organization)
        .fetch_one(connection)
        .await?;
        Ok(SupportTypeVersion::try_from(row)?)
    }

    /// Sets the last day of an open-ended version (the one update versions allow).
    pub async fn end_date_support_type_version(
        connection: &mut PgConnection,
        code: &str,
        version: u32,
        valid_to: NaiveDate,
        actor: &Actor,
        reason: &str,
    ) -> Result<SupportTypeVersion, StoreError> {
        let row: SupportTypeRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE support_type_versions
             SET valid_to = $3, end_dated_at = now(), end_dated_by = $4, end_date_reason = $5
             WHERE code = $1 AND version = $2 AND valid_to IS NULL
             RETURNING {SUPPORT_TYPE_COLUMNS}"
        )))
        .bind(code)
        .bind(i32::try_from(version).map_err(|_| corrupt("version", version.to_string()))?)
        .bind(valid_to)
        .bind(&actor.subject)
        .bind(reason)
        .fetch_one(connection)
        .await?;
        Ok(SupportTypeVersion::try_from(row)?)
    }

    // ---------------------------------------------------------- reference books

    pub async fn reference_entry_in_force(
        &self,
        book: ReferenceBook,
        code: &str,
        as_of: NaiveDate,
    ) -> Result<Option<ReferenceEntry>, StoreError> {
        Self::reference_entry_in_force_on(&mut *self.pool.acquire().await?, book, code, as_of).await
    }

    pub async fn reference_entry_in_force_on(
        connection: &mut PgConnection,
        book: ReferenceBook,
        code: &str,
        as_of: NaiveDate,
    ) -> Result<Option<ReferenceEntry>, StoreError> {
        let row: Option<ReferenceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {REFERENCE_COLUMNS} FROM reference_entry_versions
             WHERE book = $1 AND code = $2 AND daterange(valid_from, valid_to, '[]') @> $3"
        )))
        .bind(book.as_str())
        .bind(code)
        .bind(as_of)
        .fetch_optional(connection)
        .await?;
        Ok(row.map(ReferenceEntry::try_from).transpose()?)
    }

    pub async fn reference_entry_exists(&self, book: ReferenceBook, code: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM reference_entries WHERE book = $1 AND code = $2)")
            .bind(book.as_str())
            .bind(code)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Entries of a book in force on a date, by code, after `after_code`;
    /// with `parent_code`, only its direct children.
    pub async fn reference_entries_in_force(
        &self,
        book: ReferenceBook,
        as_of: NaiveDate,
        parent_code: Option<&str>,
        after_code: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ReferenceEntry>, StoreError> {
        let rows: Vec<ReferenceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {REFERENCE_COLUMNS} FROM reference_entry_versions
             WHERE book = $1 AND daterange(valid_from, valid_to, '[]') @> $2
               AND ($3::text IS NULL OR parent_code = $3)
               AND ($4::text IS NULL OR code > $4)
             ORDER BY code LIMIT $5"
        )))
        .bind(book.as_str())
        .bind(as_of)
        .bind(parent_code)
        .bind(after_code)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        convert_all(rows)
    }

    /// Entries whose normalised name contains the normalised query: names
    /// starting with it first, then by name and code.
    pub async fn search_reference_entries(
        &self,
        book: ReferenceBook,
        as_of: NaiveDate,
        normalized_query: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<ReferenceEntry>, StoreError> {
        let escaped = normalized_query.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let rows: Vec<ReferenceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {REFERENCE_COLUMNS} FROM reference_entry_versions
             WHERE book = $1 AND daterange(valid_from, valid_to, '[]') @> $2
               AND search_name LIKE '%' || $3 || '%'
             ORDER BY (search_name LIKE $3 || '%') DESC, search_name, code
             OFFSET $4 LIMIT $5"
        )))
        .bind(book.as_str())
        .bind(as_of)
        .bind(escaped)
        .bind(offset)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        convert_all(rows)
    }

    pub async fn reference_entry_versions(
        &self,
        book: ReferenceBook,
        code: &str,
    ) -> Result<Vec<ReferenceEntry>, StoreError> {
        let rows: Vec<ReferenceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {REFERENCE_COLUMNS} FROM reference_entry_versions WHERE book = $1 AND code = $2 ORDER BY version"
        )))
        .bind(book.as_str())
        .bind(code)
        .fetch_all(&self.pool)
        .await?;
        convert_all(rows)
    }

    /// Locks a reference entry for a change and returns its latest version
    /// (the lock first, then a fresh read, as for support types).
    pub async fn lock_reference_entry(
        connection: &mut PgConnection,
        book: ReferenceBook,
        code: &str,
    ) -> Result<Option<LatestVersion>, StoreError> {
        let latest: Option<i32> =
            sqlx::query_scalar("SELECT latest_version FROM reference_entries WHERE book = $1 AND code = $2 FOR UPDATE")
                .bind(book.as_str())
                .bind(code)
                .fetch_optional(&mut *connection)
                .await?;
        let Some(latest) = latest else { return Ok(None) };
        let (valid_from, valid_to): (NaiveDate, Option<NaiveDate>) = sqlx::query_as(
            "SELECT valid_from, valid_to FROM reference_entry_versions WHERE book = $1 AND code = $2 AND version = $3",
        )
        .bind(book.as_str())
        .bind(code)
        .bind(latest)
        .fetch_one(connection)
        .await?;
        Ok(Some(LatestVersion { version: version_number(latest)?, validity: Validity { valid_from, valid_to } }))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn insert_reference_entry_version(
        connection: &mut PgConnection,
        book: ReferenceBook,
        code: &str,
        version: u32,
        validity: Validity,
        content: &ReferenceEntryContent,
        change_reason: &str,
        actor: &Actor,
    ) -> Result<ReferenceEntry, StoreError> {
        let version_value = i32::try_from(version).map_err(|_| corrupt("version", version.to_string()))?;
        if version == 1 {
            sqlx::query("INSERT INTO reference_entries (book, code, latest_version) VALUES ($1, $2, 1)")
                .bind(book.as_str())
                .bind(code)
                .execute(&mut *connection)
                .await?;
        } else {
            sqlx::query("UPDATE reference_entries SET latest_version = $3 WHERE book = $1 AND code = $2")
                .bind(book.as_str())
                .bind(code)
                .bind(version_value)
                .execute(&mut *connection)
                .await?;
        }
        let row: ReferenceRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO reference_entry_versions
                (book, code, version, valid_from, valid_to, name_uk, name_en, search_name, parent_code,
                 territorial_level, territorial_category, change_reason, recorded_by, recorded_by_org)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             RETURNING {REFERENCE_COLUMNS}"
        )))
        .bind(book.as_str())
        .bind(code)
        .bind(version_value)
        .bind(validity.valid_from)
        .bind(validity.valid_to)
        .bind(&content.name_uk)
        .bind(&content.name_en)
        .bind(normalize_for_search(&content.name_uk))
        .bind(&content.parent_code)
        .bind(content.territorial.map(|details| details.level.as_str()))
        .bind(content.territorial.map(|details| details.category.to_string()))
        .bind(change_reason)
        .bind(&actor.subject)
        .bind(&actor.organization)
        .fetch_one(connection)
        .await?;
        Ok(ReferenceEntry::try_from(row)?)
    }

    pub async fn end_date_reference_entry_version(
        connection: &mut PgConnection,
        book: ReferenceBook,
        code: &str,
        version: u32,
        valid_to: NaiveDate,
        actor: &Actor,
        reason: &str,
    ) -> Result<ReferenceEntry, StoreError> {
        let row: ReferenceRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE reference_entry_versions
             SET valid_to = $4, end_dated_at = now(), end_dated_by = $5, end_date_reason = $6
             WHERE book = $1 AND code = $2 AND version = $3 AND valid_to IS NULL
             RETURNING {REFERENCE_COLUMNS}"
        )))
        .bind(book.as_str())
        .bind(code)
        .bind(i32::try_from(version).map_err(|_| corrupt("version", version.to_string()))?)
        .bind(valid_to)
        .bind(&actor.subject)
        .bind(reason)
        .fetch_one(connection)
        .await?;
        Ok(ReferenceEntry::try_from(row)?)
    }
}
