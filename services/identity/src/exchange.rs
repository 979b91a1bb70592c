//! Token exchange (RFC 8693) for the exchange gateway.
//!
//! A member system holds a token for the gateway (its client may be limited
//! to the gateway's audience). For each service behind it, the gateway
//! exchanges that token here for one good only at that service, naming the
//! same system, with `act` naming the gateway. The service then checks the
//! system's roles as if it had called directly, and cannot be reached with
//! a member's own token. Each token issued is recorded in the audit log
//! (`token.exchanged`: the gateway, the system, the audience, the scopes and
//! both tokens' ids) before it is returned; each refusal as
//! `token.exchange_refused`, within a rate.

use esocial_auth::{Caller, Role};
use esocial_kit::ApiError;

use crate::domain::Actor;
use crate::service::{Claimed, Error, Identity, refused};
use crate::store::Store;
use crate::tokens::{CLIENT_SUBJECT_PREFIX, exchanged_claims, unix_now};

/// A token issued by an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchanged {
    pub access_token: String,
    pub expires_in_seconds: u64,
    pub scopes: Vec<Role>,
}

impl Identity {
    /// Exchanges `subject_token` (a system client's token for the gateway)
    /// for a token for `audience`, which the caller has checked is one of
    /// the configured audiences. `gateway` is the verified caller, holding
    /// the `gateway` role.
    ///
    /// A refusal is recorded too (`token.exchange_refused`: the gateway, the
    /// system the subject token names, the audience, the token's id and the
    /// reason), within the rate of refusals recorded.
    pub async fn exchange_token(
        &self,
        gateway: &Caller,
        subject_token: &str,
        audience: &str,
    ) -> Result<Exchanged, Error> {
        let exchanged = self.exchange_checked(gateway, subject_token, audience).await;
        if let Err(error) = &exchanged {
            self.record_refused(&Actor::of(gateway), "token.exchange_refused", error, || {
                // What the subject token claims: a refused one may be forged.
                let claimed = Claimed::of(subject_token);
                (
                    claimed.get("sub"),
                    serde_json::json!({ "audience": audience, "subject_token_id": claimed.get("jti") }),
                )
            })
            .await;
        }
        exchanged
    }

    async fn exchange_checked(
        &self,
        gateway: &Caller,
        subject_token: &str,
        audience: &str,
    ) -> Result<Exchanged, Error> {
        let invalid = |message: String| refused("invalid_subject_token", message);
        let claims = self
            .member_tokens
            .verify(subject_token)
            .await
            .map_err(|error| invalid(format!("the subject token is not valid: {error}")))?;
        if claims.act.is_some() {
            return Err(invalid("a token obtained by exchange is not exchanged again".to_owned()));
        }
        let Some(client_id) = claims.sub.strip_prefix(CLIENT_SUBJECT_PREFIX) else {
            return Err(invalid("only a system client's token is exchanged".to_owned()));
        };
        let mut connection = self.store.pool().acquire().await?;
        let client = Store::system_client(&mut connection, client_id).await?;
        drop(connection);
        let Some(client) = client.filter(|client| client.active) else {
            return Err(invalid(format!("system client {client_id} is unknown or inactive")));
        };
        // The roles the token carried that the client still has; the
        // gateway's own role is never passed on.
        let mut scopes: Vec<Role> = claims
            .roles
            .iter()
            .filter_map(|name| Role::parse(name))
            .filter(|role| *role != Role::Gateway && client.scopes.contains(role))
            .collect();
        scopes.sort_by_key(|role| role.as_str());
        scopes.dedup();
        let exchanged = exchanged_claims(&self.settings, &claims.sub, &scopes, audience, &gateway.subject, claims.exp);
        let now = unix_now();
        if exchanged.exp <= now {
            return Err(invalid("the subject token has expired".to_owned()));
        }
        let access_token = self.keys.signer().await?.sign(&exchanged).map_err(ApiError::internal)?;
        let details = serde_json::json!({ "subject_token_id": claims.jti });
        self.record_issued(&Actor::of(gateway), "token.exchanged", &exchanged, details).await?;
        tracing::debug!(subject = %claims.sub, %audience, actor = %gateway.subject, "token exchanged");
        Ok(Exchanged { access_token, expires_in_seconds: exchanged.exp - now, scopes })
    }
}
