//! Administration of the catalogue. Every function runs on the caller's
//! transaction (so a change, its event, its audit record and the idempotency
//! record commit together) and is called only after authorization.

use esocial_auth::Role;
use esocial_identifiers::{Edrpou, Katottg, Rnokpp};
use esocial_kit::ApiError;
use esocial_proto::identity::v1 as pb;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::convert::{account_to_proto, actor_to_proto, certificate_to_proto, client_to_proto, organization_to_proto};
use crate::domain::{
    Account, AccountStatus, Actor, CertificateRecord, CertificateStatus, Organization, OrganizationKind, SystemClient,
};
use crate::events;
use crate::qes;
use crate::service::{Error, Identity};
use crate::store::Store;

/// The editable fields of an account.
#[derive(Debug, Clone)]
pub struct AccountFields {
    pub full_name: String,
    pub organization_id: Uuid,
    pub position: String,
    pub territories: Vec<Katottg>,
}

fn stale(what: &str) -> Error {
    ApiError::Aborted(format!("{what} was changed meanwhile: re-read it and retry")).into()
}

async fn active_organization(connection: &mut PgConnection, id: Uuid) -> Result<Organization, Error> {
    match Store::organization(connection, id).await? {
        Some(organization) if organization.active => Ok(organization),
        Some(_) => Err(ApiError::FailedPrecondition(format!("organization {id} is not active")).into()),
        None => Err(ApiError::FailedPrecondition(format!("organization {id} does not exist")).into()),
    }
}

/// Nobody changes their own account or its certificates: not its roles,
/// status, organization or territories, and not the certificates it signs in
/// with. Another security administrator must.
fn refuse_own_account(actor: &Actor, account_id: Uuid) -> Result<(), Error> {
    if actor.subject == account_id.to_string() {
        return Err(ApiError::PermissionDenied(
            "an administrator cannot change their own account or its certificates; another security administrator must"
                .to_owned(),
        )
        .into());
    }
    Ok(())
}

async fn existing_account(connection: &mut PgConnection, id: Uuid) -> Result<Account, Error> {
    Store::account_for_update(connection, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("account {id} does not exist")).into())
}

async fn account_event(
    connection: &mut PgConnection,
    event: &esocial_events::EventType,
    account: &Account,
    actor: &Actor,
    change: &str,
    reason: &str,
) -> Result<(), Error> {
    let payload = pb::AccountChanged {
        account: Some(account_to_proto(account)),
        changed_by: Some(actor_to_proto(actor)),
        change: change.to_owned(),
        reason: reason.to_owned(),
    };
    esocial_events::outbox::enqueue(connection, event, Some(&account.id.to_string()), &payload).await?;
    Store::audit(
        connection,
        actor,
        &format!("account.{change}"),
        &account.id.to_string(),
        serde_json::json!({ "reason": reason }),
    )
    .await?;
    Ok(())
}

async fn certificate_event(
    connection: &mut PgConnection,
    event: &esocial_events::EventType,
    certificate: &CertificateRecord,
    actor: &Actor,
    change: &str,
) -> Result<(), Error> {
    let payload = pb::CertificateChanged {
        certificate: Some(certificate_to_proto(certificate)),
        changed_by: Some(actor_to_proto(actor)),
        change: change.to_owned(),
    };
    esocial_events::outbox::enqueue(connection, event, Some(&certificate.account_id.to_string()), &payload).await?;
    let details = serde_json::json!({ "status": certificate.status.as_str(), "reason": certificate.status_reason });
    Store::audit(connection, actor, &format!("certificate.{change}"), &certificate.id.to_string(), details).await?;
    Ok(())
}

async fn client_event(
    connection: &mut PgConnection,
    event: &esocial_events::EventType,
    client: &SystemClient,
    actor: &Actor,
    change: &str,
) -> Result<(), Error> {
    let payload = pb::SystemClientChanged {
        client: Some(client_to_proto(client)),
        changed_by: Some(actor_to_proto(actor)),
        change: change.to_owned(),
    };
    esocial_events::outbox::enqueue(connection, event, Some(&client.client_id), &payload).await?;
    Store::audit(connection, actor, &format!("system_client.{change}"), &client.client_id, serde_json::json!({}))
        .await?;
    Ok(())
}

impl Identity {
    pub async fn create_organization(
        connection: &mut PgConnection,
        actor: &Actor,
        edrpou: Edrpou,
        name: String,
        kind: OrganizationKind,
        territory: Katottg,
    ) -> Result<Organization, Error> {
        let organization = Organization { id: Uuid::now_v7(), edrpou, name, kind, territory, active: true, version: 1 };
        let created = Store::insert_organization(connection, &organization, actor).await?;
        let payload = pb::OrganizationChanged {
            organization: Some(organization_to_proto(&created)),
            changed_by: Some(actor_to_proto(actor)),
            change: "created".to_owned(),
        };
        esocial_events::outbox::enqueue(
            connection,
            &events::ORGANIZATION_CREATED,
            Some(&created.id.to_string()),
            &payload,
        )
        .await?;
        Store::audit(connection, actor, "organization.created", &created.id.to_string(), serde_json::json!({})).await?;
        Ok(created)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn update_organization(
        connection: &mut PgConnection,
        actor: &Actor,
        id: Uuid,
        expected_version: u32,
        name: &str,
        territory: &Katottg,
        active: bool,
    ) -> Result<Organization, Error> {
        if Store::organization(connection, id).await?.is_none() {
            return Err(ApiError::NotFound(format!("organization {id} does not exist")).into());
        }
        let updated =
            Store::update_organization(connection, id, expected_version, name, territory.as_str(), active, actor)
                .await?
                .ok_or_else(|| stale("the organization"))?;
        let payload = pb::OrganizationChanged {
            organization: Some(organization_to_proto(&updated)),
            changed_by: Some(actor_to_proto(actor)),
            change: "updated".to_owned(),
        };
        esocial_events::outbox::enqueue(connection, &events::ORGANIZATION_UPDATED, Some(&id.to_string()), &payload)
            .await?;
        Store::audit(
            connection,
            actor,
            "organization.updated",
            &id.to_string(),
            serde_json::json!({ "active": active }),
        )
        .await?;
        Ok(updated)
    }

    pub async fn create_account(
        connection: &mut PgConnection,
        actor: &Actor,
        rnokpp: Rnokpp,
        fields: AccountFields,
    ) -> Result<Account, Error> {
        active_organization(connection, fields.organization_id).await?;
        let account = Account {
            id: Uuid::now_v7(),
            rnokpp,
            full_name: fields.full_name,
            organization_id: fields.organization_id,
            position: fields.position,
            roles: Vec::new(),
            territories: fields.territories,
            status: AccountStatus::Active,
            version: 1,
        };
        let created = Store::insert_account(connection, &account, actor).await?;
        account_event(connection, &events::ACCOUNT_CREATED, &created, actor, "created", "").await?;
        Ok(created)
    }

    pub async fn update_account(
        connection: &mut PgConnection,
        actor: &Actor,
        id: Uuid,
        expected_version: u32,
        fields: AccountFields,
    ) -> Result<Account, Error> {
        refuse_own_account(actor, id)?;
        let current = existing_account(connection, id).await?;
        if current.organization_id != fields.organization_id {
            active_organization(connection, fields.organization_id).await?;
        }
        let changed = Account {
            full_name: fields.full_name,
            organization_id: fields.organization_id,
            position: fields.position,
            territories: fields.territories,
            ..current
        };
        let updated = Store::update_account(connection, &changed, expected_version, actor)
            .await?
            .ok_or_else(|| stale("the account"))?;
        account_event(connection, &events::ACCOUNT_UPDATED, &updated, actor, "updated", "").await?;
        Ok(updated)
    }

    /// Suspension ends every session of the account at once.
    pub async fn set_account_status(
        connection: &mut PgConnection,
        actor: &Actor,
        id: Uuid,
        status: AccountStatus,
        reason: &str,
    ) -> Result<(Account, u64), Error> {
        refuse_own_account(actor, id)?;
        let current = existing_account(connection, id).await?;
        let version = current.version;
        let updated = Store::update_account(connection, &Account { status, ..current }, version, actor)
            .await?
            .ok_or_else(|| stale("the account"))?;
        let ended = if status == AccountStatus::Suspended {
            let reason = "account suspended";
            let ended = Store::revoke_sessions_of_account(connection, id, reason).await?;
            Identity::sessions_ended(connection, &ended, reason).await?;
            ended.len()
        } else {
            0
        };
        account_event(connection, &events::ACCOUNT_STATUS_CHANGED, &updated, actor, "status_changed", reason).await?;
        Ok((updated, u64::try_from(ended).unwrap_or(u64::MAX)))
    }

    /// Replaces an account's roles. Nobody changes their own roles.
    pub async fn assign_roles(
        connection: &mut PgConnection,
        actor: &Actor,
        account_id: Uuid,
        roles: Vec<Role>,
    ) -> Result<Account, Error> {
        refuse_own_account(actor, account_id)?;
        let current = existing_account(connection, account_id).await?;
        let version = current.version;
        let updated = Store::update_account(connection, &Account { roles, ..current }, version, actor)
            .await?
            .ok_or_else(|| stale("the account"))?;
        account_event(connection, &events::ACCOUNT_ROLES_ASSIGNED, &updated, actor, "roles_assigned", "").await?;
        Ok(updated)
    }

    /// Binds a certificate that chains to a trusted CA and names the
    /// account's holder; an active certificate of the account is superseded.
    pub async fn register_certificate(
        &self,
        connection: &mut PgConnection,
        actor: &Actor,
        account_id: Uuid,
        der: Vec<u8>,
    ) -> Result<(CertificateRecord, Option<CertificateRecord>), Error> {
        refuse_own_account(actor, account_id)?;
        let account = existing_account(connection, account_id).await?;
        let certificate = qes::verify_chain(&[der], &self.trusted, chrono::Utc::now())
            .map_err(|problem| ApiError::invalid_field("certificate", problem.to_string()))?;
        if certificate.rnokpp != account.rnokpp {
            return Err(
                ApiError::invalid_field("certificate", "its subject's RNOKPP is not the account holder's").into()
            );
        }
        let superseded = match Store::active_certificate_of(connection, account_id).await? {
            Some(previous) => {
                let superseded = Store::set_certificate_status(
                    connection,
                    previous.id,
                    CertificateStatus::Revoked,
                    "superseded by renewal",
                    actor,
                )
                .await?;
                let reason = "certificate superseded";
                let ended = Store::revoke_sessions_of_certificate(connection, previous.id, reason).await?;
                Identity::sessions_ended(connection, &ended, reason).await?;
                certificate_event(connection, &events::CERTIFICATE_SUPERSEDED, &superseded, actor, "superseded")
                    .await?;
                Some(superseded)
            }
            None => None,
        };
        let registered = Store::insert_certificate(
            connection,
            Uuid::now_v7(),
            account_id,
            &certificate,
            superseded.as_ref().map(|previous| previous.id),
            actor,
        )
        .await?;
        certificate_event(connection, &events::CERTIFICATE_REGISTERED, &registered, actor, "registered").await?;
        Ok((registered, superseded))
    }

    /// Blocks, unblocks or revokes. Blocking and revoking end the
    /// certificate's sessions; revocation is final.
    pub async fn set_certificate_status(
        connection: &mut PgConnection,
        actor: &Actor,
        id: Uuid,
        status: CertificateStatus,
        reason: &str,
    ) -> Result<(CertificateRecord, u64), Error> {
        let current = Store::certificate_for_update(connection, id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("certificate {id} does not exist")))?;
        refuse_own_account(actor, current.account_id)?;
        if current.status == CertificateStatus::Revoked {
            return Err(
                ApiError::FailedPrecondition("the certificate is revoked; revocation is final".to_owned()).into()
            );
        }
        if current.status == status {
            return Ok((current, 0));
        }
        if status == CertificateStatus::Active
            && Store::active_certificate_of(connection, current.account_id).await?.is_some()
        {
            return Err(ApiError::FailedPrecondition("the account has another active certificate".to_owned()).into());
        }
        let changed = Store::set_certificate_status(connection, id, status, reason, actor).await?;
        let ended = if status == CertificateStatus::Active {
            0
        } else {
            let reason = format!("certificate {}", status.as_str());
            let ended = Store::revoke_sessions_of_certificate(connection, id, &reason).await?;
            Identity::sessions_ended(connection, &ended, &reason).await?;
            ended.len()
        };
        certificate_event(connection, &events::CERTIFICATE_STATUS_CHANGED, &changed, actor, "status_changed").await?;
        Ok((changed, u64::try_from(ended).unwrap_or(u64::MAX)))
    }

    pub async fn register_system_client(
        connection: &mut PgConnection,
        actor: &Actor,
        client: SystemClient,
    ) -> Result<SystemClient, Error> {
        let registered = Store::insert_system_client(connection, &client, actor).await?;
        client_event(connection, &events::SYSTEM_CLIENT_REGISTERED, &registered, actor, "registered").await?;
        Ok(registered)
    }

    pub async fn rotate_system_client_key(
        connection: &mut PgConnection,
        actor: &Actor,
        client_id: &str,
        public_jwk: &jsonwebtoken::jwk::Jwk,
    ) -> Result<SystemClient, Error> {
        let updated = Store::update_system_client(connection, client_id, Some(public_jwk), None, actor)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("system client {client_id} does not exist")))?;
        client_event(connection, &events::SYSTEM_CLIENT_KEY_ROTATED, &updated, actor, "key_rotated").await?;
        Ok(updated)
    }

    pub async fn set_system_client_status(
        connection: &mut PgConnection,
        actor: &Actor,
        client_id: &str,
        active: bool,
    ) -> Result<SystemClient, Error> {
        let updated = Store::update_system_client(connection, client_id, None, Some(active), actor)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("system client {client_id} does not exist")))?;
        client_event(connection, &events::SYSTEM_CLIENT_STATUS_CHANGED, &updated, actor, "status_changed").await?;
        Ok(updated)
    }

    pub async fn rotate_signing_key(
        &self,
        connection: &mut PgConnection,
        actor: &Actor,
    ) -> Result<pb::RotateSigningKeyResponse, Error> {
        let (new_key_id, retired_key_id, publish_until) = self.keys.rotate(connection).await?;
        let payload = pb::SigningKeyRotated {
            new_key_id: new_key_id.clone(),
            retired_key_id: retired_key_id.clone(),
            changed_by: Some(actor_to_proto(actor)),
        };
        esocial_events::outbox::enqueue(connection, &events::SIGNING_KEY_ROTATED, Some(&new_key_id), &payload).await?;
        Store::audit(
            connection,
            actor,
            "signing_key.rotated",
            &new_key_id,
            serde_json::json!({ "retired": retired_key_id }),
        )
        .await?;
        Ok(pb::RotateSigningKeyResponse {
            new_key_id,
            retired_key_id,
            retired_key_published_until: publish_until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    }

    /// Reads an account, recording who read it and why.
    pub async fn read_account(&self, actor: &Actor, id: Uuid, purpose: &str) -> Result<Account, Error> {
        let mut transaction = self.store.pool().begin().await?;
        let account = Store::account(&mut transaction, id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("account {id} does not exist")))?;
        Store::audit(
            &mut transaction,
            actor,
            "account.read",
            &id.to_string(),
            serde_json::json!({ "purpose": purpose }),
        )
        .await?;
        transaction.commit().await?;
        Ok(account)
    }

    /// Lists an account's certificates (their subjects name the holder and
    /// carry their RNOKPP), recording who read them.
    pub async fn read_certificates(
        &self,
        actor: &Actor,
        account_id: Uuid,
        purpose: &str,
    ) -> Result<Vec<CertificateRecord>, Error> {
        let certificates = self.store.certificates_of(account_id).await?;
        let mut transaction = self.store.pool().begin().await?;
        let ids: Vec<String> = certificates.iter().map(|certificate| certificate.id.to_string()).collect();
        Store::audit(
            &mut transaction,
            actor,
            "account.certificates_read",
            &account_id.to_string(),
            serde_json::json!({ "certificates": ids, "purpose": purpose }),
        )
        .await?;
        transaction.commit().await?;
        Ok(certificates)
    }

    /// Lists accounts, recording each one read and why.
    pub async fn read_accounts(
        &self,
        actor: &Actor,
        organization: Option<Uuid>,
        after: Option<Uuid>,
        limit: i64,
        purpose: &str,
    ) -> Result<Vec<Account>, Error> {
        let accounts = self.store.accounts(organization, after, limit).await?;
        let mut transaction = self.store.pool().begin().await?;
        for account in &accounts {
            Store::audit(
                &mut transaction,
                actor,
                "account.read",
                &account.id.to_string(),
                serde_json::json!({ "purpose": purpose, "via": "list" }),
            )
            .await?;
        }
        transaction.commit().await?;
        Ok(accounts)
    }
}

/// The first security administrator of a new deployment (every admin method
/// needs one): the organization if missing, the account with the
/// `security_admin` role, and their certificate. Refuses if the account
/// exists.
pub async fn bootstrap_security_admin(
    identity: &Identity,
    organization: (Edrpou, String, Katottg),
    rnokpp: Rnokpp,
    full_name: String,
    certificate_der: Vec<u8>,
) -> Result<Account, Error> {
    let actor = Actor { subject: "esocial-bootstrap".to_owned(), organization: None };
    let mut transaction = identity.store.pool().begin().await?;
    if Store::account_id_by_rnokpp(&mut transaction, rnokpp.as_str()).await?.is_some() {
        return Err(ApiError::AlreadyExists("an account with this RNOKPP exists".to_owned()).into());
    }
    let (edrpou, name, territory) = organization;
    let organization_id = match Store::organization_id_by_edrpou(&mut transaction, edrpou.as_str()).await? {
        Some(id) => id,
        None => {
            Identity::create_organization(
                &mut transaction,
                &actor,
                edrpou,
                name,
                OrganizationKind::MinistryUnit,
                territory,
            )
            .await?
            .id
        }
    };
    let fields = AccountFields {
        full_name,
        organization_id,
        position: "security administrator".to_owned(),
        territories: Vec::new(),
    };
    let account = Identity::create_account(&mut transaction, &actor, rnokpp, fields).await?;
    let account = Identity::assign_roles(&mut transaction, &actor, account.id, vec![Role::SecurityAdmin]).await?;
    identity.register_certificate(&mut transaction, &actor, account.id, certificate_der).await?;
    transaction.commit().await?;
    Ok(account)
}
