//! Internally displaced persons: the registration record, the e-certificate
//! with its unique electronic identifier (a numeric code, the same code as a
//! QR code and as a Code 128 barcode), public verification showing the
//! minimum, and sharing a signed copy with an organization that the person
//! approved (the Diia.QR scenario).

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use esocial_auth::Caller;
use esocial_identifiers::{CertificateCode, Edrpou};
use esocial_kit::ApiError;
use esocial_proto::registry::v1 as pb;
use rand::Rng as _;
use serde::Serialize;
use sha2::Digest as _;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

use crate::access::{actor, require_territory};
use crate::convert::actor_to_proto;
use crate::domain::{Actor, Person};
use crate::events;
use crate::service::{Error, Registry};
use crate::store::{Found, Identifier, Store};

/// The documents a share may ask for.
pub const SHAREABLE_DOCUMENTS: &[&str] = &["idp_certificate"];

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Registration {
    pub id: Uuid,
    pub person_id: Uuid,
    pub family_member_ids: Vec<Uuid>,
    pub origin_territory: String,
    pub current_territory: String,
    pub current_address: String,
    pub registered_on: NaiveDate,
    pub registered_by: String,
    pub status: String,
    pub deregistration_reason: Option<String>,
    pub deregistered_on: Option<NaiveDate>,
}

const REGISTRATION_COLUMNS: &str =
    "id, person_id, family_member_ids, origin_territory, current_territory, current_address,
     registered_on, registered_by, status, deregistration_reason, deregistered_on";

pub fn registration_to_proto(registration: &Registration) -> pb::IdpRegistration {
    pb::IdpRegistration {
        id: registration.id.to_string(),
        person_id: registration.person_id.to_string(),
        family_member_ids: registration.family_member_ids.iter().map(ToString::to_string).collect(),
        origin_territory: registration.origin_territory.clone(),
        current_territory: registration.current_territory.clone(),
        current_address: registration.current_address.clone(),
        registered_on: Some(esocial_kit::dates::to_proto(registration.registered_on)),
        registered_by: registration.registered_by.clone(),
        status: if registration.status == "registered" {
            pb::IdpStatus::Registered
        } else {
            pb::IdpStatus::Deregistered
        }
        .into(),
        deregistration_reason: registration.deregistration_reason.clone().unwrap_or_default(),
        deregistered_on: registration.deregistered_on.map(esocial_kit::dates::to_proto),
    }
}

/// What registering needs, validated by the handler.
#[derive(Debug, Clone)]
pub struct NewRegistration {
    pub person_id: Uuid,
    pub family_member_ids: Vec<Uuid>,
    pub origin_territory: String,
    pub current_territory: String,
    pub current_address: String,
    pub registered_on: NaiveDate,
    pub registered_by: Edrpou,
}

async fn idp_event(
    connection: &mut PgConnection,
    event: &esocial_events::EventType,
    registration: &Registration,
    actor: &Actor,
) -> Result<(), Error> {
    let payload = pb::IdpChanged {
        registration: Some(registration_to_proto(registration)),
        changed_by: Some(actor_to_proto(actor)),
    };
    esocial_events::outbox::enqueue(connection, event, Some(&registration.person_id.to_string()), &payload).await?;
    Ok(())
}

/// An active person, or NOT_FOUND / FAILED_PRECONDITION naming `field`.
async fn active_person(connection: &mut PgConnection, id: Uuid, field: &str) -> Result<Person, Error> {
    match Store::find(connection, Identifier::Id(id)).await? {
        Some(Found::Active(person)) => Ok(person),
        Some(Found::Redirected { person, .. }) => Err(ApiError::FailedPrecondition(format!(
            "{field}: person {id} was merged into {}; use that record",
            person.id
        ))
        .into()),
        None => Err(ApiError::NotFound(format!("{field}: person {id} is not in the register")).into()),
    }
}

/// A certificate as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Certificate {
    pub id: Uuid,
    pub number: String,
    pub registration_id: Uuid,
    pub issued_on: NaiveDate,
    pub numeric_code: String,
    pub content: Json<CertificateContent>,
    pub state: String,
    pub state_reason: String,
}

const CERTIFICATE_COLUMNS: &str = "id, number, registration_id, issued_on, numeric_code, content, state, state_reason";

/// What a certificate certifies: the registration and the holder as of issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CertificateContent {
    pub number: String,
    pub issued_on: NaiveDate,
    pub registration_id: Uuid,
    pub person_id: Uuid,
    pub full_name: String,
    pub latin_name: String,
    pub birth_date: NaiveDate,
    pub rnokpp: Option<String>,
    pub origin_territory: String,
    pub current_territory: String,
    pub current_address: String,
    pub registered_on: NaiveDate,
    pub registered_by: String,
    pub family_member_ids: Vec<Uuid>,
}

fn state_to_proto(state: &str) -> pb::CertificateState {
    match state {
        "valid" => pb::CertificateState::Valid,
        "revoked" => pb::CertificateState::Revoked,
        "superseded" => pb::CertificateState::Superseded,
        _ => pb::CertificateState::Unspecified,
    }
}

/// The certificate with its identifier drawn as a QR code and a barcode.
pub fn certificate_to_proto(certificate: &Certificate) -> Result<pb::IdpCertificate, Error> {
    let render = |error: esocial_render::RenderError| {
        Error::from(ApiError::internal(anyhow::anyhow!("rendering the certificate code: {error}")))
    };
    let code = &certificate.numeric_code;
    Ok(pb::IdpCertificate {
        id: certificate.id.to_string(),
        number: certificate.number.clone(),
        registration_id: certificate.registration_id.to_string(),
        issued_on: Some(esocial_kit::dates::to_proto(certificate.issued_on)),
        numeric_code: code.clone(),
        qr_svg: esocial_render::qr_svg(code).map_err(render)?,
        qr_png: esocial_render::qr_png(code, 8).map_err(render)?,
        barcode_svg: esocial_render::code128_svg(code).map_err(render)?,
        state: state_to_proto(&certificate.state).into(),
        content_json: serde_json::to_string(&certificate.content.0).map_err(ApiError::internal)?,
    })
}

async fn certificate_event(
    connection: &mut PgConnection,
    event: &esocial_events::EventType,
    certificate: &Certificate,
    person_id: Uuid,
    actor: &Actor,
) -> Result<(), Error> {
    let payload = pb::IdpCertificateChanged {
        certificate_id: certificate.id.to_string(),
        number: certificate.number.clone(),
        registration_id: certificate.registration_id.to_string(),
        state: state_to_proto(&certificate.state).into(),
        changed_by: Some(actor_to_proto(actor)),
    };
    esocial_events::outbox::enqueue(connection, event, Some(&person_id.to_string()), &payload).await?;
    Ok(())
}

/// A person's initials and last name's first letter, the most a public
/// verification shows: `Т. Г. Ш.`
fn initials(full_name: &str) -> String {
    full_name
        .split_whitespace()
        .filter_map(|part| part.chars().next())
        .map(|letter| format!("{letter}."))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The outcome of checking a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub valid: bool,
    /// `revoked`, `superseded`, `unknown`, `malformed`, `deregistered`; empty when valid.
    pub reason: &'static str,
    pub number: String,
    pub issued_on: Option<NaiveDate>,
    pub holder_initials: String,
}

/// A share request as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Share {
    pub id: Uuid,
    pub person_id: Uuid,
    pub organization_client_id: String,
    pub organization_edrpou: Option<String>,
    pub documents: Vec<String>,
    pub purpose: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

const SHARE_COLUMNS: &str = "id, person_id, organization_client_id, organization_edrpou, documents, purpose, status, created_at, decided_at, delivered_at";

pub fn share_to_proto(share: &Share) -> pb::ShareRequest {
    let time =
        |at: Option<DateTime<Utc>>| at.map(|at| at.to_rfc3339_opts(SecondsFormat::Millis, true)).unwrap_or_default();
    pb::ShareRequest {
        id: share.id.to_string(),
        person_id: share.person_id.to_string(),
        organization_client_id: share.organization_client_id.clone(),
        organization_edrpou: share.organization_edrpou.clone().unwrap_or_default(),
        documents: share.documents.clone(),
        purpose: share.purpose.clone(),
        status: match share.status.as_str() {
            "pending" => pb::ShareStatus::Pending,
            "approved" => pb::ShareStatus::Approved,
            "refused" => pb::ShareStatus::Refused,
            "delivered" => pb::ShareStatus::Delivered,
            _ => pb::ShareStatus::Unspecified,
        }
        .into(),
        created_at: time(Some(share.created_at)),
        decided_at: time(share.decided_at),
        delivered_at: time(share.delivered_at),
    }
}

/// A copy delivered to an organization.
#[derive(Debug, Clone)]
pub struct SharedCopy {
    pub share: Share,
    pub pdf: Vec<u8>,
    pub detached_signature: String,
}

impl Registry {
    pub async fn register_idp(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        new: NewRegistration,
    ) -> Result<Registration, Error> {
        require_territory(&self.territories, caller, &new.current_territory).await?;
        let person = active_person(connection, new.person_id, "person_id").await?;
        for (index, member) in new.family_member_ids.iter().enumerate() {
            active_person(connection, *member, &format!("family_member_ids[{index}]")).await?;
        }
        let open: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM idp_registrations WHERE person_id = $1 AND status = 'registered'")
                .bind(person.id)
                .fetch_optional(&mut *connection)
                .await?;
        if let Some(open) = open {
            return Err(ApiError::AlreadyExistsAs {
                message: format!("the person is already registered as internally displaced: {open}"),
                reason: "IDP_ALREADY_REGISTERED",
                metadata: vec![("existing_registration_id", open.to_string())],
            }
            .into());
        }
        let actor = actor(caller);
        let query = format!(
            "INSERT INTO idp_registrations (id, person_id, family_member_ids, origin_territory, current_territory, current_address,
                                            registered_on, registered_by, status, recorded_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'registered', $9) RETURNING {REGISTRATION_COLUMNS}"
        );
        let registration: Registration = sqlx::query_as(AssertSqlSafe(query))
            .bind(Uuid::now_v7())
            .bind(person.id)
            .bind(&new.family_member_ids)
            .bind(&new.origin_territory)
            .bind(&new.current_territory)
            .bind(&new.current_address)
            .bind(new.registered_on)
            .bind(new.registered_by.as_str())
            .bind(&actor.subject)
            .fetch_one(&mut *connection)
            .await?;
        idp_event(connection, &events::IDP_REGISTERED, &registration, &actor).await?;
        Ok(registration)
    }

    async fn registration_locked(connection: &mut PgConnection, id: Uuid) -> Result<Registration, Error> {
        let query = format!("SELECT {REGISTRATION_COLUMNS} FROM idp_registrations WHERE id = $1 FOR UPDATE");
        sqlx::query_as(AssertSqlSafe(query))
            .bind(id)
            .fetch_optional(connection)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("IDP registration {id} does not exist")).into())
    }

    /// Ends a registration; its valid certificate is revoked with it.
    pub async fn deregister_idp(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        id: Uuid,
        reason: &str,
        on: NaiveDate,
    ) -> Result<Registration, Error> {
        let registration = Self::registration_locked(connection, id).await?;
        require_territory(&self.territories, caller, &registration.current_territory).await?;
        if registration.status != "registered" {
            return Err(ApiError::FailedPrecondition(format!("IDP registration {id} is already ended")).into());
        }
        if on < registration.registered_on {
            return Err(ApiError::invalid_field(
                "deregistered_on",
                format!("must not be before the registration on {}", registration.registered_on),
            )
            .into());
        }
        let actor = actor(caller);
        let query = format!(
            "UPDATE idp_registrations SET status = 'deregistered', deregistration_reason = $2, deregistered_on = $3
             WHERE id = $1 RETURNING {REGISTRATION_COLUMNS}"
        );
        let registration: Registration =
            sqlx::query_as(AssertSqlSafe(query)).bind(id).bind(reason).bind(on).fetch_one(&mut *connection).await?;
        let query = format!(
            "UPDATE idp_certificates SET state = 'revoked', state_reason = 'the registration ended'
             WHERE registration_id = $1 AND state = 'valid' RETURNING {CERTIFICATE_COLUMNS}"
        );
        let revoked: Vec<Certificate> =
            sqlx::query_as(AssertSqlSafe(query)).bind(id).fetch_all(&mut *connection).await?;
        for certificate in &revoked {
            certificate_event(
                connection,
                &events::IDP_CERTIFICATE_REVOKED,
                certificate,
                registration.person_id,
                &actor,
            )
            .await?;
        }
        idp_event(connection, &events::IDP_DEREGISTERED, &registration, &actor).await?;
        Ok(registration)
    }

    /// A registration; the read is recorded against the person.
    pub async fn idp_registration(&self, caller: &Caller, id: Uuid, purpose: &str) -> Result<Registration, Error> {
        let query = format!("SELECT {REGISTRATION_COLUMNS} FROM idp_registrations WHERE id = $1");
        let registration: Registration = sqlx::query_as(AssertSqlSafe(query))
            .bind(id)
            .fetch_optional(self.store.pool())
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("IDP registration {id} does not exist")))?;
        require_territory(&self.territories, caller, &registration.current_territory).await?;
        self.store.log_reads(&actor(caller), &[registration.person_id], "GetIdpRegistration", purpose).await?;
        Ok(registration)
    }

    /// Issues the certificate of a registration; the one issued before, if
    /// any, is superseded.
    pub async fn issue_certificate(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        registration_id: Uuid,
        today: NaiveDate,
    ) -> Result<Certificate, Error> {
        let registration = Self::registration_locked(connection, registration_id).await?;
        require_territory(&self.territories, caller, &registration.current_territory).await?;
        if registration.status != "registered" {
            return Err(ApiError::FailedPrecondition(format!(
                "IDP registration {registration_id} is ended; no certificate is issued"
            ))
            .into());
        }
        let person = active_person(connection, registration.person_id, "registration.person_id").await?;
        let actor = actor(caller);
        let query = format!(
            "UPDATE idp_certificates SET state = 'superseded', state_reason = 'a new certificate was issued'
             WHERE registration_id = $1 AND state = 'valid' RETURNING {CERTIFICATE_COLUMNS}"
        );
        let superseded: Vec<Certificate> =
            sqlx::query_as(AssertSqlSafe(query)).bind(registration_id).fetch_all(&mut *connection).await?;
        for certificate in &superseded {
            certificate_event(connection, &events::IDP_CERTIFICATE_REVOKED, certificate, person.id, &actor).await?;
        }
        let sequence: i64 =
            sqlx::query_scalar("SELECT nextval('idp_certificate_numbers')").fetch_one(&mut *connection).await?;
        let number = format!("ВПО-{}-{sequence:07}", today.year());
        let content = CertificateContent {
            number: number.clone(),
            issued_on: today,
            registration_id,
            person_id: person.id,
            full_name: person.data.name.full(),
            latin_name: person.data.name.latin().full(),
            birth_date: person.data.birth_date,
            rnokpp: person.data.rnokpp.map(|rnokpp| rnokpp.to_string()),
            origin_territory: registration.origin_territory.clone(),
            current_territory: registration.current_territory.clone(),
            current_address: registration.current_address.clone(),
            registered_on: registration.registered_on,
            registered_by: registration.registered_by.clone(),
            family_member_ids: registration.family_member_ids.clone(),
        };
        // A fresh random code; a collision (one in 10^15 per pair) is retried.
        for _ in 0..5 {
            let payload = rand::thread_rng().gen_range(0..1_000_000_000_000_000u64);
            let code = CertificateCode::compose(payload).map_err(ApiError::internal)?;
            let query = format!(
                "INSERT INTO idp_certificates (id, number, registration_id, issued_on, numeric_code, content, state, issued_by)
                 VALUES ($1, $2, $3, $4, $5, $6, 'valid', $7)
                 ON CONFLICT (numeric_code) DO NOTHING RETURNING {CERTIFICATE_COLUMNS}"
            );
            let inserted: Option<Certificate> = sqlx::query_as(AssertSqlSafe(query))
                .bind(Uuid::now_v7())
                .bind(&number)
                .bind(registration_id)
                .bind(today)
                .bind(code.as_str())
                .bind(Json(&content))
                .bind(&actor.subject)
                .fetch_optional(&mut *connection)
                .await?;
            if let Some(certificate) = inserted {
                certificate_event(connection, &events::IDP_CERTIFICATE_ISSUED, &certificate, person.id, &actor).await?;
                return Ok(certificate);
            }
        }
        Err(ApiError::internal(anyhow::anyhow!("no unused certificate code after five draws")).into())
    }

    pub async fn revoke_certificate(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        id: Uuid,
        reason: &str,
    ) -> Result<Certificate, Error> {
        let query = format!("SELECT {CERTIFICATE_COLUMNS} FROM idp_certificates WHERE id = $1 FOR UPDATE");
        let certificate: Certificate = sqlx::query_as(AssertSqlSafe(query))
            .bind(id)
            .fetch_optional(&mut *connection)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("certificate {id} does not exist")))?;
        let registration = Self::registration_locked(connection, certificate.registration_id).await?;
        require_territory(&self.territories, caller, &registration.current_territory).await?;
        if certificate.state != "valid" {
            return Err(
                ApiError::FailedPrecondition(format!("certificate {id} is already {}", certificate.state)).into()
            );
        }
        let query = format!(
            "UPDATE idp_certificates SET state = 'revoked', state_reason = $2 WHERE id = $1 RETURNING {CERTIFICATE_COLUMNS}"
        );
        let certificate: Certificate =
            sqlx::query_as(AssertSqlSafe(query)).bind(id).bind(reason).fetch_one(&mut *connection).await?;
        certificate_event(
            connection,
            &events::IDP_CERTIFICATE_REVOKED,
            &certificate,
            registration.person_id,
            &actor(caller),
        )
        .await?;
        Ok(certificate)
    }

    /// Anyone may check a code; only the minimum is shown. A check of a known
    /// code is recorded in the holder's access history.
    pub async fn verify_certificate(&self, code: &str, verifier: Option<&Caller>) -> Result<Verification, Error> {
        let unknown = |reason| Verification {
            valid: false,
            reason,
            number: String::new(),
            issued_on: None,
            holder_initials: String::new(),
        };
        let Ok(code) = code.parse::<CertificateCode>() else { return Ok(unknown("malformed")) };
        let query = format!("SELECT {CERTIFICATE_COLUMNS} FROM idp_certificates WHERE numeric_code = $1");
        let Some(certificate) = sqlx::query_as::<_, Certificate>(AssertSqlSafe(query))
            .bind(code.as_str())
            .fetch_optional(self.store.pool())
            .await?
        else {
            return Ok(unknown("unknown"));
        };
        let reader = verifier.map_or(Actor { subject: "anonymous".to_owned(), organization: None }, actor);
        self.store
            .log_reads(
                &reader,
                &[certificate.content.person_id],
                "VerifyIdpCertificate",
                "verification of a certificate code",
            )
            .await?;
        let reason = match certificate.state.as_str() {
            "valid" => "",
            "revoked" => "revoked",
            "superseded" => "superseded",
            _ => "unknown",
        };
        Ok(Verification {
            valid: reason.is_empty(),
            reason,
            number: certificate.number.clone(),
            issued_on: Some(certificate.issued_on),
            holder_initials: initials(&certificate.content.full_name),
        })
    }

    pub async fn create_share(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        rnokpp: &str,
        documents: Vec<String>,
        purpose: &str,
    ) -> Result<Share, Error> {
        let Some(Found::Active(person) | Found::Redirected { person, .. }) =
            Store::find(connection, Identifier::Rnokpp(rnokpp)).await?
        else {
            return Err(ApiError::NotFound("the register has no person with this RNOKPP".to_owned()).into());
        };
        let query = format!(
            "INSERT INTO share_requests (id, person_id, organization_client_id, organization_edrpou, documents, purpose, status)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending') RETURNING {SHARE_COLUMNS}"
        );
        Ok(sqlx::query_as(AssertSqlSafe(query))
            .bind(Uuid::now_v7())
            .bind(person.id)
            .bind(&caller.subject)
            .bind(&caller.organization_edrpou)
            .bind(&documents)
            .bind(purpose)
            .fetch_one(connection)
            .await?)
    }

    async fn share_locked(connection: &mut PgConnection, id: Uuid) -> Result<Option<Share>, Error> {
        let query = format!("SELECT {SHARE_COLUMNS} FROM share_requests WHERE id = $1 FOR UPDATE");
        Ok(sqlx::query_as(AssertSqlSafe(query)).bind(id).fetch_optional(connection).await?)
    }

    /// The person's decision, passed on by the system that authenticated them.
    pub async fn decide_share(
        &self,
        connection: &mut PgConnection,
        id: Uuid,
        rnokpp: &str,
        approve: bool,
    ) -> Result<Share, Error> {
        let not_found = || Error::from(ApiError::NotFound(format!("share request {id} does not exist")));
        let share = Self::share_locked(connection, id).await?.ok_or_else(not_found)?;
        let holder: Option<String> = sqlx::query_scalar("SELECT rnokpp FROM persons WHERE id = $1")
            .bind(share.person_id)
            .fetch_one(&mut *connection)
            .await?;
        if holder.as_deref() != Some(rnokpp) {
            return Err(ApiError::PermissionDenied("only the person the documents are about decides".to_owned()).into());
        }
        if share.status != "pending" {
            return Err(ApiError::FailedPrecondition(format!("the share request was already {}", share.status)).into());
        }
        let query = format!(
            "UPDATE share_requests SET status = $2, decided_at = now() WHERE id = $1 RETURNING {SHARE_COLUMNS}"
        );
        Ok(sqlx::query_as(AssertSqlSafe(query))
            .bind(id)
            .bind(if approve { "approved" } else { "refused" })
            .fetch_one(connection)
            .await?)
    }

    /// The approved copy for the organization that asked: the certificate as
    /// PDF with the register's detached signature. Recorded as a read.
    pub async fn shared_copy(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        id: Uuid,
    ) -> Result<SharedCopy, Error> {
        // Another organization's request does not exist for this caller.
        let not_found = || Error::from(ApiError::NotFound(format!("share request {id} does not exist")));
        let share = Self::share_locked(connection, id).await?.ok_or_else(not_found)?;
        if share.organization_client_id != caller.subject {
            return Err(not_found());
        }
        if !matches!(share.status.as_str(), "approved" | "delivered") {
            return Err(
                ApiError::FailedPrecondition(format!("the share request is {}, not approved", share.status)).into()
            );
        }
        let query =
            "SELECT c.id, c.number, c.registration_id, c.issued_on, c.numeric_code, c.content, c.state, c.state_reason
             FROM idp_certificates c JOIN idp_registrations r ON r.id = c.registration_id
             WHERE r.person_id = $1 AND c.state = 'valid'";
        let certificate: Certificate = sqlx::query_as(AssertSqlSafe(query))
            .bind(share.person_id)
            .fetch_optional(&mut *connection)
            .await?
            .ok_or_else(|| {
                ApiError::FailedPrecondition("the person has no valid IDP certificate to share".to_owned())
            })?;
        let pdf = certificate_pdf(&certificate, &share)?;
        let detached_signature = self.key.sign_detached(&pdf);
        let digest = hex(&sha2::Sha256::digest(&pdf));
        let query = format!(
            "UPDATE share_requests SET status = 'delivered', delivered_at = COALESCE(delivered_at, now()), pdf_sha256 = $2
             WHERE id = $1 RETURNING {SHARE_COLUMNS}"
        );
        let share: Share =
            sqlx::query_as(AssertSqlSafe(query)).bind(id).bind(&digest).fetch_one(&mut *connection).await?;
        self.store.log_reads(&actor(caller), &[share.person_id], "GetSharedCopy", &share.purpose).await?;
        Ok(SharedCopy { share, pdf, detached_signature })
    }

    /// Every share of a person's documents; the read is recorded.
    pub async fn shares_of(&self, caller: &Caller, person_id: Uuid, purpose: &str) -> Result<Vec<Share>, Error> {
        let (person, _) = self
            .read_person(caller, Identifier::Id(person_id), esocial_kit::time::kyiv_today(), "ListShares", purpose)
            .await?;
        let mut ids = vec![person.id];
        ids.extend(self.store.merged_into(person.id).await?);
        let query =
            format!("SELECT {SHARE_COLUMNS} FROM share_requests WHERE person_id = ANY($1) ORDER BY created_at, id");
        Ok(sqlx::query_as(AssertSqlSafe(query)).bind(&ids).fetch_all(self.store.pool()).await?)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The certificate as a document.
fn certificate_pdf(certificate: &Certificate, share: &Share) -> Result<Vec<u8>, Error> {
    let content = &certificate.content.0;
    let code = certificate
        .numeric_code
        .parse::<CertificateCode>()
        .map(|code| code.grouped())
        .unwrap_or_else(|_| certificate.numeric_code.clone());
    let document = esocial_render::Document {
        title: "Довідка про взяття на облік внутрішньо переміщеної особи".to_owned(),
        subtitle: Some(format!("№ {} від {}", certificate.number, content.issued_on.format("%d.%m.%Y"))),
        fields: vec![
            ("Прізвище, ім’я, по батькові".to_owned(), content.full_name.clone()),
            ("Latin".to_owned(), content.latin_name.clone()),
            ("Дата народження".to_owned(), content.birth_date.format("%d.%m.%Y").to_string()),
            ("РНОКПП".to_owned(), content.rnokpp.clone().unwrap_or_else(|| "відмова від РНОКПП".to_owned())),
            ("Місце походження (КАТОТТГ)".to_owned(), content.origin_territory.clone()),
            ("Фактичне місце проживання (КАТОТТГ)".to_owned(), content.current_territory.clone()),
            ("Адреса".to_owned(), content.current_address.clone()),
            ("Дата взяття на облік".to_owned(), content.registered_on.format("%d.%m.%Y").to_string()),
            ("Орган (ЄДРПОУ)".to_owned(), content.registered_by.clone()),
            ("Ідентифікатор в реєстрі".to_owned(), content.person_id.to_string()),
            ("Унікальний електронний ідентифікатор".to_owned(), code),
        ],
        paragraphs: vec![format!(
            "Копію надано на запит {} для мети: {}. Перевірити довідку можна за кодом або QR-кодом без входу в систему.",
            share.organization_edrpou.clone().unwrap_or_else(|| share.organization_client_id.clone()),
            share.purpose
        )],
        footer: "Єдина інформаційна система соціальної сфери. Документ підписано ключем реєстру (JWS, EdDSA)."
            .to_owned(),
        qr_payload: Some(certificate.numeric_code.clone()),
    };
    esocial_render::pdf(&document)
        .map_err(|error| ApiError::internal(anyhow::anyhow!("rendering the certificate: {error}")).into())
}
