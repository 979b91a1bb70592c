//! The tokens a forwarded call carries to the service behind the gateway.
//!
//! A member system's token is for the gateway (its client may be limited to
//! the gateway's audience). Before a call goes on, the gateway exchanges it
//! at identity (RFC 8693, `ExchangeToken`, with the gateway's own client
//! credentials and role `gateway`) for a token good only at that one
//! service, naming the member's system client as subject and the gateway as
//! actor. The exchanged token is remembered per member token and audience
//! until shortly before it expires, so identity is asked once per member
//! token and service, and concurrent first calls share one exchange.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esocial_kit::identity::ServiceTokens;
use esocial_proto::identity::v1 as identity_pb;
use esocial_proto::identity::v1::identity_service_client::IdentityServiceClient;
use http::HeaderValue;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt as _;

/// Exchanged tokens remembered at most; when full, the memory starts over.
const REMEMBERED_MAX: usize = 10_000;
/// An exchanged token is replaced this long before it expires (or at half
/// its life if that is shorter).
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(30);
/// How long an exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// The reason identity gives when it refuses the member's token itself.
const REFUSED_SUBJECT_TOKEN: &str = "INVALID_SUBJECT_TOKEN";

/// The audience of the service that serves a proto package:
/// `esocial.registry.v1` → `esocial.registry`.
pub fn audience_of_package(package: &str) -> &str {
    match package.rsplit_once('.') {
        Some((service, version))
            if version.len() > 1
                && version.starts_with('v')
                && version[1..].chars().all(|character| character.is_ascii_digit()) =>
        {
            service
        }
        _ => package,
    }
}

/// A connection to identity, made at the first call, each call bounded by
/// `timeout`.
pub fn identity_channel(identity_url: &str, timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(identity_url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(timeout)
        .connect_lazy())
}

/// A token exchanged, as the value of [`esocial_auth::FORWARDED_TOKEN_HEADER`]
/// a forwarded call carries.
#[derive(Debug, Clone)]
struct Exchanged {
    token: HeaderValue,
    renew_at: Instant,
}

type Slot = Arc<tokio::sync::OnceCell<Exchanged>>;

/// Exchanges member tokens at identity and remembers the results.
#[derive(Debug)]
pub struct InternalTokens {
    identity: IdentityServiceClient<Channel>,
    credentials: ServiceTokens,
    /// Keyed by the member token's id (`jti`) and the audience.
    remembered: Mutex<HashMap<(String, Arc<str>), Slot>>,
}

impl InternalTokens {
    /// `credentials` are the gateway's own (a client with role `gateway`).
    pub fn new(identity_url: &str, credentials: ServiceTokens) -> Result<Self, tonic::transport::Error> {
        let channel = identity_channel(identity_url, EXCHANGE_TIMEOUT)?;
        Ok(Self { identity: IdentityServiceClient::new(channel), credentials, remembered: Mutex::default() })
    }

    /// The token (the value of [`esocial_auth::FORWARDED_TOKEN_HEADER`]) for
    /// a call of the member whose verified token is `member_token` (with id
    /// `token_id`) to the service of `audience`.
    pub async fn token(&self, member_token: &str, token_id: &str, audience: &Arc<str>) -> Result<HeaderValue, Status> {
        let slot = self.slot(token_id, audience);
        // Boxed: the exchange is a call to identity, whose future, held
        // inline, would make every forwarded call's future that much larger.
        let exchanged = slot.get_or_try_init(|| Box::pin(self.exchange(member_token, audience))).await?;
        Ok(exchanged.token.clone())
    }

    /// The slot of a member token and audience: a current one, or a new
    /// empty one in place of a missing or old one.
    fn slot(&self, token_id: &str, audience: &Arc<str>) -> Slot {
        let Ok(mut remembered) = self.remembered.lock() else {
            return Slot::default();
        };
        let key = (token_id.to_owned(), audience.clone());
        if let Some(slot) = remembered.get(&key)
            && slot.get().is_none_or(|exchanged| Instant::now() < exchanged.renew_at)
        {
            return slot.clone();
        }
        if remembered.len() >= REMEMBERED_MAX {
            remembered.clear();
        }
        let slot = Slot::default();
        remembered.insert(key, slot.clone());
        slot
    }

    async fn exchange(&self, member_token: &str, audience: &str) -> Result<Exchanged, Status> {
        let request = tonic::Request::new(identity_pb::ExchangeTokenRequest {
            subject_token: member_token.to_owned(),
            audience: audience.to_owned(),
        });
        let request = self.credentials.authorize(request).await.map_err(|status| {
            tracing::error!(code = ?status.code(), message = status.message(), "the gateway cannot get its own token");
            Status::unavailable("the gateway cannot obtain a token for the service behind it")
        })?;
        let started = Instant::now();
        let response = match self.identity.clone().exchange_token(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if refused_subject_token(&status) => {
                tracing::info!(message = status.message(), "identity refused to exchange a member's token");
                return Err(Status::unauthenticated(format!(
                    "the member's token is not accepted for the services behind the gateway: {}",
                    status.message()
                )));
            }
            Err(status) => {
                tracing::error!(code = ?status.code(), message = status.message(), "token exchange failed");
                return Err(Status::unavailable("the gateway cannot obtain a token for the service behind it"));
            }
        };
        let token = HeaderValue::try_from(response.access_token)
            .map_err(|_| Status::internal("identity returned a token that is not a header value"))?;
        let lifetime = Duration::from_secs(u64::from(response.expires_in_seconds));
        let renew_in = lifetime.saturating_sub(RENEW_BEFORE_EXPIRY).max(lifetime / 2);
        tracing::debug!(audience, elapsed_ms = started.elapsed().as_millis(), "member token exchanged");
        Ok(Exchanged { token, renew_at: Instant::now() + renew_in })
    }
}

fn refused_subject_token(status: &Status) -> bool {
    status.code() == tonic::Code::Unauthenticated
        && status.get_details_error_info().is_some_and(|info| info.reason == REFUSED_SUBJECT_TOKEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_names_its_service_audience() {
        assert_eq!(audience_of_package("esocial.registry.v1"), "esocial.registry");
        assert_eq!(audience_of_package("esocial.identity.v12"), "esocial.identity");
        assert_eq!(audience_of_package("esocial.registry"), "esocial.registry");
        assert_eq!(audience_of_package("esocial.vision.v"), "esocial.vision.v");
        assert_eq!(audience_of_package("esocial.vault.vx1"), "esocial.vault.vx1");
    }
}
