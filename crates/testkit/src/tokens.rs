use std::time::{SystemTime, UNIX_EPOCH};

use esocial_auth::{Audience, Claims, Role, SigningKey};

use crate::TempDir;

/// Stands in for the identity service in tests: a signing key, its JWKS in a
/// file the service under test is pointed at, and tokens on demand.
#[derive(Debug)]
pub struct TestTokens {
    pub issuer: String,
    key: SigningKey,
    directory: TempDir,
}

impl TestTokens {
    pub fn new() -> anyhow::Result<Self> {
        let key = SigningKey::generate();
        let directory = TempDir::new("jwks")?;
        let set = SigningKey::key_set([&key]);
        std::fs::write(directory.path().join("jwks.json"), serde_json::to_vec_pretty(&set)?)?;
        Ok(Self { issuer: "https://identity.esocial.test".to_owned(), key, directory })
    }

    pub fn jwks_file(&self) -> std::path::PathBuf {
        self.directory.path().join("jwks.json")
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Claims for an account with these roles, valid for 15 minutes, for
    /// `audience` (e.g. `esocial.classifier`).
    pub fn claims(&self, audience: &str, roles: &[Role]) -> Claims {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0);
        Claims {
            iss: self.issuer.clone(),
            aud: Audience::One(audience.to_owned()),
            sub: "test-account".to_owned(),
            exp: now + 900,
            iat: now,
            nbf: None,
            jti: uuid::Uuid::new_v4().to_string(),
            roles: roles.iter().map(|role| role.as_str().to_owned()).collect(),
            org: Some("32855961".to_owned()),
            territories: Vec::new(),
            amr: vec!["qes".to_owned()],
        }
    }

    pub fn token(&self, audience: &str, roles: &[Role]) -> String {
        self.sign(&self.claims(audience, roles))
    }

    pub fn sign(&self, claims: &Claims) -> String {
        self.key.sign(claims).unwrap_or_default()
    }
}
