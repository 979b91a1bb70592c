//! The identity service's state and its error type. Sign-in is in
//! `login.rs`, administration in `admin.rs`.

use std::sync::Arc;

use esocial_auth::Claims;
use esocial_kit::ApiError;
use esocial_kit::rate::Allowance;

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
    /// Refusals recorded at most (see [`REFUSALS_RECORDED_PER_SECOND`]).
    pub(crate) refusals: Allowance,
}

/// Refused token requests recorded at most, a second and at once: a flood
/// of forged or replayed requests must not fill the audit log. Beyond the
/// rate they are counted and logged (tracing) only.
pub const REFUSALS_RECORDED_PER_SECOND: u32 = 20;
pub const REFUSALS_RECORDED_BURST: u32 = 100;

/// The reason and message of an error that refuses a token request (not
/// of a failure on identity's side).
fn refusal(error: &Error) -> Option<(&str, &str)> {
    match error {
        Error::Api(ApiError::Refused { reason, message }) => Some((reason, message)),
        Error::Api(ApiError::PermissionDenied(message)) => Some(("permission_denied", message)),
        _ => None,
    }
}

/// Claims longer than this are cut in a refusal's record.
const CLAIMED_LENGTH_MAX: usize = 200;

/// The claims of a token or assertion as it makes them, read without
/// checking its signature: for the record of a refusal only.
pub(crate) struct Claimed(Option<serde_json::Value>);

impl Claimed {
    pub(crate) fn of(token: &str) -> Self {
        Self(jsonwebtoken::dangerous::insecure_decode_claims(token).ok())
    }

    /// A claim (cut to [`CLAIMED_LENGTH_MAX`] characters); empty when the
    /// token has none.
    pub(crate) fn get(&self, name: &str) -> String {
        let value = self.0.as_ref().and_then(|claims| claims.get(name)).and_then(serde_json::Value::as_str);
        value.unwrap_or_default().chars().take(CLAIMED_LENGTH_MAX).collect()
    }
}

/// Adds `fields` to `details` (an object) for an audit record.
fn add_fields<const N: usize>(details: &mut serde_json::Value, fields: [(&str, serde_json::Value); N]) {
    if let Some(object) = details.as_object_mut() {
        object.extend(fields.map(|(name, value)| (name.to_owned(), value)));
    }
}

impl Identity {
    /// One row of the audit log, on a connection of its own.
    async fn audit(&self, actor: &Actor, action: &str, target: &str, details: serde_json::Value) -> Result<(), Error> {
        let mut connection = self.store.pool().acquire().await?;
        Store::audit(&mut connection, actor, action, target, details).await?;
        Ok(())
    }

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
        add_fields(
            &mut details,
            [
                ("audience", serde_json::json!(issued.aud)),
                ("scopes", serde_json::json!(issued.roles)),
                ("token_id", serde_json::json!(issued.jti)),
                ("expires_at", serde_json::json!(issued.exp)),
            ],
        );
        self.audit(actor, action, &issued.sub, details).await
    }

    /// Records a refused token request in the audit log: `action` by
    /// `actor`, about the target `describe` gives, with the refusal's reason
    /// and message beside the details it gives (an object), within
    /// [`REFUSALS_RECORDED_PER_SECOND`]. `describe` runs only for a refusal
    /// that is recorded, so a flood beyond the rate costs no decoding.
    /// Errors that are not refusals are not recorded; a record that cannot
    /// be written is logged, and the refusal goes out unchanged either way.
    pub(crate) async fn record_refused(
        &self,
        actor: &Actor,
        action: &str,
        error: &Error,
        describe: impl FnOnce() -> (String, serde_json::Value),
    ) {
        let Some((reason, message)) = refusal(error) else { return };
        if !self.refusals.admit() {
            return;
        }
        let (target, mut details) = describe();
        add_fields(&mut details, [("reason", serde_json::json!(reason)), ("message", serde_json::json!(message))]);
        if let Err(error) = self.audit(actor, action, &target, details).await {
            tracing::warn!(%error, action, reason, "cannot record a refused token request");
        }
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
