//! All of the identity service's SQL.

use chrono::{DateTime, Utc};
use esocial_auth::Role;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{
    Account, AccountStatus, Actor, CertificateRecord, CertificateStatus, Organization, OrganizationKind, SystemClient,
};

/// A stored row that does not map back to the domain.
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

fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> CorruptRow {
    CorruptRow { what, detail: detail.to_string() }
}

fn version(value: i32) -> Result<u32, CorruptRow> {
    u32::try_from(value).map_err(|_| corrupt("version", value))
}

#[derive(sqlx::FromRow)]
struct OrganizationRow {
    id: Uuid,
    edrpou: String,
    name: String,
    kind: String,
    territory: String,
    active: bool,
    version: i32,
}

impl TryFrom<OrganizationRow> for Organization {
    type Error = CorruptRow;

    fn try_from(row: OrganizationRow) -> Result<Self, Self::Error> {
        Ok(Organization {
            id: row.id,
            edrpou: row.edrpou.parse().map_err(|error| corrupt("EDRPOU", error))?,
            name: row.name,
            kind: OrganizationKind::parse(&row.kind).ok_or_else(|| corrupt("organization kind", &row.kind))?,
            territory: row.territory.parse().map_err(|error| corrupt("territory", error))?,
            active: row.active,
            version: version(row.version)?,
        })
    }
}

const ORGANIZATION_COLUMNS: &str = "id, edrpou, name, kind, territory, active, version";

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: Uuid,
    rnokpp: String,
    full_name: String,
    organization_id: Uuid,
    position: String,
    roles: Vec<String>,
    territories: Vec<String>,
    status: String,
    version: i32,
}

impl TryFrom<AccountRow> for Account {
    type Error = CorruptRow;

    fn try_from(row: AccountRow) -> Result<Self, Self::Error> {
        Ok(Account {
            id: row.id,
            rnokpp: row.rnokpp.parse().map_err(|error| corrupt("RNOKPP", error))?,
            full_name: row.full_name,
            organization_id: row.organization_id,
            position: row.position,
            roles: row
                .roles
                .iter()
                .map(|name| Role::parse(name).ok_or_else(|| corrupt("role", name)))
                .collect::<Result<_, _>>()?,
            territories: row
                .territories
                .iter()
                .map(|code| code.parse().map_err(|error| corrupt("territory", error)))
                .collect::<Result<_, _>>()?,
            status: AccountStatus::parse(&row.status).ok_or_else(|| corrupt("account status", &row.status))?,
            version: version(row.version)?,
        })
    }
}

const ACCOUNT_COLUMNS: &str = "id, rnokpp, full_name, organization_id, position, roles, territories, status, version";

#[derive(sqlx::FromRow)]
struct CertificateRow {
    id: Uuid,
    account_id: Uuid,
    fingerprint: String,
    subject: String,
    issuer: String,
    serial_number: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    status: String,
    status_reason: String,
    replaces: Option<Uuid>,
}

impl TryFrom<CertificateRow> for CertificateRecord {
    type Error = CorruptRow;

    fn try_from(row: CertificateRow) -> Result<Self, Self::Error> {
        Ok(CertificateRecord {
            id: row.id,
            account_id: row.account_id,
            fingerprint: row.fingerprint,
            subject: row.subject,
            issuer: row.issuer,
            serial_number: row.serial_number,
            not_before: row.not_before,
            not_after: row.not_after,
            status: CertificateStatus::parse(&row.status).ok_or_else(|| corrupt("certificate status", &row.status))?,
            status_reason: row.status_reason,
            replaces: row.replaces,
        })
    }
}

const CERTIFICATE_COLUMNS: &str = "id, account_id, fingerprint, subject, issuer, serial_number, not_before, not_after, status, status_reason, replaces";

#[derive(sqlx::FromRow)]
struct SystemClientRow {
    client_id: String,
    name: String,
    public_jwk: Json<jsonwebtoken::jwk::Jwk>,
    scopes: Vec<String>,
    active: bool,
    audiences: Vec<String>,
    version: i64,
}

impl TryFrom<SystemClientRow> for SystemClient {
    type Error = CorruptRow;

    fn try_from(row: SystemClientRow) -> Result<Self, Self::Error> {
        Ok(SystemClient {
            client_id: row.client_id,
            name: row.name,
            public_jwk: row.public_jwk.0,
            scopes: row
                .scopes
                .iter()
                .map(|name| Role::parse(name).ok_or_else(|| corrupt("scope", name)))
                .collect::<Result<_, _>>()?,
            active: row.active,
            audiences: row.audiences,
            version: row.version,
        })
    }
}

fn role_names(roles: &[Role]) -> Vec<String> {
    roles.iter().map(|role| role.as_str().to_owned()).collect()
}

/// A session as refresh sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionState {
    pub session_id: Uuid,
    pub account_id: Uuid,
    pub certificate_id: Uuid,
    pub session_expires_at: DateTime<Utc>,
    pub session_revoked: bool,
    pub token_expires_at: DateTime<Utc>,
    pub token_used: bool,
}

/// A refused sign-in as recorded: what was known when it was refused.
#[derive(Debug, Clone, Copy)]
pub struct LoginFailure<'a> {
    pub account_id: Option<Uuid>,
    pub certificate_fingerprint: Option<&'a str>,
    /// The challenge, when it was one this service issued.
    pub challenge_id: Option<Uuid>,
    pub reason: &'static str,
}

/// Reads and writes of the identity schema.
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

    pub async fn audit(
        connection: &mut PgConnection,
        actor: &Actor,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO audit_log (actor, actor_org, action, target, details) VALUES ($1, $2, $3, $4, $5)")
            .bind(&actor.subject)
            .bind(&actor.organization)
            .bind(action)
            .bind(target)
            .bind(Json(details))
            .execute(connection)
            .await?;
        Ok(())
    }

    // ------------------------------------------------------------ organizations

    pub async fn insert_organization(
        connection: &mut PgConnection,
        organization: &Organization,
        actor: &Actor,
    ) -> Result<Organization, StoreError> {
        let row: OrganizationRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO organizations (id, edrpou, name, kind, territory, active, created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, true, $6, $6) RETURNING {ORGANIZATION_COLUMNS}"
        )))
        .bind(organization.id)
        .bind(organization.edrpou.as_str())
        .bind(&organization.name)
        .bind(organization.kind.as_str())
        .bind(organization.territory.as_str())
        .bind(&actor.subject)
        .fetch_one(connection)
        .await?;
        Ok(row.try_into()?)
    }

    /// Updates when `expected_version` is current; `None` when it is not (or
    /// the organization does not exist).
    pub async fn update_organization(
        connection: &mut PgConnection,
        id: Uuid,
        expected_version: u32,
        name: &str,
        territory: &str,
        active: bool,
        actor: &Actor,
    ) -> Result<Option<Organization>, StoreError> {
        let row: Option<OrganizationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE organizations SET name = $3, territory = $4, active = $5, version = version + 1,
                    updated_at = now(), updated_by = $6
             WHERE id = $1 AND version = $2 RETURNING {ORGANIZATION_COLUMNS}"
        )))
        .bind(id)
        .bind(i32::try_from(expected_version).unwrap_or(i32::MAX))
        .bind(name)
        .bind(territory)
        .bind(active)
        .bind(&actor.subject)
        .fetch_optional(connection)
        .await?;
        Ok(row.map(Organization::try_from).transpose()?)
    }

    pub async fn organization(connection: &mut PgConnection, id: Uuid) -> Result<Option<Organization>, StoreError> {
        let row: Option<OrganizationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(connection)
        .await?;
        Ok(row.map(Organization::try_from).transpose()?)
    }

    pub async fn organizations(&self, after: Option<Uuid>, limit: i64) -> Result<Vec<Organization>, StoreError> {
        let rows: Vec<OrganizationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"
        )))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| Organization::try_from(row).map_err(StoreError::from)).collect()
    }

    pub async fn organization_id_by_edrpou(
        connection: &mut PgConnection,
        edrpou: &str,
    ) -> Result<Option<Uuid>, sqlx::Error> {
        sqlx::query_scalar("SELECT id FROM organizations WHERE edrpou = $1")
            .bind(edrpou)
            .fetch_optional(connection)
            .await
    }

    // ----------------------------------------------------------------- accounts

    pub async fn account_id_by_rnokpp(
        connection: &mut PgConnection,
        rnokpp: &str,
    ) -> Result<Option<Uuid>, sqlx::Error> {
        sqlx::query_scalar("SELECT id FROM accounts WHERE rnokpp = $1").bind(rnokpp).fetch_optional(connection).await
    }

    pub async fn insert_account(
        connection: &mut PgConnection,
        account: &Account,
        actor: &Actor,
    ) -> Result<Account, StoreError> {
        let row: AccountRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO accounts (id, rnokpp, full_name, organization_id, position, roles, territories, status, created_by, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {ACCOUNT_COLUMNS}"
        )))
        .bind(account.id)
        .bind(account.rnokpp.as_str())
        .bind(&account.full_name)
        .bind(account.organization_id)
        .bind(&account.position)
        .bind(role_names(&account.roles))
        .bind(account.territories.iter().map(ToString::to_string).collect::<Vec<_>>())
        .bind(account.status.as_str())
        .bind(&actor.subject)
        .fetch_one(connection)
        .await?;
        Ok(row.try_into()?)
    }

    /// Writes every field of `account` when its version is `expected_version`.
    pub async fn update_account(
        connection: &mut PgConnection,
        account: &Account,
        expected_version: u32,
        actor: &Actor,
    ) -> Result<Option<Account>, StoreError> {
        let row: Option<AccountRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE accounts SET full_name = $3, organization_id = $4, position = $5, roles = $6, territories = $7,
                    status = $8, version = version + 1, updated_at = now(), updated_by = $9
             WHERE id = $1 AND version = $2 RETURNING {ACCOUNT_COLUMNS}"
        )))
        .bind(account.id)
        .bind(i32::try_from(expected_version).unwrap_or(i32::MAX))
        .bind(&account.full_name)
        .bind(account.organization_id)
        .bind(&account.position)
        .bind(role_names(&account.roles))
        .bind(account.territories.iter().map(ToString::to_string).collect::<Vec<_>>())
        .bind(account.status.as_str())
        .bind(&actor.subject)
        .fetch_optional(connection)
        .await?;
        Ok(row.map(Account::try_from).transpose()?)
    }

    pub async fn account(connection: &mut PgConnection, id: Uuid) -> Result<Option<Account>, StoreError> {
        let row: Option<AccountRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1")))
                .bind(id)
                .fetch_optional(connection)
                .await?;
        Ok(row.map(Account::try_from).transpose()?)
    }

    pub async fn account_for_update(connection: &mut PgConnection, id: Uuid) -> Result<Option<Account>, StoreError> {
        let row: Option<AccountRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1 FOR UPDATE"
        )))
        .bind(id)
        .fetch_optional(connection)
        .await?;
        Ok(row.map(Account::try_from).transpose()?)
    }

    /// An account, its row share-locked until the transaction ends: a
    /// suspension (which locks it for update) waits, or is waited for.
    pub async fn account_for_share(connection: &mut PgConnection, id: Uuid) -> Result<Option<Account>, StoreError> {
        let row: Option<AccountRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1 FOR SHARE"
        )))
        .bind(id)
        .fetch_optional(connection)
        .await?;
        Ok(row.map(Account::try_from).transpose()?)
    }

    pub async fn accounts(
        &self,
        organization: Option<Uuid>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Account>, StoreError> {
        let rows: Vec<AccountRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts
             WHERE ($1::uuid IS NULL OR organization_id = $1) AND ($2::uuid IS NULL OR id > $2)
             ORDER BY id LIMIT $3"
        )))
        .bind(organization)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| Account::try_from(row).map_err(StoreError::from)).collect()
    }

    // ------------------------------------------------------------- certificates

    #[allow(clippy::too_many_arguments)]
    pub async fn insert_certificate(
        connection: &mut PgConnection,
        id: Uuid,
        account_id: Uuid,
        certificate: &crate::qes::VerifiedCertificate,
        replaces: Option<Uuid>,
        actor: &Actor,
    ) -> Result<CertificateRecord, StoreError> {
        let row: CertificateRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO certificates (id, account_id, fingerprint, subject, issuer, serial_number, not_before, not_after,
                                       der, status, status_changed_by, replaces, registered_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10, $11, $10) RETURNING {CERTIFICATE_COLUMNS}"
        )))
        .bind(id)
        .bind(account_id)
        .bind(&certificate.fingerprint)
        .bind(&certificate.subject)
        .bind(&certificate.issuer)
        .bind(&certificate.serial_number)
        .bind(certificate.not_before)
        .bind(certificate.not_after)
        .bind(&certificate.der)
        .bind(&actor.subject)
        .bind(replaces)
        .fetch_one(connection)
        .await?;
        Ok(row.try_into()?)
    }

    pub async fn certificate(connection: &mut PgConnection, id: Uuid) -> Result<Option<CertificateRecord>, StoreError> {
        let row: Option<CertificateRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(connection)
        .await?;
        Ok(row.map(CertificateRecord::try_from).transpose()?)
    }

    /// A certificate, its row locked for a change of its status.
    pub async fn certificate_for_update(
        connection: &mut PgConnection,
        id: Uuid,
    ) -> Result<Option<CertificateRecord>, StoreError> {
        let row: Option<CertificateRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE id = $1 FOR UPDATE"
        )))
        .bind(id)
        .fetch_optional(connection)
        .await?;
        Ok(row.map(CertificateRecord::try_from).transpose()?)
    }

    /// A certificate, its row share-locked until the transaction ends: a
    /// status change (which locks it for update) waits, or is waited for.
    pub async fn certificate_for_share(
        connection: &mut PgConnection,
        id: Uuid,
    ) -> Result<Option<CertificateRecord>, StoreError> {
        let row: Option<CertificateRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE id = $1 FOR SHARE"
        )))
        .bind(id)
        .fetch_optional(connection)
        .await?;
        Ok(row.map(CertificateRecord::try_from).transpose()?)
    }

    pub async fn certificate_by_fingerprint(
        connection: &mut PgConnection,
        fingerprint: &str,
    ) -> Result<Option<CertificateRecord>, StoreError> {
        let row: Option<CertificateRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE fingerprint = $1"
        )))
        .bind(fingerprint)
        .fetch_optional(connection)
        .await?;
        Ok(row.map(CertificateRecord::try_from).transpose()?)
    }

    pub async fn active_certificate_of(
        connection: &mut PgConnection,
        account_id: Uuid,
    ) -> Result<Option<CertificateRecord>, StoreError> {
        let row: Option<CertificateRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE account_id = $1 AND status = 'active' FOR UPDATE"
        )))
        .bind(account_id)
        .fetch_optional(connection)
        .await?;
        Ok(row.map(CertificateRecord::try_from).transpose()?)
    }

    pub async fn certificates_of(&self, account_id: Uuid) -> Result<Vec<CertificateRecord>, StoreError> {
        let rows: Vec<CertificateRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE account_id = $1 ORDER BY registered_at"
        )))
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| CertificateRecord::try_from(row).map_err(StoreError::from)).collect()
    }

    pub async fn set_certificate_status(
        connection: &mut PgConnection,
        id: Uuid,
        status: CertificateStatus,
        reason: &str,
        actor: &Actor,
    ) -> Result<CertificateRecord, StoreError> {
        let row: CertificateRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE certificates SET status = $2, status_reason = $3, status_changed_at = now(), status_changed_by = $4
             WHERE id = $1 RETURNING {CERTIFICATE_COLUMNS}"
        )))
        .bind(id)
        .bind(status.as_str())
        .bind(reason)
        .bind(&actor.subject)
        .fetch_one(connection)
        .await?;
        Ok(row.try_into()?)
    }

    // --------------------------------------------------------- login and sessions

    pub async fn insert_challenge(&self, id: Uuid, nonce: &[u8], expires_at: DateTime<Utc>) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO login_challenges (id, nonce, expires_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(nonce)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Uses up a challenge: its nonce if it was unused and current, else why not.
    pub async fn consume_challenge(
        connection: &mut PgConnection,
        id: Uuid,
    ) -> Result<Result<Vec<u8>, &'static str>, sqlx::Error> {
        let nonce: Option<Vec<u8>> = sqlx::query_scalar(
            "UPDATE login_challenges SET used_at = now() WHERE id = $1 AND used_at IS NULL AND expires_at > now() RETURNING nonce",
        )
        .bind(id)
        .fetch_optional(&mut *connection)
        .await?;
        if let Some(nonce) = nonce {
            return Ok(Ok(nonce));
        }
        let state: Option<(bool, bool)> =
            sqlx::query_as("SELECT used_at IS NOT NULL, expires_at <= now() FROM login_challenges WHERE id = $1")
                .bind(id)
                .fetch_optional(connection)
                .await?;
        Ok(Err(match state {
            None => "unknown_challenge",
            Some((true, _)) => "challenge_used",
            Some((false, _)) => "challenge_expired",
        }))
    }

    pub async fn record_login_failure(
        connection: &mut PgConnection,
        failure: &LoginFailure<'_>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO login_failures (account_id, certificate_fingerprint, challenge_id, reason)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(failure.account_id)
        .bind(failure.certificate_fingerprint)
        .bind(failure.challenge_id)
        .bind(failure.reason)
        .execute(connection)
        .await?;
        Ok(())
    }

    /// Wrong signatures in the window over challenges this service issued,
    /// with a certificate or for an account; each challenge counts once.
    /// Nothing else counts: a refusal before a signature is checked proves
    /// nothing about who sent it.
    pub async fn recent_wrong_signatures(
        &self,
        account_id: Option<Uuid>,
        certificate_fingerprint: &str,
        window_seconds: i64,
    ) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT count(DISTINCT challenge_id) FROM login_failures
             WHERE reason = 'wrong_signature' AND challenge_id IS NOT NULL
               AND occurred_at > now() - make_interval(secs => $3)
               AND (certificate_fingerprint = $2 OR (account_id IS NOT NULL AND account_id = $1))",
        )
        .bind(account_id)
        .bind(certificate_fingerprint)
        .bind(window_seconds as f64)
        .fetch_one(&self.pool)
        .await
    }

    pub async fn insert_session(
        connection: &mut PgConnection,
        id: Uuid,
        account_id: Uuid,
        certificate_id: Uuid,
        expires_at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO sessions (id, account_id, certificate_id, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(account_id)
            .bind(certificate_id)
            .bind(expires_at)
            .execute(connection)
            .await?;
        Ok(())
    }

    pub async fn insert_refresh_token(
        connection: &mut PgConnection,
        token_hash: &[u8],
        session_id: Uuid,
        expires_at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)")
            .bind(token_hash)
            .bind(session_id)
            .bind(expires_at)
            .execute(connection)
            .await?;
        Ok(())
    }

    /// The refresh token and its session, locked for the exchange.
    pub async fn session_of_refresh_token(
        connection: &mut PgConnection,
        token_hash: &[u8],
    ) -> Result<Option<SessionState>, sqlx::Error> {
        sqlx::query_as(
            "SELECT s.id AS session_id, s.account_id, s.certificate_id, s.expires_at AS session_expires_at,
                    s.revoked_at IS NOT NULL AS session_revoked, t.expires_at AS token_expires_at,
                    t.used_at IS NOT NULL AS token_used
             FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
             WHERE t.token_hash = $1 FOR UPDATE OF t, s",
        )
        .bind(token_hash)
        .fetch_optional(connection)
        .await
    }

    pub async fn mark_refresh_token_used(connection: &mut PgConnection, token_hash: &[u8]) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1")
            .bind(token_hash)
            .execute(connection)
            .await?;
        Ok(())
    }

    /// Ends one session; false when it was already ended or does not exist.
    pub async fn revoke_session(connection: &mut PgConnection, id: Uuid, reason: &str) -> Result<bool, sqlx::Error> {
        Ok(sqlx::query(
            "UPDATE sessions SET revoked_at = now(), revoke_reason = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(reason)
        .execute(connection)
        .await?
        .rows_affected()
            == 1)
    }

    /// The account a session belongs to.
    pub async fn session_account(connection: &mut PgConnection, id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
        sqlx::query_scalar("SELECT account_id FROM sessions WHERE id = $1").bind(id).fetch_optional(connection).await
    }

    /// Whether a session of the account is open: not ended, not expired.
    pub async fn session_is_open(&self, id: Uuid, account_id: Uuid) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sessions
                            WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL AND expires_at > now())",
        )
        .bind(id)
        .bind(account_id)
        .fetch_one(&self.pool)
        .await
    }

    /// Ends every open session of an account; returns the sessions ended
    /// (session id, account id).
    pub async fn revoke_sessions_of_account(
        connection: &mut PgConnection,
        account_id: Uuid,
        reason: &str,
    ) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
        sqlx::query_as(
            "UPDATE sessions SET revoked_at = now(), revoke_reason = $2 WHERE account_id = $1 AND revoked_at IS NULL
             RETURNING id, account_id",
        )
        .bind(account_id)
        .bind(reason)
        .fetch_all(connection)
        .await
    }

    /// Ends every open session signed in with a certificate; returns the
    /// sessions ended (session id, account id).
    pub async fn revoke_sessions_of_certificate(
        connection: &mut PgConnection,
        certificate_id: Uuid,
        reason: &str,
    ) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
        sqlx::query_as(
            "UPDATE sessions SET revoked_at = now(), revoke_reason = $2 WHERE certificate_id = $1 AND revoked_at IS NULL
             RETURNING id, account_id",
        )
        .bind(certificate_id)
        .bind(reason)
        .fetch_all(connection)
        .await
    }

    // ----------------------------------------------------------- system clients

    pub async fn insert_system_client(
        connection: &mut PgConnection,
        client: &SystemClient,
        actor: &Actor,
    ) -> Result<SystemClient, StoreError> {
        let row: SystemClientRow = sqlx::query_as(
            "INSERT INTO system_clients (client_id, name, public_jwk, scopes, active, created_by, updated_by, audiences)
             VALUES ($1, $2, $3, $4, true, $5, $5, $6) RETURNING client_id, name, public_jwk, scopes, active, audiences, version",
        )
        .bind(&client.client_id)
        .bind(&client.name)
        .bind(Json(&client.public_jwk))
        .bind(role_names(&client.scopes))
        .bind(&actor.subject)
        .bind(&client.audiences)
        .fetch_one(connection)
        .await?;
        Ok(row.try_into()?)
    }

    /// The system clients after `after` in the order of their ids, at most `limit`.
    pub async fn system_clients(&self, after: Option<&str>, limit: i64) -> Result<Vec<SystemClient>, StoreError> {
        let rows: Vec<SystemClientRow> = sqlx::query_as(
            "SELECT client_id, name, public_jwk, scopes, active, audiences, version FROM system_clients
             WHERE ($1::text IS NULL OR client_id > $1) ORDER BY client_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| SystemClient::try_from(row).map_err(StoreError::from)).collect()
    }

    pub async fn system_client(
        connection: &mut PgConnection,
        client_id: &str,
    ) -> Result<Option<SystemClient>, StoreError> {
        let row: Option<SystemClientRow> = sqlx::query_as(
            "SELECT client_id, name, public_jwk, scopes, active, audiences, version FROM system_clients WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(connection)
        .await?;
        Ok(row.map(SystemClient::try_from).transpose()?)
    }

    pub async fn update_system_client(
        connection: &mut PgConnection,
        client_id: &str,
        public_jwk: Option<&jsonwebtoken::jwk::Jwk>,
        active: Option<bool>,
        actor: &Actor,
    ) -> Result<Option<SystemClient>, StoreError> {
        let row: Option<SystemClientRow> = sqlx::query_as(
            "UPDATE system_clients SET public_jwk = COALESCE($2, public_jwk), active = COALESCE($3, active),
                    updated_at = now(), updated_by = $4, version = version + 1
             WHERE client_id = $1 RETURNING client_id, name, public_jwk, scopes, active, audiences, version",
        )
        .bind(client_id)
        .bind(public_jwk.map(Json))
        .bind(active)
        .bind(&actor.subject)
        .fetch_optional(connection)
        .await?;
        Ok(row.map(SystemClient::try_from).transpose()?)
    }

    /// Records a client assertion's id; false when it was seen before.
    pub async fn remember_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        Ok(sqlx::query(
            "INSERT INTO client_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(client_id)
        .bind(jti)
        .bind(expires_at)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Deletes expired challenges, assertion ids and refresh tokens of ended
    /// sessions; returns how many rows went.
    pub async fn purge_expired(&self) -> Result<u64, sqlx::Error> {
        let mut removed = 0;
        for statement in [
            "DELETE FROM login_challenges WHERE expires_at < now() - interval '1 hour'",
            "DELETE FROM client_assertions WHERE expires_at < now() - interval '1 hour'",
            "DELETE FROM refresh_tokens WHERE expires_at < now() - interval '1 day'",
        ] {
            removed += sqlx::query(statement).execute(&self.pool).await?.rows_affected();
        }
        Ok(removed)
    }
}
