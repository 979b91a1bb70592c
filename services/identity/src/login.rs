//! Sign-in with a qualified e-signature, sessions and their refresh tokens,
//! and client credentials for systems.

use std::time::Duration;

use chrono::{DateTime, Utc};
use esocial_auth::{Caller, Role};
use esocial_kit::ApiError;
use esocial_proto::identity::v1 as pb;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Account, AccountStatus, Actor, CertificateStatus, is_client_scope, signed_in_person};
use crate::events;
use crate::qes::{self, CertificateProblem, SignatureProblem};
use crate::service::{Claimed, Error, Identity, refused};
use crate::store::{LoginFailure, Store};
use crate::tokens::{
    CLIENT_SUBJECT_PREFIX, client_claims, hash_refresh_token, new_nonce, new_refresh_token, person_claims, unix_now,
};

/// Tokens handed out at sign-in and refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedTokens {
    pub access_token: String,
    pub access_token_expires_in: Duration,
    pub refresh_token: String,
    pub refresh_token_expires_in: Duration,
    pub session_id: Uuid,
}

/// Longest a client assertion may be valid for (RFC 7523 asks for short).
const ASSERTION_LIFETIME_MAX_SECONDS: u64 = 300;
/// Largest signature accepted at sign-in.
pub const SIGNATURE_BYTES_MAX: usize = 1024;

fn seconds(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// Scopes asked for, as a refusal's record keeps them: the first
/// [`SCOPES_RECORDED_MAX`], each cut to [`SCOPE_RECORDED_LENGTH_MAX`]
/// characters (a refused request is not trusted to be small).
fn scopes_asked(requested: &[String]) -> Vec<String> {
    requested
        .iter()
        .take(SCOPES_RECORDED_MAX)
        .map(|scope| scope.chars().take(SCOPE_RECORDED_LENGTH_MAX).collect())
        .collect()
}

const SCOPES_RECORDED_MAX: usize = 20;
const SCOPE_RECORDED_LENGTH_MAX: usize = 64;

/// The actor of a refused request for a system's token.
pub const UNAUTHENTICATED: &str = "unauthenticated";

impl Identity {
    pub async fn begin_login(&self) -> Result<(Uuid, Vec<u8>, DateTime<Utc>), Error> {
        let id = Uuid::now_v7();
        let nonce = new_nonce().map_err(|_| ApiError::internal(anyhow::anyhow!("no randomness")))?;
        let expires_at = Utc::now() + seconds(self.settings.challenge_lifetime);
        self.store.insert_challenge(id, &nonce, expires_at).await?;
        Ok((id, nonce.to_vec(), expires_at))
    }

    /// Records a refused sign-in (table and event, both with the detailed
    /// reason) and returns the refusal.
    async fn refuse_login(&self, failure: LoginFailure<'_>, message: String) -> Error {
        let reason = failure.reason;
        let recorded = async {
            let mut transaction = self.store.pool().begin().await?;
            Store::record_login_failure(&mut transaction, &failure).await?;
            let event = pb::LoginFailed {
                account_id: failure.account_id.map(|id| id.to_string()).unwrap_or_default(),
                certificate_fingerprint: failure.certificate_fingerprint.unwrap_or_default().to_owned(),
                reason: reason.to_owned(),
            };
            let subject = failure.account_id.map(|id| id.to_string());
            esocial_events::outbox::enqueue(&mut transaction, &events::LOGIN_FAILED, subject.as_deref(), &event)
                .await?;
            transaction.commit().await
        };
        if let Err(error) = recorded.await {
            tracing::error!(%error, reason, "cannot record a refused sign-in");
        }
        tracing::info!(reason, account = ?failure.account_id, "sign-in refused");
        if reason == "throttled" {
            return Error::Api(ApiError::ResourceExhausted {
                message,
                retry_after: self.settings.login_failure_window,
            });
        }
        refused(reason, message)
    }

    /// Whether wrong signatures with this certificate or for its account
    /// reached the limit in the window.
    async fn too_many_wrong_signatures(&self, account_id: Option<Uuid>, fingerprint: &str) -> Result<bool, Error> {
        let window = i64::try_from(self.settings.login_failure_window.as_secs()).unwrap_or(i64::MAX);
        let wrong = self.store.recent_wrong_signatures(account_id, fingerprint, window).await?;
        Ok(wrong >= self.settings.login_failures_max)
    }

    /// Checks the signed challenge and the certificate; opens a session.
    ///
    /// In this order: the challenge is used up; the certificate's chain is
    /// checked; the signature over the challenge is checked with the
    /// certificate's key. Until then nothing depends on the catalogue, so a
    /// stranger holding only someone's public certificate learns nothing
    /// about their account and cannot lock them out. Only then are the
    /// certificate's and account's states looked at, and told.
    pub async fn complete_login(
        &self,
        challenge_id: Uuid,
        chain: &[Vec<u8>],
        signature: &[u8],
    ) -> Result<(IssuedTokens, Account), Error> {
        let presented = chain.first().map(|der| qes::fingerprint(der));
        let before_signature = |reason| LoginFailure {
            account_id: None,
            certificate_fingerprint: presented.as_deref(),
            challenge_id: None,
            reason,
        };

        // The nonce is used up whatever happens next.
        let mut transaction = self.store.pool().begin().await?;
        let consumed = Store::consume_challenge(&mut transaction, challenge_id).await?;
        transaction.commit().await?;
        let nonce = match consumed {
            Ok(nonce) => nonce,
            Err(reason) => {
                let message = match reason {
                    "challenge_used" => "this challenge was already used; begin a new sign-in",
                    "challenge_expired" => "this challenge has expired; begin a new sign-in",
                    _ => "unknown challenge; begin a new sign-in",
                };
                return Err(self.refuse_login(before_signature(reason), message.to_owned()).await);
            }
        };

        let certificate = match qes::verify_chain(chain, &self.trusted, Utc::now()) {
            Ok(certificate) => certificate,
            Err(problem) => {
                let reason = match problem {
                    CertificateProblem::Malformed | CertificateProblem::NoRnokpp => "malformed_certificate",
                    CertificateProblem::UntrustedIssuer => "untrusted_issuer",
                    CertificateProblem::OutsideValidity { .. } => "certificate_expired",
                    CertificateProblem::NotForSigning => "certificate_not_for_signing",
                };
                return Err(self.refuse_login(before_signature(reason), problem.to_string()).await);
            }
        };
        let fingerprint = Some(certificate.fingerprint.as_str());

        // Proof of possession of the certificate's key.
        let message = qes::login_message(&challenge_id, &nonce);
        if let Err(problem) = self.verifiers.verify(&certificate.public_key, &message, signature) {
            if problem == SignatureProblem::UnsupportedKey {
                return Err(self.refuse_login(before_signature("unsupported_key"), problem.to_string()).await);
            }
            // Recorded against the account too (for its holder's alerts), but
            // answered the same whether or not the certificate is registered.
            let mut connection = self.store.pool().acquire().await?;
            let account_id = Store::certificate_by_fingerprint(&mut connection, &certificate.fingerprint)
                .await?
                .map(|record| record.account_id);
            drop(connection);
            let (reason, message) = if self.too_many_wrong_signatures(account_id, &certificate.fingerprint).await? {
                ("throttled", "too many wrong signatures with this certificate; try again later".to_owned())
            } else {
                ("wrong_signature", problem.to_string())
            };
            let failure = LoginFailure {
                account_id,
                certificate_fingerprint: fingerprint,
                challenge_id: Some(challenge_id),
                reason,
            };
            return Err(self.refuse_login(failure, message).await);
        }

        // The signer holds the certificate's key: now the catalogue speaks.
        let after_signature = |account_id: Option<Uuid>, reason| LoginFailure {
            account_id,
            certificate_fingerprint: fingerprint,
            challenge_id: Some(challenge_id),
            reason,
        };
        let mut connection = self.store.pool().acquire().await?;
        let Some(record) = Store::certificate_by_fingerprint(&mut connection, &certificate.fingerprint).await? else {
            let message = "this certificate is not registered to any account".to_owned();
            return Err(self.refuse_login(after_signature(None, "unknown_certificate"), message).await);
        };
        drop(connection);

        // Statuses are read with the rows share-locked, in the transaction
        // that opens the session: a block or suspension (which locks them
        // for update and ends the sessions it finds) either comes first and
        // is seen here, or waits and then ends this session too. Account
        // before certificate, the order the administration locks them in.
        let mut transaction = self.store.pool().begin().await?;
        let account = Store::account_for_share(&mut transaction, record.account_id)
            .await?
            .filter(|account| account.rnokpp == certificate.rnokpp);
        let record = Store::certificate_for_share(&mut transaction, record.id).await?;
        let (Some(account), Some(record)) = (account, record) else {
            drop(transaction);
            let message = "this certificate does not belong to its account's holder".to_owned();
            return Err(self.refuse_login(after_signature(None, "unknown_certificate"), message).await);
        };
        let account_id = Some(account.id);
        let refusal = match (record.status, account.status) {
            (CertificateStatus::Blocked, _) => Some(("certificate_blocked", "this certificate is blocked")),
            (CertificateStatus::Revoked, _) => Some(("certificate_revoked", "this certificate is revoked")),
            (CertificateStatus::Active, AccountStatus::Suspended) => {
                Some(("account_suspended", "this account is suspended"))
            }
            (CertificateStatus::Active, AccountStatus::Active) => None,
        };
        if let Some((reason, message)) = refusal {
            drop(transaction);
            return Err(self.refuse_login(after_signature(account_id, reason), message.to_owned()).await);
        }
        let organization = Store::organization(&mut transaction, account.organization_id).await?;
        let Some(organization) = organization.filter(|organization| organization.active) else {
            drop(transaction);
            let message = "the account's organization is not active".to_owned();
            return Err(self.refuse_login(after_signature(account_id, "organization_inactive"), message).await);
        };
        let session_id = Uuid::now_v7();
        let session_expires_at = Utc::now() + seconds(self.settings.session_lifetime_max);
        Store::insert_session(&mut transaction, session_id, account.id, record.id, session_expires_at).await?;
        let tokens = self
            .issue_tokens(&mut transaction, &account, organization.edrpou.as_str(), session_id, session_expires_at)
            .await?;
        let event = pb::LoginSucceeded {
            account_id: account.id.to_string(),
            certificate_fingerprint: certificate.fingerprint.clone(),
            session_id: session_id.to_string(),
        };
        let subject = account.id.to_string();
        esocial_events::outbox::enqueue(&mut transaction, &events::LOGIN_SUCCEEDED, Some(&subject), &event).await?;
        transaction.commit().await?;
        Ok((tokens, account))
    }

    /// A new access token and refresh token for a session.
    async fn issue_tokens(
        &self,
        transaction: &mut PgConnection,
        account: &Account,
        organization_edrpou: &str,
        session_id: Uuid,
        session_expires_at: DateTime<Utc>,
    ) -> Result<IssuedTokens, Error> {
        let (refresh_token, refresh_hash) =
            new_refresh_token().map_err(|_| ApiError::internal(anyhow::anyhow!("no randomness")))?;
        let refresh_expires_at = (Utc::now() + seconds(self.settings.refresh_token_lifetime)).min(session_expires_at);
        Store::insert_refresh_token(transaction, &refresh_hash, session_id, refresh_expires_at).await?;
        let claims = person_claims(&self.settings, account, organization_edrpou, session_id);
        let access_token = self.keys.signer().await?.sign(&claims).map_err(ApiError::internal)?;
        Ok(IssuedTokens {
            access_token,
            access_token_expires_in: self.settings.access_token_lifetime,
            refresh_token,
            refresh_token_expires_in: (refresh_expires_at - Utc::now()).to_std().unwrap_or_default(),
            session_id,
        })
    }

    /// Ends a session inside a transaction, with its event.
    async fn end_session(
        transaction: &mut PgConnection,
        session_id: Uuid,
        account_id: Uuid,
        reason: &str,
    ) -> Result<(), Error> {
        if Store::revoke_session(transaction, session_id, reason).await? {
            Self::sessions_ended(transaction, &[(session_id, account_id)], reason).await?;
        }
        Ok(())
    }

    /// The `session.revoked` events of sessions just ended (session id,
    /// account id), one each, in the transaction that ended them.
    pub(crate) async fn sessions_ended(
        transaction: &mut PgConnection,
        sessions: &[(Uuid, Uuid)],
        reason: &str,
    ) -> Result<(), Error> {
        for (session_id, account_id) in sessions {
            let event = pb::SessionRevoked {
                session_id: session_id.to_string(),
                account_id: account_id.to_string(),
                reason: reason.to_owned(),
            };
            let subject = account_id.to_string();
            esocial_events::outbox::enqueue(&mut *transaction, &events::SESSION_REVOKED, Some(&subject), &event)
                .await?;
        }
        Ok(())
    }

    /// Exchanges a refresh token. Reuse of a used token ends the session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<IssuedTokens, Error> {
        let hash = hash_refresh_token(refresh_token);
        let mut transaction = self.store.pool().begin().await?;
        let Some(state) = Store::session_of_refresh_token(&mut transaction, &hash).await? else {
            return Err(refused("unknown_refresh_token", "unknown refresh token"));
        };
        if state.token_used {
            Self::end_session(&mut transaction, state.session_id, state.account_id, "refresh token reused").await?;
            transaction.commit().await?;
            tracing::warn!(session = %state.session_id, "a used refresh token was presented again: session ended");
            return Err(refused(
                "refresh_token_reused",
                "this refresh token was already used; the session has been ended",
            ));
        }
        if state.session_revoked {
            return Err(refused("session_revoked", "the session has been ended"));
        }
        let now = Utc::now();
        if state.token_expires_at <= now || state.session_expires_at <= now {
            return Err(refused("session_expired", "the session has expired; sign in again"));
        }
        // Read without locks: the session's row is locked for this exchange,
        // so a block or suspension ending it waits for it and ends it after.
        // (Locking the certificate or account here would take locks in the
        // opposite order to the administration's.)
        let certificate = Store::certificate(&mut transaction, state.certificate_id).await?;
        let account = Store::account(&mut transaction, state.account_id).await?;
        let refusal = match (&certificate, &account) {
            (Some(certificate), _) if certificate.status == CertificateStatus::Blocked => {
                Some(("certificate_blocked", "the certificate is blocked"))
            }
            (Some(certificate), _) if certificate.status == CertificateStatus::Revoked => {
                Some(("certificate_revoked", "the certificate is revoked"))
            }
            (Some(certificate), _) if certificate.not_after <= now || certificate.not_before > now => {
                Some(("certificate_expired", "the certificate is no longer valid; sign in with a current one"))
            }
            (_, Some(account)) if account.status == AccountStatus::Suspended => {
                Some(("account_suspended", "the account is suspended"))
            }
            (None, _) | (_, None) => Some(("session_revoked", "the session's certificate or account is gone")),
            _ => None,
        };
        if let Some((reason, message)) = refusal {
            Self::end_session(&mut transaction, state.session_id, state.account_id, reason).await?;
            transaction.commit().await?;
            return Err(refused(reason, message));
        }
        let account = account.ok_or_else(|| refused("session_revoked", "no account"))?;
        let organization = Store::organization(&mut transaction, account.organization_id)
            .await?
            .filter(|organization| organization.active)
            .ok_or_else(|| refused("organization_inactive", "the account's organization is not active"))?;
        Store::mark_refresh_token_used(&mut transaction, &hash).await?;
        let tokens = self
            .issue_tokens(
                &mut transaction,
                &account,
                organization.edrpou.as_str(),
                state.session_id,
                state.session_expires_at,
            )
            .await?;
        transaction.commit().await?;
        Ok(tokens)
    }

    /// Ends a session: the caller's own, or any for a security administrator;
    /// either way the caller is a person signed in with a qualified
    /// e-signature (a system client's token never owns a session).
    pub async fn revoke_session(&self, caller: &Caller, session_id: Uuid, reason: &str) -> Result<(), Error> {
        let Some((caller_account, _)) = signed_in_person(caller) else {
            return Err(ApiError::PermissionDenied(
                "only a person signed in with a qualified e-signature may end a session".to_owned(),
            )
            .into());
        };
        let mut transaction = self.store.pool().begin().await?;
        let owner = Store::session_account(&mut transaction, session_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("session {session_id} does not exist")))?;
        let own = caller_account == owner;
        if !own && !caller.has_role(Role::SecurityAdmin) {
            return Err(ApiError::PermissionDenied(
                "only the session's owner or a security administrator may end it".to_owned(),
            )
            .into());
        }
        let reason = if reason.is_empty() {
            if own { "signed out" } else { "ended by a security administrator" }
        } else {
            reason
        };
        Self::end_session(&mut transaction, session_id, owner, reason).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Client credentials: checks an RFC 7523 assertion and issues a token
    /// with the requested scopes (all the client's when none are asked for).
    ///
    /// A refusal is recorded too (`token.request_refused` by
    /// [`UNAUTHENTICATED`]: the client and the assertion's id as the
    /// assertion claims them, the scopes asked for, and the reason), within
    /// the rate of refusals recorded.
    pub async fn issue_service_token(
        &self,
        assertion: &str,
        requested: &[String],
    ) -> Result<(String, Vec<Role>), Error> {
        let issued = self.issue_service_token_checked(assertion, requested).await;
        if let Err(error) = &issued {
            // Nobody is signed in by a refused request.
            let actor = Actor { subject: UNAUTHENTICATED.to_owned(), organization: None };
            self.record_refused(&actor, "token.request_refused", error, || {
                // What the assertion claims: a refused one may be forged.
                let claimed = Claimed::of(assertion);
                let client = claimed.get("iss");
                let target = if client.is_empty() { client } else { format!("{CLIENT_SUBJECT_PREFIX}{client}") };
                let details = serde_json::json!({
                    "grant": "client_credentials",
                    "assertion_id": claimed.get("jti"),
                    "scopes_requested": scopes_asked(requested),
                });
                (target, details)
            })
            .await;
        }
        issued
    }

    async fn issue_service_token_checked(
        &self,
        assertion: &str,
        requested: &[String],
    ) -> Result<(String, Vec<Role>), Error> {
        let invalid = |message: &str| refused("invalid_client", message.to_owned());
        let header = jsonwebtoken::decode_header(assertion).map_err(|_| invalid("the assertion is not a JWT"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(invalid("the assertion must be signed with EdDSA"));
        }
        let unverified: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(assertion)
            .map_err(|_| invalid("the assertion's claims do not decode"))?;
        let client_id = unverified.get("iss").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        let mut connection = self.store.pool().acquire().await?;
        let client = Store::system_client(&mut connection, &client_id).await?;
        drop(connection);
        let Some(client) = client.filter(|client| client.active) else {
            return Err(invalid("unknown or inactive client"));
        };
        let key = DecodingKey::from_jwk(&client.public_jwk)
            .map_err(|_| invalid("the client's registered key is unusable"))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&client_id]);
        validation.set_audience(&[self.settings.issuer.clone(), format!("{}/oauth2/token", self.settings.issuer)]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &validation)
            .map_err(|error| invalid(&format!("the assertion is not valid: {error}")))?;
        let claims = data.claims;
        if claims.get("sub").and_then(serde_json::Value::as_str) != Some(client_id.as_str()) {
            return Err(invalid("the assertion's sub must be the client id"));
        }
        let expires = claims.get("exp").and_then(serde_json::Value::as_u64).unwrap_or(0);
        if expires > unix_now() + ASSERTION_LIFETIME_MAX_SECONDS + 30 {
            return Err(invalid("the assertion may be valid for at most 5 minutes"));
        }
        let jti =
            claims.get("jti").and_then(serde_json::Value::as_str).filter(|jti| !jti.is_empty() && jti.len() <= 200);
        let jti = jti.ok_or_else(|| invalid("the assertion needs a jti"))?;
        let expires_at = DateTime::<Utc>::from_timestamp(i64::try_from(expires).unwrap_or(i64::MAX), 0)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if !self.store.remember_assertion(&client_id, jti, expires_at).await? {
            return Err(refused("assertion_replayed", "this assertion was already used"));
        }
        // Only the roles of systems, whatever a stored row says.
        let allowed: Vec<Role> = client.scopes.iter().copied().filter(|scope| is_client_scope(*scope)).collect();
        let scopes = if requested.is_empty() {
            allowed
        } else {
            let mut granted = Vec::new();
            for name in requested {
                match Role::parse(name).filter(|role| allowed.contains(role)) {
                    Some(role) => granted.push(role),
                    None => {
                        return Err(
                            ApiError::PermissionDenied(format!("the client may not have scope {name:?}")).into()
                        );
                    }
                }
            }
            granted
        };
        let issued = client_claims(&self.settings, &client_id, &scopes, &client.audiences);
        let token = self.keys.signer().await?.sign(&issued).map_err(ApiError::internal)?;
        let actor = Actor { subject: issued.sub.clone(), organization: None };
        let details = serde_json::json!({ "grant": "client_credentials", "assertion_id": jti });
        self.record_issued(&actor, "token.issued", &issued, details).await?;
        Ok((token, scopes))
    }
}
