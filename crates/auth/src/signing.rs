use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters,
    OctetKeyPairType, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::Claims;

/// An Ed25519 key that signs access tokens. Its key id is the RFC 7638
/// thumbprint of its public JWK, so the same key always has the same id.
pub struct SigningKey {
    key_id: String,
    public_jwk: Jwk,
    encoding_key: EncodingKey,
    private_pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SigningKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("not an Ed25519 PKCS#8 private key: {0}")]
    BadKey(String),
    #[error("cannot sign token: {0}")]
    Sign(String),
}

impl SigningKey {
    pub fn generate() -> Self {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        Self::from_dalek(&key)
    }

    /// Reads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, SigningError> {
        let key =
            ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map_err(|error| SigningError::BadKey(error.to_string()))?;
        Ok(Self::from_dalek(&key))
    }

    fn from_dalek(key: &ed25519_dalek::SigningKey) -> Self {
        let der = key.to_pkcs8_der().map(|document| document.as_bytes().to_vec()).unwrap_or_default();
        let private_pem = key.to_pkcs8_pem(LineEnding::LF).map(|pem| pem.to_string()).unwrap_or_default();
        let x =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, key.verifying_key().as_bytes());
        let mut public_jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                ..CommonParameters::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x,
            }),
        };
        // Thumbprints of OKP keys cannot fail; a random id is a safe fallback.
        let key_id =
            public_jwk.thumbprint(ThumbprintHash::SHA256).unwrap_or_else(|_| uuid::Uuid::new_v4().simple().to_string());
        public_jwk.common.key_id = Some(key_id.clone());
        Self { key_id, public_jwk, encoding_key: EncodingKey::from_ed_der(&der), private_pem }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_jwk(&self) -> &Jwk {
        &self.public_jwk
    }

    /// The private key as PKCS#8 PEM, for storing it.
    pub fn private_pkcs8_pem(&self) -> &str {
        &self.private_pem
    }

    /// A key set publishing the public halves of `keys`.
    pub fn key_set<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> JwkSet {
        JwkSet { keys: keys.into_iter().map(|key| key.public_jwk.clone()).collect() }
    }

    /// Signs access token claims as a compact JWS with `alg: EdDSA` and this
    /// key's `kid`.
    pub fn sign(&self, claims: &Claims) -> Result<String, SigningError> {
        self.sign_claims(claims)
    }

    /// Signs any claim set the same way (client assertions, for example).
    pub fn sign_claims<T: serde::Serialize>(&self, claims: &T) -> Result<String, SigningError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding_key).map_err(|error| SigningError::Sign(error.to_string()))
    }
}
