//! The keys that sign access tokens.
//!
//! One Ed25519 key signs at a time. Rotation makes a new key the signer and
//! keeps the old one published until every token it signed has expired.
//! Private keys are stored in the database sealed with AES-256-GCM under a
//! master key that lives outside it (a file, a mounted secret), so replicas
//! share keys and a database dump alone cannot mint tokens.

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

/// The signing keys of the identity service.
pub struct KeyStore {
    pool: PgPool,
    master: MasterKey,
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
}

impl KeyStore {
    /// Opens the store, creating the first signing key if there is none.
    pub async fn open(pool: PgPool, master: MasterKey) -> Result<Self, KeyError> {
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
        let loaded = Self::load(&pool, &master).await?;
        Ok(Self { pool, master, loaded: RwLock::new(loaded) })
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

    async fn load(pool: &PgPool, master: &MasterKey) -> Result<Loaded, KeyError> {
        let keys: Vec<StoredKey> = sqlx::query_as(
            "SELECT kid, public_jwk, sealed_private_key, retired_at FROM signing_keys
             WHERE retired_at IS NULL OR publish_until > now() ORDER BY created_at DESC",
        )
        .fetch_all(pool)
        .await?;
        let current = keys
            .iter()
            .find(|key| key.retired_at.is_none())
            .ok_or_else(|| KeyError::Stored("no signing key in use".to_owned()))?;
        let pem = master.open(&current.kid, &current.sealed_private_key)?;
        let pem = String::from_utf8(pem).map_err(|_| KeyError::Stored("not UTF-8".to_owned()))?;
        let signer = SigningKey::from_pkcs8_pem(&pem).map_err(|error| KeyError::Stored(error.to_string()))?;
        if signer.key_id() != current.kid {
            return Err(KeyError::Stored(format!("key {} does not match its id", current.kid)));
        }
        let published = JwkSet { keys: keys.iter().map(|key| key.public_jwk.0.clone()).collect() };
        Ok(Loaded { signer: Arc::new(signer), published, loaded_at: Instant::now() })
    }

    async fn fresh(&self) -> Result<tokio::sync::RwLockReadGuard<'_, Loaded>, KeyError> {
        if self.loaded.read().await.loaded_at.elapsed() >= RELOAD_AFTER {
            let reloaded = Self::load(&self.pool, &self.master).await?;
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

    /// Makes a new key the signer; the old one stays published for
    /// `token_lifetime_max` (plus a minute of clock skew). Returns the new and
    /// old key ids and when the old one is withdrawn.
    pub async fn rotate(
        &self,
        transaction: &mut PgConnection,
        token_lifetime_max: Duration,
    ) -> Result<(String, String, DateTime<Utc>), KeyError> {
        let old: String = sqlx::query_scalar("SELECT kid FROM signing_keys WHERE retired_at IS NULL FOR UPDATE")
            .fetch_one(&mut *transaction)
            .await?;
        let publish_until = Utc::now()
            + chrono::Duration::from_std(token_lifetime_max + Duration::from_secs(60))
                .unwrap_or(chrono::Duration::hours(1));
        sqlx::query("UPDATE signing_keys SET retired_at = now(), publish_until = $2 WHERE kid = $1")
            .bind(&old)
            .bind(publish_until)
            .execute(&mut *transaction)
            .await?;
        let key = SigningKey::generate();
        Self::insert(transaction, &self.master, &key).await?;
        Ok((key.key_id().to_owned(), old, publish_until))
    }

    /// Reloads now (after a rotation this replica made).
    pub async fn reload(&self) -> Result<(), KeyError> {
        let reloaded = Self::load(&self.pool, &self.master).await?;
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
}
