//! The register's signing key: extracts and shared copies are signed with
//! it (JWS, EdDSA), and it is published (`GetSigningKeys`) for anyone to
//! verify them.

use base64::Engine as _;
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;

/// An Ed25519 key and its key id (the RFC 7638 thumbprint of its public JWK).
pub struct RegistryKey {
    key: ed25519_dalek::SigningKey,
    key_id: String,
    public_jwk: jsonwebtoken::jwk::Jwk,
}

impl std::fmt::Debug for RegistryKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("RegistryKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl RegistryKey {
    /// From a PKCS#8 PEM Ed25519 private key.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|error| anyhow::anyhow!("not an Ed25519 PKCS#8 key: {error}"))?;
        // Reuse the auth crate's JWK and thumbprint logic.
        let published = esocial_auth::SigningKey::from_pkcs8_pem(pem)?;
        Ok(Self { key, key_id: published.key_id().to_owned(), public_jwk: published.public_jwk().clone() })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_jwk(&self) -> &jsonwebtoken::jwk::Jwk {
        &self.public_jwk
    }

    fn header(&self) -> String {
        b64(serde_json::json!({ "alg": "EdDSA", "kid": self.key_id, "typ": "JOSE" }).to_string().as_bytes())
    }

    /// A compact JWS carrying `payload`.
    pub fn sign_compact(&self, payload: &[u8]) -> String {
        let signing_input = format!("{}.{}", self.header(), b64(payload));
        let signature = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&signature.to_bytes()))
    }

    /// A detached JWS (RFC 7515 appendix F) over `payload`:
    /// `<header>..<signature>`; the verifier puts back base64url(payload).
    pub fn sign_detached(&self, payload: &[u8]) -> String {
        let compact = self.sign_compact(payload);
        let mut parts = compact.split('.');
        let header = parts.next().unwrap_or_default();
        let signature = parts.nth(1).unwrap_or_default();
        format!("{header}..{signature}")
    }
}

/// Verifies a compact JWS made by [`RegistryKey::sign_compact`] with the
/// published key; returns the payload.
pub fn verify_compact(jws: &str, key: &jsonwebtoken::jwk::Jwk) -> Option<Vec<u8>> {
    let (signing_input, signature) = jws.rsplit_once('.')?;
    let (_, payload) = signing_input.split_once('.')?;
    let value = serde_json::to_value(key).ok()?;
    let point = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value.get("x")?.as_str()?).ok()?;
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&<[u8; 32]>::try_from(point.as_slice()).ok()?).ok()?;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature).ok()?;
    let signature = ed25519_dalek::Signature::from_slice(&signature).ok()?;
    verifying.verify_strict(signing_input.as_bytes(), &signature).ok()?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_the_published_key_and_not_after_tampering() {
        let generated = esocial_auth::SigningKey::generate();
        let key = RegistryKey::from_pem(generated.private_pkcs8_pem()).expect("key");
        let jws = key.sign_compact(b"{\"number\":\"ESR-2026-1\"}");
        assert_eq!(verify_compact(&jws, key.public_jwk()).as_deref(), Some(b"{\"number\":\"ESR-2026-1\"}".as_slice()));
        let tampered = jws.replacen("eyJu", "eyJv", 1);
        assert!(verify_compact(&tampered, key.public_jwk()).is_none());

        let detached = key.sign_detached(b"%PDF-1.7 ...");
        let (header, signature) = detached.split_once("..").expect("detached form");
        let rebuilt = format!("{header}.{}.{signature}", b64(b"%PDF-1.7 ..."));
        assert!(verify_compact(&rebuilt, key.public_jwk()).is_some());
    }
}
