//! SQL for the directory (members, access rights, event entitlements, the
//! record of administrative changes) and subscriptions. The message log has
//! its own SQL in `message_log`.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row as _};
use uuid::Uuid;

use crate::domain::{AccessRight, EventTypeName, Limits, LogMode, Member, MemberId, MemberStatus, MethodRight};

/// Everything the proxy needs to decide a call, read at once.
#[derive(Debug, Default)]
pub struct DirectoryRows {
    pub members: Vec<Member>,
    pub rights: Vec<AccessRight>,
    /// With the time each was given.
    pub entitlements: Vec<(MemberId, EventTypeName, DateTime<Utc>)>,
    /// The system clients identity deactivated (`identity_clients`).
    pub inactive_clients: Vec<String>,
}

fn as_u32(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

fn as_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn member_from_row(row: &PgRow) -> Result<Member, sqlx::Error> {
    let decode =
        |column: &str, problem: String| sqlx::Error::ColumnDecode { index: column.to_owned(), source: problem.into() };
    let member_id: String = row.try_get("member_id")?;
    let status: String = row.try_get("status")?;
    let log_mode: String = row.try_get("log_mode")?;
    Ok(Member {
        member_id: MemberId::parse(&member_id).map_err(|problem| decode("member_id", problem))?,
        name: row.try_get("name")?,
        client_id: row.try_get("client_id")?,
        status: MemberStatus::parse(&status).ok_or_else(|| decode("status", status.clone()))?,
        contact: row.try_get("contact")?,
        limits: Limits {
            requests_per_second: as_u32(row.try_get("requests_per_second")?),
            burst: as_u32(row.try_get("burst")?),
            message_bytes_max: as_u32(row.try_get("message_bytes_max")?),
        },
        log_mode: LogMode::parse(&log_mode).ok_or_else(|| decode("log_mode", log_mode.clone()))?,
        client_certificate: row
            .try_get::<Option<Vec<u8>>, _>("client_certificate_sha256")?
            .map(|digest| {
                <[u8; 32]>::try_from(digest.as_slice())
                    .map_err(|_| decode("client_certificate_sha256", format!("{} bytes", digest.len())))
            })
            .transpose()?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn right_from_row(row: &PgRow) -> Result<AccessRight, sqlx::Error> {
    let decode =
        |column: &str, problem: String| sqlx::Error::ColumnDecode { index: column.to_owned(), source: problem.into() };
    let member_id: String = row.try_get("member_id")?;
    let method: String = row.try_get("method")?;
    Ok(AccessRight {
        member_id: MemberId::parse(&member_id).map_err(|problem| decode("member_id", problem))?,
        right: MethodRight::parse(&method).map_err(|problem| decode("method", problem))?,
        granted_at: row.try_get("granted_at")?,
        granted_by: row.try_get("granted_by")?,
    })
}

const MEMBER_COLUMNS: &str = "member_id, name, client_id, status, contact, requests_per_second, burst, \
                              message_bytes_max, log_mode, client_certificate_sha256, created_at, updated_at";

pub async fn directory(pool: &PgPool) -> Result<DirectoryRows, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    // One snapshot of all four tables.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *transaction).await?;
    // A row that does not parse (changed outside the API) is left out and
    // reported, rather than keeping a stale directory for everyone.
    let members = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {MEMBER_COLUMNS} FROM members")))
        .fetch_all(&mut *transaction)
        .await?
        .iter()
        .filter_map(|row| {
            member_from_row(row)
                .map_err(|error| tracing::error!(%error, "a member row is left out of the directory"))
                .ok()
        })
        .collect();
    let rights = sqlx::query("SELECT member_id, method, granted_at, granted_by FROM access_rights")
        .fetch_all(&mut *transaction)
        .await?
        .iter()
        .filter_map(|row| {
            right_from_row(row)
                .map_err(|error| tracing::error!(%error, "an access right is left out of the directory"))
                .ok()
        })
        .collect();
    let mut entitlements = Vec::new();
    for row in sqlx::query("SELECT member_id, event_type, granted_at FROM event_entitlements")
        .fetch_all(&mut *transaction)
        .await?
    {
        let member_id: String = row.try_get("member_id")?;
        let event_type: String = row.try_get("event_type")?;
        let granted_at: DateTime<Utc> = row.try_get("granted_at")?;
        if let (Ok(member_id), Ok(event_type)) = (MemberId::parse(&member_id), EventTypeName::parse(&event_type)) {
            entitlements.push((member_id, event_type, granted_at));
        }
    }
    let inactive_clients = sqlx::query_scalar("SELECT client_id FROM identity_clients WHERE NOT active")
        .fetch_all(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(DirectoryRows { members, rights, entitlements, inactive_clients })
}

/// Which of `client_ids` identity deactivated (`identity_clients`).
pub async fn deactivated_clients(
    connection: &mut PgConnection,
    client_ids: &[&str],
) -> Result<HashSet<String>, sqlx::Error> {
    let deactivated: Vec<String> =
        sqlx::query_scalar("SELECT client_id FROM identity_clients WHERE NOT active AND client_id = ANY($1)")
            .bind(client_ids)
            .fetch_all(connection)
            .await?;
    Ok(deactivated.into_iter().collect())
}

/// Whether identity has deactivated the system client `client_id`, as the
/// gateway last heard from it.
pub async fn client_deactivated(connection: &mut PgConnection, client_id: &str) -> Result<bool, sqlx::Error> {
    Ok(!deactivated_clients(connection, &[client_id]).await?.is_empty())
}

pub async fn insert_member(connection: &mut PgConnection, member: &Member) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO members (member_id, name, client_id, status, contact, requests_per_second, burst,
                              message_bytes_max, log_mode, created_at, updated_at, client_certificate_sha256)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)",
    )
    .bind(member.member_id.as_str())
    .bind(&member.name)
    .bind(&member.client_id)
    .bind(member.status.as_str())
    .bind(&member.contact)
    .bind(as_i32(member.limits.requests_per_second))
    .bind(as_i32(member.limits.burst))
    .bind(as_i32(member.limits.message_bytes_max))
    .bind(member.log_mode.as_str())
    .bind(member.created_at)
    .bind(member.client_certificate.map(|digest| digest.to_vec()))
    .execute(connection)
    .await?;
    Ok(())
}

pub async fn update_member(connection: &mut PgConnection, member: &Member) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE members SET name = $2, status = $3, contact = $4, requests_per_second = $5, burst = $6,
                            message_bytes_max = $7, log_mode = $8, updated_at = $9, client_certificate_sha256 = $10
         WHERE member_id = $1",
    )
    .bind(member.member_id.as_str())
    .bind(&member.name)
    .bind(member.status.as_str())
    .bind(&member.contact)
    .bind(as_i32(member.limits.requests_per_second))
    .bind(as_i32(member.limits.burst))
    .bind(as_i32(member.limits.message_bytes_max))
    .bind(member.log_mode.as_str())
    .bind(member.updated_at)
    .bind(member.client_certificate.map(|digest| digest.to_vec()))
    .execute(connection)
    .await?;
    Ok(())
}

/// The member, locked for update when `for_update`.
pub async fn member(
    connection: &mut PgConnection,
    member_id: &MemberId,
    for_update: bool,
) -> Result<Option<Member>, sqlx::Error> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let query = format!("SELECT {MEMBER_COLUMNS} FROM members WHERE member_id = $1{lock}");
    sqlx::query(sqlx::AssertSqlSafe(query))
        .bind(member_id.as_str())
        .fetch_optional(connection)
        .await?
        .as_ref()
        .map(member_from_row)
        .transpose()
}

pub async fn member_with_client(
    connection: &mut PgConnection,
    client_id: &str,
) -> Result<Option<MemberId>, sqlx::Error> {
    let found: Option<String> = sqlx::query_scalar("SELECT member_id FROM members WHERE client_id = $1")
        .bind(client_id)
        .fetch_optional(connection)
        .await?;
    Ok(found.and_then(|text| MemberId::parse(&text).ok()))
}

pub async fn members_page(pool: &PgPool, after: Option<&str>, limit: i64) -> Result<Vec<Member>, sqlx::Error> {
    let query = format!(
        "SELECT {MEMBER_COLUMNS} FROM members WHERE $1::text IS NULL OR member_id > $1 ORDER BY member_id LIMIT $2"
    );
    sqlx::query(sqlx::AssertSqlSafe(query))
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(member_from_row)
        .collect()
}

/// Grants a right; `None` when the member already had it.
pub async fn grant(
    connection: &mut PgConnection,
    member_id: &MemberId,
    right: &MethodRight,
    granted_by: &str,
) -> Result<Option<AccessRight>, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO access_rights (member_id, method, granted_by) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING RETURNING member_id, method, granted_at, granted_by",
    )
    .bind(member_id.as_str())
    .bind(right.to_text())
    .bind(granted_by)
    .fetch_optional(connection)
    .await?;
    row.as_ref().map(right_from_row).transpose()
}

/// Revokes a right; whether the member had it.
pub async fn revoke(
    connection: &mut PgConnection,
    member_id: &MemberId,
    right: &MethodRight,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM access_rights WHERE member_id = $1 AND method = $2")
        .bind(member_id.as_str())
        .bind(right.to_text())
        .execute(connection)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

pub async fn rights(connection: &mut PgConnection, member_id: &MemberId) -> Result<Vec<AccessRight>, sqlx::Error> {
    sqlx::query(
        "SELECT member_id, method, granted_at, granted_by FROM access_rights WHERE member_id = $1 ORDER BY method",
    )
    .bind(member_id.as_str())
    .fetch_all(connection)
    .await?
    .iter()
    .map(right_from_row)
    .collect()
}

pub async fn set_entitlements(
    connection: &mut PgConnection,
    member_id: &MemberId,
    event_types: &[EventTypeName],
) -> Result<(), sqlx::Error> {
    // Types kept keep the time they were given.
    let names: Vec<&str> = event_types.iter().map(EventTypeName::as_str).collect();
    sqlx::query("DELETE FROM event_entitlements WHERE member_id = $1 AND event_type <> ALL($2::text[])")
        .bind(member_id.as_str())
        .bind(&names)
        .execute(&mut *connection)
        .await?;
    sqlx::query(
        "INSERT INTO event_entitlements (member_id, event_type) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(member_id.as_str())
    .bind(&names)
    .execute(connection)
    .await?;
    Ok(())
}

pub async fn entitlements(connection: &mut PgConnection, member_id: &MemberId) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT event_type FROM event_entitlements WHERE member_id = $1 ORDER BY event_type")
        .bind(member_id.as_str())
        .fetch_all(connection)
        .await
}

/// One administrative change, with its author.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminChange {
    pub change_id: Uuid,
    pub changed_at: DateTime<Utc>,
    pub changed_by: String,
    pub changed_by_edrpou: String,
    pub action: String,
    pub member_id: String,
    pub details: serde_json::Value,
}

/// Waits for the turn of a record of `table` (a lock held to the end of the
/// transaction), so that records of it take their `position` in the order
/// they commit, and a reader paging by it never passes a record that
/// commits later with a lower one.
pub async fn in_commit_order(connection: &mut PgConnection, table: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('esocial-gateway-commit-order:' || current_schema() || '.' || $1))",
    )
    .bind(table)
    .execute(connection)
    .await?;
    Ok(())
}

/// Records a change in the caller's transaction, which holds the turn of
/// `admin_changes` from here to its end.
pub async fn record_change(connection: &mut PgConnection, change: &AdminChange) -> Result<(), sqlx::Error> {
    in_commit_order(connection, "admin_changes").await?;
    sqlx::query(
        "INSERT INTO admin_changes (change_id, changed_at, changed_by, changed_by_edrpou, action, member_id, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(change.change_id)
    .bind(change.changed_at)
    .bind(&change.changed_by)
    .bind(&change.changed_by_edrpou)
    .bind(&change.action)
    .bind(&change.member_id)
    .bind(sqlx::types::Json(&change.details))
    .execute(connection)
    .await?;
    Ok(())
}

/// The changes in the order they committed, each with its place in it.
pub async fn changes(
    pool: &PgPool,
    member_id: Option<&str>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<(i64, AdminChange)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT position, change_id, changed_at, changed_by, changed_by_edrpou, action, member_id, details
         FROM admin_changes
         WHERE ($1::text IS NULL OR member_id = $1) AND ($2::bigint IS NULL OR position > $2)
         ORDER BY position LIMIT $3",
    )
    .bind(member_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let details: sqlx::types::Json<serde_json::Value> = row.try_get("details")?;
            let change = AdminChange {
                change_id: row.try_get("change_id")?,
                changed_at: row.try_get("changed_at")?,
                changed_by: row.try_get("changed_by")?,
                changed_by_edrpou: row.try_get("changed_by_edrpou")?,
                action: row.try_get("action")?,
                member_id: row.try_get("member_id")?,
                details: details.0,
            };
            Ok((row.try_get("position")?, change))
        })
        .collect()
}

// ---------------------------------------------------------------- subscriptions

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub subscription_id: Uuid,
    pub member_id: MemberId,
    pub event_types: Vec<EventTypeName>,
    pub created_at: DateTime<Utc>,
}

fn subscription_from_row(row: &PgRow) -> Result<Subscription, sqlx::Error> {
    let member_id: String = row.try_get("member_id")?;
    let event_types: Vec<String> = row.try_get("event_types")?;
    Ok(Subscription {
        subscription_id: row.try_get("subscription_id")?,
        member_id: MemberId::parse(&member_id)
            .map_err(|problem| sqlx::Error::ColumnDecode { index: "member_id".to_owned(), source: problem.into() })?,
        event_types: event_types.iter().filter_map(|name| EventTypeName::parse(name).ok()).collect(),
        created_at: row.try_get("created_at")?,
    })
}

/// The member's live subscriptions, counted with the member's row locked
/// until the transaction ends, so that two creations at once cannot both
/// pass a limit.
pub async fn lock_live_subscriptions(connection: &mut PgConnection, member_id: &MemberId) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT 1 FROM members WHERE member_id = $1 FOR UPDATE")
        .bind(member_id.as_str())
        .execute(&mut *connection)
        .await?;
    sqlx::query_scalar("SELECT count(*) FROM subscriptions WHERE member_id = $1 AND deleted_at IS NULL")
        .bind(member_id.as_str())
        .fetch_one(connection)
        .await
}

pub async fn insert_subscription(
    connection: &mut PgConnection,
    subscription: &Subscription,
) -> Result<(), sqlx::Error> {
    let names: Vec<&str> = subscription.event_types.iter().map(EventTypeName::as_str).collect();
    sqlx::query(
        "INSERT INTO subscriptions (subscription_id, member_id, event_types, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(subscription.subscription_id)
    .bind(subscription.member_id.as_str())
    .bind(&names)
    .bind(subscription.created_at)
    .execute(connection)
    .await?;
    Ok(())
}

/// A live (not deleted) subscription.
pub async fn subscription(pool: &PgPool, subscription_id: Uuid) -> Result<Option<Subscription>, sqlx::Error> {
    sqlx::query(
        "SELECT subscription_id, member_id, event_types, created_at FROM subscriptions
         WHERE subscription_id = $1 AND deleted_at IS NULL",
    )
    .bind(subscription_id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(subscription_from_row)
    .transpose()
}

/// Which of `ids` are subscriptions not deleted.
pub async fn live_subscriptions(pool: &PgPool, ids: &[Uuid]) -> Result<std::collections::HashSet<Uuid>, sqlx::Error> {
    let live: Vec<Uuid> = sqlx::query_scalar(
        "SELECT subscription_id FROM subscriptions WHERE subscription_id = ANY($1) AND deleted_at IS NULL",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(live.into_iter().collect())
}

pub async fn subscriptions_of(pool: &PgPool, member_id: &MemberId) -> Result<Vec<Subscription>, sqlx::Error> {
    sqlx::query(
        "SELECT subscription_id, member_id, event_types, created_at FROM subscriptions
         WHERE member_id = $1 AND deleted_at IS NULL ORDER BY subscription_id",
    )
    .bind(member_id.as_str())
    .fetch_all(pool)
    .await?
    .iter()
    .map(subscription_from_row)
    .collect()
}

pub async fn delete_subscription(connection: &mut PgConnection, subscription_id: Uuid) -> Result<bool, sqlx::Error> {
    let updated =
        sqlx::query("UPDATE subscriptions SET deleted_at = now() WHERE subscription_id = $1 AND deleted_at IS NULL")
            .bind(subscription_id)
            .execute(connection)
            .await?;
    Ok(updated.rows_affected() > 0)
}
