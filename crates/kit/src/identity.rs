//! What every service needs from the identity service: the keys that verify
//! access tokens ([`IdentityJwks`]), and its own tokens for calling other
//! services ([`ServiceTokens`], client credentials).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use esocial_auth::{JwksSource, SigningKey};
use esocial_proto::identity::v1 as pb;
use esocial_proto::identity::v1::identity_service_client::IdentityServiceClient;
use jsonwebtoken::jwk::JwkSet;
use tonic::transport::{Channel, Endpoint};

fn channel(identity_url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(identity_url.to_owned())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .connect_lazy())
}

/// The identity service's published keys, fetched over gRPC (`GetJwks`).
#[derive(Debug, Clone)]
pub struct IdentityJwks {
    client: IdentityServiceClient<Channel>,
}

impl IdentityJwks {
    pub fn new(identity_url: &str) -> Result<Self, tonic::transport::Error> {
        Ok(Self { client: IdentityServiceClient::new(channel(identity_url)?) })
    }
}

/// The verifier of a service's callers: tokens for `audience` from the
/// configured issuer, checked only against the keys identity publishes.
/// Loads the keys once now; if identity is not up yet, every call is
/// refused until it is (the verifier fetches again on demand).
pub async fn verifier(
    auth: &crate::config::AuthSettings,
    audience: &str,
) -> Result<Arc<esocial_auth::TokenVerifier>, tonic::transport::Error> {
    let verifier = Arc::new(esocial_auth::TokenVerifier::new(
        esocial_auth::VerifierSettings::new(auth.token_issuer.clone(), audience),
        Arc::new(IdentityJwks::new(&auth.identity_url)?),
    ));
    match verifier.refresh().await {
        Ok(keys) => tracing::info!(keys, "token verification keys loaded"),
        Err(error) => {
            tracing::warn!(%error, "no token verification keys yet: every call will be refused until there are");
        }
    }
    Ok(verifier)
}

/// Converts published keys to a JWK set.
pub fn jwk_set(keys: &[pb::Jwk]) -> Result<JwkSet, serde_json::Error> {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|key| {
            serde_json::json!({
                "kid": key.kid, "kty": key.kty, "crv": key.crv, "x": key.x, "alg": key.alg, "use": key.r#use,
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "keys": keys }))
}

impl JwksSource for IdentityJwks {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<JwkSet, String>> + Send + '_>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            let keys = client
                .get_jwks(pb::GetJwksRequest {})
                .await
                .map_err(|status| format!("identity GetJwks failed: {}", status.message()))?
                .into_inner()
                .keys;
            jwk_set(&keys).map_err(|error| format!("identity returned keys that are not JWKs: {error}"))
        })
    }
}

/// The claims of an RFC 7523 client assertion.
#[derive(Debug, serde::Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// Access tokens for this service's own calls, obtained with its client
/// credentials and reused until shortly before they expire.
#[derive(Debug, Clone)]
pub struct ServiceTokens {
    client: IdentityServiceClient<Channel>,
    client_id: String,
    issuer: String,
    key: Arc<SigningKey>,
    cached: Arc<tokio::sync::Mutex<Option<(String, Instant)>>>,
}

/// A token is renewed this long before it expires (or at half its life if
/// that is shorter).
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(60);

impl ServiceTokens {
    /// `issuer` is the identity service's token issuer (the assertion's audience).
    pub fn new(
        identity_url: &str,
        issuer: &str,
        client_id: &str,
        key: SigningKey,
    ) -> Result<Self, tonic::transport::Error> {
        Ok(Self {
            client: IdentityServiceClient::new(channel(identity_url)?),
            client_id: client_id.to_owned(),
            issuer: issuer.to_owned(),
            key: Arc::new(key),
            cached: Arc::default(),
        })
    }

    /// A valid access token, from the cache or newly issued.
    pub async fn token(&self) -> Result<String, tonic::Status> {
        let mut cached = self.cached.lock().await;
        if let Some((token, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0);
        let assertion = Assertion {
            iss: &self.client_id,
            sub: &self.client_id,
            aud: &self.issuer,
            iat: now,
            exp: now + 120,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let signed = self.key.sign_claims(&assertion).map_err(|error| tonic::Status::internal(error.to_string()))?;
        let issued = self
            .client
            .clone()
            .issue_service_token(pb::IssueServiceTokenRequest { client_assertion: signed, scopes: Vec::new() })
            .await?
            .into_inner();
        let lifetime = Duration::from_secs(u64::from(issued.expires_in_seconds));
        let renew_in = lifetime.saturating_sub(RENEW_BEFORE_EXPIRY).max(lifetime / 2);
        *cached = Some((issued.access_token.clone(), Instant::now() + renew_in));
        Ok(issued.access_token)
    }

    /// Adds `authorization: Bearer <token>` to a request.
    pub async fn authorize<T>(&self, mut request: tonic::Request<T>) -> Result<tonic::Request<T>, tonic::Status> {
        let token = self.token().await?;
        let value = format!("Bearer {token}").parse().map_err(|_| tonic::Status::internal("token is not ASCII"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}
