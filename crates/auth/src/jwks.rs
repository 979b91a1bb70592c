use std::future::Future;
use std::pin::Pin;

use jsonwebtoken::jwk::JwkSet;

/// Where verification keys come from. The verifier asks again when it sees a
/// key id it does not know (rate-limited) and when its cache grows old, so a
/// source may change its answer (key rotation).
pub trait JwksSource: Send + Sync + std::fmt::Debug + 'static {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<JwkSet, String>> + Send + '_>>;
}

/// A fixed key set (tests, benchmarks). Services use the identity service's
/// published keys (`esocial_kit::identity::IdentityJwks`).
#[derive(Debug, Clone)]
pub struct StaticJwks(pub JwkSet);

impl JwksSource for StaticJwks {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<JwkSet, String>> + Send + '_>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}
