use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use jsonwebtoken::jwk::JwkSet;

/// Where verification keys come from. The verifier asks again when it sees a
/// key id it does not know (rate-limited) and when its cache grows old, so a
/// source may change its answer (key rotation).
pub trait JwksSource: Send + Sync + std::fmt::Debug + 'static {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<JwkSet, String>> + Send + '_>>;
}

/// A fixed key set, for tests and for services given their keys at start.
#[derive(Debug, Clone)]
pub struct StaticJwks(pub JwkSet);

impl JwksSource for StaticJwks {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<JwkSet, String>> + Send + '_>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

/// A JWKS document on disk, read again on every refresh, so that replacing
/// the file rotates keys without a restart.
#[derive(Debug, Clone)]
pub struct FileJwks(pub PathBuf);

impl JwksSource for FileJwks {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<JwkSet, String>> + Send + '_>> {
        Box::pin(async move {
            let text = tokio::fs::read_to_string(&self.0)
                .await
                .map_err(|error| format!("cannot read JWKS file {}: {error}", self.0.display()))?;
            serde_json::from_str(&text)
                .map_err(|error| format!("JWKS file {} is not a JWK set: {error}", self.0.display()))
        })
    }
}
