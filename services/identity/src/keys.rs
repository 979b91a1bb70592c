//! The keys that sign access tokens.
//!
//! One Ed25519 key signs at a time. Rotation makes a new key the signer and
//! keeps the old one published until every token it signed has expired.
//! Private keys are stored in the database sealed with AES-256-GCM under a
//! master key that lives outside it (a file, a mounted secret), so replicas
//! share keys and a database dump alone cannot mint tokens.
//!
//! Nothing in the table is published on trust: a key is published only when
//! its sealed private key opens with the master key and its public key and
//! key id are the ones derived from that private key, so a row written into
//! the database without the master key publishes nothing. A retired key is
//! published until the tokens it signed have expired and never longer,
//! whatever its row says.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use esocial_auth::SigningKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use sqlx::{PgConnection, PgPool};
use tokio::sync::RwLock;

/// The key that seals signing keys at rest.
pub struct MasterKey(LessSafeKey);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("MasterKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("master key file {path}: {reason}")]
    MasterKeyFile { path: String, reason: String },
    #[error("a sealed signing key does not open with this master key")]
    Unseal,
    #[error("a stored signing key is not valid: {0}")]
    Stored(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let key = UnboundKey::new(&AES_256_GCM, bytes).expect("AES-256-GCM accepts every 32-byte key");
        Self(LessSafeKey::new(key))
    }

    /// Reads a master key file: 32 random bytes, base64 encoded.
    pub fn read(path: &std::path::Path) -> Result<Self, KeyError> {
        let failure = |reason: String| KeyError::MasterKeyFile { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|error| failure(error.to_string()))?;
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text.trim())
            .map_err(|error| failure(format!("not base64: {error}")))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| failure("must hold exactly 32 bytes".to_owned()))?;
        Ok(Self::from_bytes(&bytes))
    }

    /// A new random master key, base64, for a key file.
    pub fn generate_encoded() -> Result<String, KeyError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| KeyError::Stored("no randomness".to_owned()))?;
        Ok(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes))
    }

    fn seal(&self, key_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| KeyError::Stored("no randomness".to_owned()))?;
        let mut sealed = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(key_id.as_bytes()), &mut sealed)
            .map_err(|_| KeyError::Stored("sealing failed".to_owned()))?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        Ok(stored)
    }

    fn open(&self, key_id: &str, stored: &[u8]) -> Result<Vec<u8>, KeyError> {
        if stored.len() < NONCE_LEN {
            return Err(KeyError::Unseal);
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Unseal)?;
        let mut buffer = sealed.to_vec();
        let plaintext =
            self.0.open_in_place(nonce, Aad::from(key_id.as_bytes()), &mut buffer).map_err(|_| KeyError::Unseal)?;
        Ok(plaintext.to_vec())
    }
}

struct Loaded {
    signer: Arc<SigningKey>,
    published: JwkSet,
    loaded_at: Instant,
}

/// How long replicas may disagree about the signer after a rotation.
const RELOAD_AFTER: Duration = Duration::from_secs(30);
/// A retired key stays published this much longer than the longest token
/// lifetime (clock skew between replicas and services).
const RETIRED_KEY_MARGIN: Duration = Duration::from_secs(60);

/// The signing keys of the identity service.
pub struct KeyStore {
    pool: PgPool,
    master: MasterKey,
    /// The longest any token lives; a retired key is published at most this
    /// (and the margin) after its retirement.
    token_lifetime_max: Duration,
    loaded: RwLock<Loaded>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("KeyStore").finish_non_exhaustive()
    }
}

#[derive(sqlx::FromRow)]
struct StoredKey {
    kid: String,
    public_jwk: sqlx::types::Json<Jwk>,
    sealed_private_key: Vec<u8>,
    retired_at: Option<DateTime<Utc>>,
    publish_until: Option<DateTime<Utc>>,
}

impl StoredKey {
    /// The private key, when its row checks out: it opens with the master
    /// key (bound to its key id), and the key id and public key derived from
    /// it are the row's.
    fn open(&self, master: &MasterKey) -> Result<SigningKey, KeyError> {
        let pem = master.open(&self.kid, &self.sealed_private_key)?;
        let pem = String::from_utf8(pem).map_err(|_| KeyError::Stored(format!("key {} is not UTF-8", self.kid)))?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|error| KeyError::Stored(error.to_string()))?;
        if key.key_id() != self.kid {
            return Err(KeyError::Stored(format!("key {} does not match its id", self.kid)));
        }
        let derived = serde_json::to_value(key.public_jwk()).ok();
        if derived.is_none() || derived != serde_json::to_value(&self.public_jwk.0).ok() {
            return Err(KeyError::Stored(format!("the public key stored for {} is not its own", self.kid)));
        }
        Ok(key)
    }

    /// Whether a retired key is still to be published at `now`: before its
    /// `publish_until`, and before its retirement plus the longest token
    /// lifetime and the margin.
    fn published_at(&self, now: DateTime<Utc>, token_lifetime_max: Duration) -> bool {
        let (Some(retired_at), Some(publish_until)) = (self.retired_at, self.publish_until) else {
            return false;
        };
        let longest =
            chrono::Duration::from_std(token_lifetime_max + RETIRED_KEY_MARGIN).unwrap_or(chrono::Duration::hours(1));
        let skew = chrono::Duration::from_std(RETIRED_KEY_MARGIN).unwrap_or(chrono::Duration::minutes(1));
        retired_at <= now + skew && now < publish_until.min(retired_at + longest)
    }
}

impl KeyStore {
    /// Opens the store, creating the first signing key if there is none.
    /// `token_lifetime_max` is the longest lifetime of a token it signs.
    pub async fn open(pool: PgPool, master: MasterKey, token_lifetime_max: Duration) -> Result<Self, KeyError> {
        let mut connection = pool.acquire().await?;
        let signer = Self::current_signer(&mut connection).await?;
        drop(connection);
        if signer.is_none() {
            let mut transaction = pool.begin().await?;
            match Self::insert(&mut transaction, &master, &SigningKey::generate()).await {
                Ok(()) => transaction.commit().await?,
                // Another replica created the first key at the same moment.
                Err(KeyError::Database(error))
                    if esocial_kit::db::is_constraint_violation(&error, "signing_keys_one_in_use") => {}
                Err(error) => return Err(error),
            }
        }
        let loaded = Self::load(&pool, &master, token_lifetime_max).await?;
        Ok(Self { pool, master, token_lifetime_max, loaded: RwLock::new(loaded) })
    }

    async fn current_signer(connection: &mut PgConnection) -> Result<Option<String>, KeyError> {
        Ok(sqlx::query_scalar("SELECT kid FROM signing_keys WHERE retired_at IS NULL")
            .fetch_optional(connection)
            .await?)
    }

    async fn insert(connection: &mut PgConnection, master: &MasterKey, key: &SigningKey) -> Result<(), KeyError> {
        let sealed = master.seal(key.key_id(), key.private_pkcs8_pem().as_bytes())?;
        sqlx::query("INSERT INTO signing_keys (kid, public_jwk, sealed_private_key) VALUES ($1, $2, $3)")
            .bind(key.key_id())
            .bind(sqlx::types::Json(key.public_jwk()))
            .bind(sealed)
            .execute(connection)
            .await?;
        Ok(())
    }

    async fn load(pool: &PgPool, master: &MasterKey, token_lifetime_max: Duration) -> Result<Loaded, KeyError> {
        let keys: Vec<StoredKey> = sqlx::query_as(
            "SELECT kid, public_jwk, sealed_private_key, retired_at, publish_until FROM signing_keys
             WHERE retired_at IS NULL OR publish_until > now() ORDER BY created_at DESC",
        )
        .fetch_all(pool)
        .await?;
        let current = keys
            .iter()
            .find(|key| key.retired_at.is_none())
            .ok_or_else(|| KeyError::Stored("no signing key in use".to_owned()))?;
        let signer = current.open(master)?;
        let now = Utc::now();
        let mut published = vec![signer.public_jwk().clone()];
        for retired in keys.iter().filter(|key| key.published_at(now, token_lifetime_max)) {
            match retired.open(master) {
                Ok(key) => published.push(key.public_jwk().clone()),
                Err(error) => tracing::error!(kid = retired.kid, %error, "a retired signing key is not published"),
            }
        }
        Ok(Loaded { signer: Arc::new(signer), published: JwkSet { keys: published }, loaded_at: Instant::now() })
    }

    async fn fresh(&self) -> Result<tokio::sync::RwLockReadGuard<'_, Loaded>, KeyError> {
        if self.loaded.read().await.loaded_at.elapsed() >= RELOAD_AFTER {
            let reloaded = Self::load(&self.pool, &self.master, self.token_lifetime_max).await?;
            *self.loaded.write().await = reloaded;
        }
        Ok(self.loaded.read().await)
    }

    /// The key that signs tokens now.
    pub async fn signer(&self) -> Result<Arc<SigningKey>, KeyError> {
        Ok(self.fresh().await?.signer.clone())
    }

    /// The published keys: the signer and retired keys whose tokens may still be valid.
    pub async fn published(&self) -> Result<JwkSet, KeyError> {
        Ok(self.fresh().await?.published.clone())
    }

    /// Makes a new key the signer; the old one stays published for the
    /// longest token lifetime (plus a minute of clock skew). Returns the new
    /// and old key ids and when the old one is withdrawn.
    pub async fn rotate(&self, transaction: &mut PgConnection) -> Result<(String, String, DateTime<Utc>), KeyError> {
        let old: String = sqlx::query_scalar("SELECT kid FROM signing_keys WHERE retired_at IS NULL FOR UPDATE")
            .fetch_one(&mut *transaction)
            .await?;
        let published_for = (self.token_lifetime_max + RETIRED_KEY_MARGIN).as_secs_f64();
        let publish_until: DateTime<Utc> = sqlx::query_scalar(
            "UPDATE signing_keys SET retired_at = now(), publish_until = now() + make_interval(secs => $2)
             WHERE kid = $1 RETURNING publish_until",
        )
        .bind(&old)
        .bind(published_for)
        .fetch_one(&mut *transaction)
        .await?;
        let key = SigningKey::generate();
        Self::insert(transaction, &self.master, &key).await?;
        Ok((key.key_id().to_owned(), old, publish_until))
    }

    /// Reloads now (after a rotation this replica made).
    pub async fn reload(&self) -> Result<(), KeyError> {
        let reloaded = Self::load(&self.pool, &self.master, self.token_lifetime_max).await?;
        *self.loaded.write().await = reloaded;
        Ok(())
    }
}

/// The identity service verifies its own admin callers' tokens with its own
/// published keys, in process.
#[derive(Debug, Clone)]
pub struct LocalJwks(pub Arc<KeyStore>);

impl esocial_auth::JwksSource for LocalJwks {
    fn fetch(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<JwkSet, String>> + Send + '_>> {
        Box::pin(async move { self.0.published().await.map_err(|error| error.to_string()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_the_same_master_key_and_key_id() {
        let master = MasterKey::from_bytes(&[7u8; 32]);
        let sealed = master.seal("kid-1", b"secret").expect("sealed");
        assert_eq!(master.open("kid-1", &sealed).expect("opens"), b"secret");
        assert!(master.open("kid-2", &sealed).is_err(), "bound to its key id");
        assert!(MasterKey::from_bytes(&[8u8; 32]).open("kid-1", &sealed).is_err(), "another master key");
        let mut tampered = sealed;
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(master.open("kid-1", &tampered).is_err(), "tampering is detected");
    }

    fn stored(master: &MasterKey, key: &SigningKey, retired_at: Option<DateTime<Utc>>) -> StoredKey {
        StoredKey {
            kid: key.key_id().to_owned(),
            public_jwk: sqlx::types::Json(key.public_jwk().clone()),
            sealed_private_key: master.seal(key.key_id(), key.private_pkcs8_pem().as_bytes()).expect("sealed"),
            retired_at,
            publish_until: retired_at.map(|at| at + chrono::Duration::minutes(16)),
        }
    }

    #[test]
    fn a_stored_key_checks_out_only_when_it_opens_and_its_public_half_and_id_are_its_own() {
        let master = MasterKey::from_bytes(&[7u8; 32]);
        let key = SigningKey::generate();
        let good = stored(&master, &key, None);
        assert_eq!(good.open(&master).expect("checks out").key_id(), key.key_id());

        let other_master = MasterKey::from_bytes(&[9u8; 32]);
        assert!(matches!(good.open(&other_master), Err(KeyError::Unseal)), "sealed under another master key");

        let planted = StoredKey { sealed_private_key: vec![0u8], ..stored(&master, &key, None) };
        assert!(planted.open(&master).is_err(), "not sealed at all");

        let attacker = SigningKey::generate();
        let mut swapped = stored(&master, &key, None);
        swapped.public_jwk = sqlx::types::Json(attacker.public_jwk().clone());
        assert!(swapped.open(&master).is_err(), "another key's public half under this key id");

        let mut renamed = stored(&master, &attacker, None);
        renamed.kid = key.key_id().to_owned();
        assert!(renamed.open(&master).is_err(), "sealed for another key id");
    }

    #[test]
    fn a_retired_key_is_published_no_longer_than_the_longest_token_lives() {
        let master = MasterKey::from_bytes(&[7u8; 32]);
        let key = SigningKey::generate();
        let lifetime = Duration::from_secs(900);
        let now = Utc::now();
        let just_retired = stored(&master, &key, Some(now - chrono::Duration::minutes(1)));
        assert!(just_retired.published_at(now, lifetime));
        let long_ago = StoredKey {
            publish_until: Some(now + chrono::Duration::days(3650)),
            ..stored(&master, &key, Some(now - chrono::Duration::days(365)))
        };
        assert!(!long_ago.published_at(now, lifetime), "publish_until beyond the longest token lifetime is capped");
        let past_its_time = stored(&master, &key, Some(now - chrono::Duration::minutes(17)));
        assert!(!past_its_time.published_at(now, lifetime));
        let retired_later = StoredKey {
            publish_until: Some(now + chrono::Duration::days(3650)),
            ..stored(&master, &key, Some(now + chrono::Duration::days(365)))
        };
        assert!(!retired_later.published_at(now, lifetime), "a retirement in the future is no retirement");
        assert!(!stored(&master, &key, None).published_at(now, lifetime), "the signer is not a retired key");
    }
}
