//! The identity service's state and its error type. Sign-in is in
//! `login.rs`, administration in `admin.rs`.

use std::sync::Arc;

use esocial_auth::Claims;
use esocial_kit::ApiError;

use crate::domain::Actor;
use crate::keys::{KeyError, KeyStore};
use crate::qes::{SignatureVerifiers, TrustedIssuers};
use crate::store::{Store, StoreError};
use crate::tokens::TokenSettings;

/// Everything sign-in and administration work with.
#[derive(Debug)]
pub struct Identity {
    pub store: Store,
    pub keys: Arc<KeyStore>,
    /// Verifies the member systems' tokens the gateway brings to exchange.
    pub member_tokens: esocial_auth::TokenVerifier,
    pub trusted: TrustedIssuers,
    pub verifiers: SignatureVerifiers,
    pub settings: TokenSettings,
}

impl Identity {
    /// Records a token issued to a system in the audit log, before it is
    /// returned (none leaves unrecorded): `action` by `actor`, for the
    /// token's subject, with its audience, scopes, id and expiry beside
    /// `details` (an object).
    pub(crate) async fn record_issued(
        &self,
        actor: &Actor,
        action: &str,
        issued: &Claims,
        mut details: serde_json::Value,
    ) -> Result<(), Error> {
        if let Some(fields) = details.as_object_mut() {
            fields.insert("audience".to_owned(), serde_json::json!(issued.aud));
            fields.insert("scopes".to_owned(), serde_json::json!(issued.roles));
            fields.insert("token_id".to_owned(), serde_json::json!(issued.jti));
            fields.insert("expires_at".to_owned(), serde_json::json!(issued.exp));
        }
        let mut connection = self.store.pool().acquire().await?;
        Store::audit(&mut connection, actor, action, &issued.sub, details).await?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Error::Store(StoreError::Database(error))
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        let api_error = match error {
            Error::Api(api_error) => api_error,
            Error::Store(StoreError::Database(database_error)) => {
                let duplicate = |constraint| esocial_kit::db::is_constraint_violation(&database_error, constraint);
                if duplicate("organizations_edrpou_key") {
                    ApiError::AlreadyExists("an organization with this EDRPOU exists".to_owned())
                } else if duplicate("accounts_rnokpp_key") {
                    ApiError::AlreadyExists("an account with this RNOKPP exists".to_owned())
                } else if duplicate("certificates_fingerprint_key") {
                    ApiError::AlreadyExists("this certificate is already registered".to_owned())
                } else if duplicate("system_clients_pkey") {
                    ApiError::AlreadyExists("a system client with this id exists".to_owned())
                } else if duplicate("certificates_one_active_per_account") {
                    ApiError::FailedPrecondition("the account already has an active certificate".to_owned())
                } else {
                    ApiError::from(database_error)
                }
            }
            Error::Store(corrupt @ StoreError::Corrupt(_)) => ApiError::internal(corrupt),
            Error::Keys(error) => ApiError::internal(error),
        };
        tonic::Status::from(api_error)
    }
}

/// A refusal to sign in, with its reason code (see `LoginFailed.reason`).
pub fn refused(reason: &'static str, message: impl Into<String>) -> Error {
    Error::Api(ApiError::Refused { reason, message: message.into() })
}
