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

use crate::domain::{Account, AccountStatus, CertificateStatus};
use crate::events;
use crate::qes::{self, CertificateProblem, SignatureProblem};
use crate::service::{Error, Identity, refused};
use crate::store::Store;
use crate::tokens::{client_claims, hash_refresh_token, new_nonce, new_refresh_token, person_claims, unix_now};

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

impl Identity {
    pub async fn begin_login(&self) -> Result<(Uuid, Vec<u8>, DateTime<Utc>), Error> {
        let id = Uuid::now_v7();
        let nonce = new_nonce().map_err(|_| ApiError::internal(anyhow::anyhow!("no randomness")))?;
        let expires_at = Utc::now() + seconds(self.settings.challenge_lifetime);
        self.store.insert_challenge(id, &nonce, expires_at).await?;
        Ok((id, nonce.to_vec(), expires_at))
    }

    /// Records a refused sign-in (table and event) and returns the refusal.
    async fn refuse_login(
        &self,
        reason: &'static str,
        message: String,
        account_id: Option<Uuid>,
        fingerprint: Option<&str>,
    ) -> Error {
        let recorded = async {
            let mut transaction = self.store.pool().begin().await?;
            Store::record_login_failure(&mut transaction, account_id, fingerprint, reason).await?;
            let event = pb::LoginFailed {
                account_id: account_id.map(|id| id.to_string()).unwrap_or_default(),
                certificate_fingerprint: fingerprint.unwrap_or_default().to_owned(),
                reason: reason.to_owned(),
            };
            let subject = account_id.map(|id| id.to_string());
            esocial_events::outbox::enqueue(&mut transaction, &events::LOGIN_FAILED, subject.as_deref(), &event)
                .await?;
            transaction.commit().await
        };
        if let Err(error) = recorded.await {
            tracing::error!(%error, reason, "cannot record a refused sign-in");
        }
        tracing::info!(reason, account = ?account_id, "sign-in refused");
        if reason == "throttled" {
            return Error::Api(ApiError::ResourceExhausted {
                message,
                retry_after: self.settings.login_failure_window,
            });
        }
        refused(reason, message)
    }

    async fn throttled(&self, account_id: Option<Uuid>, fingerprint: Option<&str>) -> Result<bool, Error> {
        let window = i64::try_from(self.settings.login_failure_window.as_secs()).unwrap_or(i64::MAX);
        Ok(self.store.recent_failures(account_id, fingerprint, window).await? >= self.settings.login_failures_max)
    }

    /// Checks the signed challenge and the certificate; opens a session.
    pub async fn complete_login(
        &self,
        challenge_id: Uuid,
        chain: &[Vec<u8>],
        signature: &[u8],
    ) -> Result<(IssuedTokens, Account), Error> {
        let fingerprint = chain.first().map(|der| qes::fingerprint(der));
        let fingerprint = fingerprint.as_deref();
        if self.throttled(None, fingerprint).await? {
            let message = "too many failed sign-ins with this certificate; try again later".to_owned();
            return Err(self.refuse_login("throttled", message, None, fingerprint).await);
        }

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
                return Err(self.refuse_login(reason, message.to_owned(), None, fingerprint).await);
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
                return Err(self.refuse_login(reason, problem.to_string(), None, fingerprint).await);
            }
        };

        let mut connection = self.store.pool().acquire().await?;
        let Some(record) = Store::certificate_by_fingerprint(&mut connection, &certificate.fingerprint).await? else {
            let message = "this certificate is not registered to any account".to_owned();
            return Err(self.refuse_login("unknown_certificate", message, None, fingerprint).await);
        };
        let account = Store::account(&mut connection, record.account_id)
            .await?
            .filter(|account| account.rnokpp == certificate.rnokpp);
        let Some(account) = account else {
            let message = "this certificate does not belong to its account's holder".to_owned();
            return Err(self.refuse_login("unknown_certificate", message, None, fingerprint).await);
        };
        drop(connection);
        let account_id = Some(account.id);
        match record.status {
            CertificateStatus::Active => {}
            CertificateStatus::Blocked => {
                let message = "this certificate is blocked".to_owned();
                return Err(self.refuse_login("certificate_blocked", message, account_id, fingerprint).await);
            }
            CertificateStatus::Revoked => {
                let message = "this certificate is revoked".to_owned();
                return Err(self.refuse_login("certificate_revoked", message, account_id, fingerprint).await);
            }
        }
        if account.status == AccountStatus::Suspended {
            let message = "this account is suspended".to_owned();
            return Err(self.refuse_login("account_suspended", message, account_id, fingerprint).await);
        }
        if self.throttled(account_id, None).await? {
            let message = "too many failed sign-ins for this account; try again later".to_owned();
            return Err(self.refuse_login("throttled", message, account_id, fingerprint).await);
        }
        let message = qes::login_message(&challenge_id, &nonce);
        if let Err(problem) = self.verifiers.verify(&certificate.public_key, &message, signature) {
            let reason = match problem {
                SignatureProblem::UnsupportedKey => "unsupported_key",
                SignatureProblem::Invalid => "wrong_signature",
            };
            return Err(self.refuse_login(reason, problem.to_string(), account_id, fingerprint).await);
        }

        let mut transaction = self.store.pool().begin().await?;
        let organization = Store::organization(&mut transaction, account.organization_id).await?;
        let Some(organization) = organization.filter(|organization| organization.active) else {
            drop(transaction);
            let message = "the account's organization is not active".to_owned();
            return Err(self.refuse_login("organization_inactive", message, account_id, fingerprint).await);
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
            let event = pb::SessionRevoked {
                session_id: session_id.to_string(),
                account_id: account_id.to_string(),
                reason: reason.to_owned(),
            };
            let subject = account_id.to_string();
            esocial_events::outbox::enqueue(transaction, &events::SESSION_REVOKED, Some(&subject), &event).await?;
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
        let certificate = Store::certificate(&mut transaction, state.certificate_id).await?;
        let account = Store::account_for_update(&mut transaction, state.account_id).await?;
        let refusal = match (&certificate, &account) {
            (Some(certificate), _) if certificate.status == CertificateStatus::Blocked => {
                Some(("certificate_blocked", "the certificate is blocked"))
            }
            (Some(certificate), _) if certificate.status == CertificateStatus::Revoked => {
                Some(("certificate_revoked", "the certificate is revoked"))
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

    /// Ends a session: the caller's own, or any for a security administrator.
    pub async fn revoke_session(&self, caller: &Caller, session_id: Uuid, reason: &str) -> Result<(), Error> {
        let mut transaction = self.store.pool().begin().await?;
        let owner = Store::session_account(&mut transaction, session_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("session {session_id} does not exist")))?;
        let own = caller.subject == owner.to_string();
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
    pub async fn issue_service_token(
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
        let scopes = if requested.is_empty() {
            client.scopes.clone()
        } else {
            let mut granted = Vec::new();
            for name in requested {
                match Role::parse(name).filter(|role| client.scopes.contains(role)) {
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
        let token = self
            .keys
            .signer()
            .await?
            .sign(&client_claims(&self.settings, &client_id, &scopes))
            .map_err(ApiError::internal)?;
        Ok((token, scopes))
    }
}
