//! Where the bearer token for the gateway comes from.

use std::future::Future;
use std::sync::Arc;

/// Why no access token could be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no access token for the exchange gateway: {0}")]
pub struct TokenError(pub String);

/// A source of access tokens for calls to the exchange gateway. Every call
/// asks for a token, so a source should cache (the kit's `ServiceTokens`
/// reuses a token until shortly before it expires).
pub trait TokenSource: Send + Sync {
    /// A token valid now, without the `Bearer ` prefix.
    fn token(&self) -> impl Future<Output = Result<String, TokenError>> + Send;
}

/// The service's own tokens from the identity service, by client credentials.
impl TokenSource for esocial_kit::identity::ServiceTokens {
    async fn token(&self) -> Result<String, TokenError> {
        esocial_kit::identity::ServiceTokens::token(self)
            .await
            .map_err(|status| TokenError(status.message().to_owned()))
    }
}

impl<Source: TokenSource> TokenSource for Arc<Source> {
    async fn token(&self) -> Result<String, TokenError> {
        self.as_ref().token().await
    }
}

/// The same token for every call: for tests and the simulators, which do not
/// check tokens.
#[derive(Clone)]
pub struct FixedToken(String);

impl FixedToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
}

impl std::fmt::Debug for FixedToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A token is a credential: never printed.
        formatter.write_str("FixedToken(***)")
    }
}

impl TokenSource for FixedToken {
    async fn token(&self) -> Result<String, TokenError> {
        Ok(self.0.clone())
    }
}
