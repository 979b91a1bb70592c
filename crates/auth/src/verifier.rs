use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::{Mutex, RwLock};

use crate::{Claims, JwksSource};

/// What the verifier requires of a token.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    /// The only accepted `iss`.
    pub issuer: String,
    /// This service's audience; the token's `aud` must contain it.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Minimum time between two key set fetches (caused by unknown key ids
    /// or by an old key set), whether the last one worked or not, while any
    /// keys are held.
    pub min_refresh_interval: Duration,
    /// Age after which the cached key set is fetched again before use (at
    /// most once per `min_refresh_interval`; until a fetch works, the keys
    /// held are used).
    pub max_key_age: Duration,
}

impl VerifierSettings {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: Duration::from_secs(30),
            min_refresh_interval: Duration::from_secs(10),
            max_key_age: Duration::from_secs(300),
        }
    }
}

/// Why a token was refused. Shown to the caller only as "invalid token"; the
/// reason goes to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerificationError {
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token algorithm {0} is not accepted (only EdDSA)")]
    WrongAlgorithm(String),
    #[error("token has no key id")]
    MissingKeyId,
    #[error("token key id {0} is not in the key set")]
    UnknownKeyId(String),
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience does not include this service")]
    WrongAudience,
    #[error("token lacks the required claim {0}")]
    MissingClaim(String),
    #[error("verification keys are unavailable: {0}")]
    KeysUnavailable(String),
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// Verifies bearer tokens against a JWKS. Cheap to share (`Arc`).
///
/// Tokens that verified are remembered (keyed by the whole token, so only
/// the very same bytes match) until they expire, up to
/// [`VERIFIED_TOKENS_MAX`]; a signature check costs far more than the rest
/// of a call. Expiry and not-before are checked again on every use, and the
/// memory is cleared whenever the key set is fetched again.
pub struct TokenVerifier {
    settings: VerifierSettings,
    validation: Validation,
    source: Arc<dyn JwksSource>,
    cache: RwLock<KeyCache>,
    /// Serialises fetches and remembers when the last one started.
    last_fetch: Mutex<Option<Instant>>,
    verified: std::sync::Mutex<HashMap<String, Remembered, TailHashing>>,
    /// Counts key set fetches, so a verification that raced with one is not
    /// remembered under the new keys.
    key_generation: std::sync::atomic::AtomicU64,
}

/// Hashes the tokens remembered by their last [`TAIL_HASHED`] bytes and
/// their length, with SipHash under random keys as `HashMap`'s default
/// does: a token is looked up on every call, and hashing all of it (some
/// 600 bytes) cost more than the rest of the look-up. The tail is the
/// signature's, which differs between any two tokens; equal tails only
/// share a bucket, since keys are still compared whole, and only tokens
/// that verified are ever put in the map, so no caller can fill one bucket.
#[derive(Clone, Default)]
struct TailHashing(std::collections::hash_map::RandomState);

/// How much of a token's end is hashed.
const TAIL_HASHED: usize = 32;

impl std::hash::BuildHasher for TailHashing {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

struct TailHasher(std::collections::hash_map::DefaultHasher);

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        let tail = bytes.get(bytes.len().saturating_sub(TAIL_HASHED)..).unwrap_or(bytes);
        self.0.write_usize(bytes.len());
        self.0.write(tail);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

struct Remembered {
    claims: Arc<Claims>,
    key_id: Arc<str>,
}

/// Verified tokens remembered at most; when full, the memory starts over.
pub const VERIFIED_TOKENS_MAX: usize = 10_000;

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0)
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TokenVerifier")
            .field("settings", &self.settings)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Tokens longer than this are refused before any parsing.
const TOKEN_LENGTH_MAX: usize = 8 * 1024;

impl TokenVerifier {
    pub fn new(settings: VerifierSettings, source: Arc<dyn JwksSource>) -> Self {
        // The algorithm is pinned here; the token header cannot choose it.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = settings.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Self {
            settings,
            validation,
            source,
            cache: RwLock::new(KeyCache::default()),
            last_fetch: Mutex::new(None),
            verified: std::sync::Mutex::new(HashMap::default()),
            key_generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn settings(&self) -> &VerifierSettings {
        &self.settings
    }

    /// Until when (seconds since 1970-01-01 UTC) a token with these claims
    /// is accepted: its `exp` and the leeway for clock skew.
    pub fn accepted_until(&self, claims: &Claims) -> u64 {
        claims.exp.saturating_add(self.settings.leeway.as_secs())
    }

    /// Verifies a compact JWS and returns its claims. (Shared: a token seen
    /// before answers with the claims remembered, without copying them.)
    pub async fn verify(&self, token: &str) -> Result<Arc<Claims>, VerificationError> {
        if token.len() > TOKEN_LENGTH_MAX {
            return Err(VerificationError::Malformed);
        }
        if let Some(claims) = self.remembered(token).await {
            return Ok(claims);
        }
        let generation = self.key_generation.load(std::sync::atomic::Ordering::SeqCst);
        // Boxed: the full check may fetch the key set, and its future, held
        // inline, would make every call's future (a token remembered too)
        // that much larger to allocate and move.
        let (claims, key_id) = Box::pin(self.verify_signature_and_claims(token)).await?;
        let claims = Arc::new(claims);
        if let Ok(mut verified) = self.verified.lock()
            && self.key_generation.load(std::sync::atomic::Ordering::SeqCst) == generation
        {
            if verified.len() >= VERIFIED_TOKENS_MAX {
                verified.clear();
            }
            verified.insert(token.to_owned(), Remembered { claims: claims.clone(), key_id: key_id.into() });
        }
        Ok(claims)
    }

    /// The claims of a token verified before, if it is still within its
    /// validity (with the same leeway as a full check) and its key is still in
    /// a key set younger than `max_key_age`; otherwise the token goes through
    /// a full verification, which fetches the key set when it is old.
    async fn remembered(&self, token: &str) -> Option<Arc<Claims>> {
        let now = unix_now();
        let leeway = self.settings.leeway.as_secs();
        // Only the claims of a current token are handed out.
        let (claims, key_id) = {
            let mut verified = self.verified.lock().ok()?;
            let remembered = verified.get(token)?;
            let claims = &remembered.claims;
            let current =
                self.accepted_until(claims) > now && claims.nbf.is_none_or(|nbf| nbf <= now.saturating_add(leeway));
            if !current {
                verified.remove(token);
                return None;
            }
            (remembered.claims.clone(), remembered.key_id.clone())
        };
        let cache = self.cache.read().await;
        let keys_fresh = cache.fetched_at.is_some_and(|at| at.elapsed() < self.settings.max_key_age);
        (keys_fresh && cache.keys.contains_key(&*key_id)).then_some(claims)
    }

    async fn verify_signature_and_claims(&self, token: &str) -> Result<(Claims, String), VerificationError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerificationError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(VerificationError::WrongAlgorithm(format!("{:?}", header.alg)));
        }
        let key_id = header.kid.ok_or(VerificationError::MissingKeyId)?;
        let key = self.key(&key_id).await?;
        let data =
            jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|error| map_decode_error(&error))?;
        if data.claims.jti.is_empty() {
            return Err(VerificationError::MissingClaim("jti".to_owned()));
        }
        Ok((data.claims, key_id))
    }

    /// Fetches the key set now, replacing the cache.
    pub async fn refresh(&self) -> Result<usize, VerificationError> {
        let mut last_fetch = self.last_fetch.lock().await;
        self.fetch_into_cache(&mut last_fetch).await
    }

    async fn fetch_into_cache(&self, last_fetch: &mut Option<Instant>) -> Result<usize, VerificationError> {
        *last_fetch = Some(Instant::now());
        let set = self.source.fetch().await.map_err(VerificationError::KeysUnavailable)?;
        let keys = usable_keys(&set);
        let count = keys.len();
        *self.cache.write().await = KeyCache { keys, fetched_at: Some(Instant::now()) };
        // A key may have gone: tokens must prove themselves again.
        self.key_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut verified) = self.verified.lock() {
            verified.clear();
        }
        Ok(count)
    }

    async fn key(&self, key_id: &str) -> Result<DecodingKey, VerificationError> {
        let held = {
            let cache = self.cache.read().await;
            let fresh = cache.fetched_at.is_some_and(|at| at.elapsed() < self.settings.max_key_age);
            let held = cache.keys.get(key_id).cloned();
            if fresh && let Some(key) = held {
                return Ok(key);
            }
            held
        };
        // Unknown key id or an old cache: fetch, at most once per interval,
        // whether the last fetch worked or not. While the identity service
        // does not answer, calls go on with the keys held: neither does each
        // wait for a fetch of its own, one after another, nor does one that
        // holds its key queue behind the fetch another call is making.
        let mut last_fetch = match (self.last_fetch.try_lock(), held) {
            (Ok(last_fetch), _) => last_fetch,
            (Err(_), Some(key)) => return Ok(key),
            (Err(_), None) => self.last_fetch.lock().await,
        };
        // With no keys at all nothing can be verified: a call fetches then,
        // however soon after a fetch that failed.
        let may_fetch = last_fetch.is_none_or(|at| at.elapsed() >= self.settings.min_refresh_interval)
            || self.cache.read().await.keys.is_empty();
        if may_fetch && let Err(error) = self.fetch_into_cache(&mut last_fetch).await {
            tracing::warn!(%error, "cannot refresh token verification keys");
            // Keep verifying with the keys we have rather than refuse all.
            if self.cache.read().await.keys.is_empty() {
                return Err(error);
            }
        }
        drop(last_fetch);
        self.cache
            .read()
            .await
            .keys
            .get(key_id)
            .cloned()
            .ok_or_else(|| VerificationError::UnknownKeyId(key_id.to_owned()))
    }
}

/// The Ed25519 signing keys of a set. Everything else is ignored: keys of
/// other types (an HMAC "oct" key must never verify a token), keys for
/// encryption, and keys whose point does not decode.
fn usable_keys(set: &JwkSet) -> HashMap<String, DecodingKey> {
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(key_id) = jwk.common.key_id.clone() else { continue };
        if jwk.common.public_key_use.as_ref().is_some_and(|key_use| *key_use != PublicKeyUse::Signature) {
            continue;
        }
        if jwk.common.key_algorithm.is_some_and(|algorithm| algorithm != KeyAlgorithm::EdDSA) {
            continue;
        }
        let AlgorithmParameters::OctetKeyPair(parameters) = &jwk.algorithm else { continue };
        if parameters.curve != EllipticCurve::Ed25519 {
            continue;
        }
        let Ok(point) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&parameters.x) else { continue };
        let Ok(point) = <[u8; 32]>::try_from(point.as_slice()) else { continue };
        if ed25519_dalek::VerifyingKey::from_bytes(&point).is_err() {
            continue;
        }
        if let Ok(key) = DecodingKey::from_ed_components(&parameters.x) {
            keys.insert(key_id, key);
        }
    }
    keys
}

fn map_decode_error(error: &jsonwebtoken::errors::Error) -> VerificationError {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature => VerificationError::BadSignature,
        ErrorKind::ExpiredSignature => VerificationError::Expired,
        ErrorKind::ImmatureSignature => VerificationError::NotYetValid,
        ErrorKind::InvalidIssuer => VerificationError::WrongIssuer,
        ErrorKind::InvalidAudience => VerificationError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => VerificationError::MissingClaim(claim.clone()),
        ErrorKind::InvalidAlgorithm => VerificationError::WrongAlgorithm("mismatch".to_owned()),
        _ => VerificationError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{TAIL_HASHED, TailHashing};

    #[test]
    fn tokens_that_share_their_hashed_tail_are_still_told_apart() {
        let tail = "s".repeat(TAIL_HASHED);
        let first = format!("header.first-claims.{tail}");
        let second = format!("header.other-claims.{tail}");
        let longer = format!("header.other-claims-longer.{tail}");
        let mut remembered: HashMap<String, u8, TailHashing> = HashMap::default();
        remembered.insert(first.clone(), 1);
        remembered.insert(second.clone(), 2);
        remembered.insert(longer.clone(), 3);
        assert_eq!(remembered.len(), 3);
        assert_eq!(remembered.get(first.as_str()), Some(&1));
        assert_eq!(remembered.get(second.as_str()), Some(&2));
        assert_eq!(remembered.get(longer.as_str()), Some(&3));
        assert_eq!(remembered.get(format!("header.third-claims.{tail}").as_str()), None);
        // Shorter than the tail: hashed whole.
        remembered.insert("short".to_owned(), 4);
        assert_eq!(remembered.get("short"), Some(&4));
        assert_eq!(remembered.get("shorT"), None);
    }
}
