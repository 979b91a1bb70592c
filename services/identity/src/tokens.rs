//! Access tokens and refresh tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use esocial_auth::{Audience, Claims, Role};
use ring::rand::{SecureRandom as _, SystemRandom};
use sha2::{Digest as _, Sha256};

use crate::domain::Account;

/// What the identity service puts in tokens, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    pub issuer: String,
    /// Every service's audience. People's tokens are good for all of them,
    /// a system client's for its own list when it has one, an exchanged
    /// token for one.
    pub audiences: Vec<String>,
    pub access_token_lifetime: Duration,
    pub service_token_lifetime: Duration,
    pub refresh_token_lifetime: Duration,
    pub session_lifetime_max: Duration,
    pub challenge_lifetime: Duration,
    pub login_failures_max: i64,
    pub login_failure_window: Duration,
}

impl TokenSettings {
    /// The longest any token signed now may stay valid (for key rotation).
    pub fn token_lifetime_max(&self) -> Duration {
        self.access_token_lifetime.max(self.service_token_lifetime)
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0)
}

fn claims(settings: &TokenSettings, subject: String, roles: &[Role], lifetime: Duration) -> Claims {
    let now = unix_now();
    Claims {
        iss: settings.issuer.clone(),
        aud: Audience::Many(settings.audiences.clone()),
        sub: subject,
        exp: now + lifetime.as_secs(),
        iat: now,
        nbf: None,
        jti: uuid::Uuid::now_v7().to_string(),
        roles: roles.iter().map(|role| role.as_str().to_owned()).collect(),
        org: None,
        territories: Vec::new(),
        amr: Vec::new(),
        sid: None,
        act: None,
    }
}

/// The claims of a person signed in with a qualified e-signature.
pub fn person_claims(
    settings: &TokenSettings,
    account: &Account,
    organization_edrpou: &str,
    session_id: uuid::Uuid,
) -> Claims {
    Claims {
        org: Some(organization_edrpou.to_owned()),
        territories: account.territories.iter().map(ToString::to_string).collect(),
        amr: vec!["qes".to_owned()],
        sid: Some(session_id.to_string()),
        ..claims(settings, account.id.to_string(), &account.roles, settings.access_token_lifetime)
    }
}

pub use esocial_auth::CLIENT_SUBJECT_PREFIX;

/// The `sub` of a system client's tokens.
pub fn client_subject(client_id: &str) -> String {
    format!("{CLIENT_SUBJECT_PREFIX}{client_id}")
}

/// The claims of a system client: no session, no `amr`, only its scopes,
/// and only its audiences when it has some (every service's otherwise).
pub fn client_claims(settings: &TokenSettings, client_id: &str, scopes: &[Role], audiences: &[String]) -> Claims {
    let mut claims = claims(settings, client_subject(client_id), scopes, settings.service_token_lifetime);
    if !audiences.is_empty() {
        claims.aud = Audience::Many(audiences.to_vec());
    }
    claims
}

/// The claims of a token exchanged (RFC 8693) for a system's token: the
/// same subject, for one `audience`, with `act` naming who exchanged it,
/// valid until `expires` (never beyond the service token lifetime).
pub fn exchanged_claims(
    settings: &TokenSettings,
    subject: &str,
    roles: &[Role],
    audience: &str,
    actor: &str,
    expires: u64,
) -> Claims {
    let mut claims = claims(settings, subject.to_owned(), roles, settings.service_token_lifetime);
    claims.aud = Audience::One(audience.to_owned());
    claims.exp = claims.exp.min(expires);
    claims.act = Some(esocial_auth::Actor { sub: actor.to_owned() });
    claims
}

/// A new opaque refresh token and the hash that is stored instead of it.
pub fn new_refresh_token() -> Result<(String, [u8; 32]), ring::error::Unspecified> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes)?;
    let token = format!("rt_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_refresh_token(&token);
    Ok((token, hash))
}

pub fn hash_refresh_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh random nonce for a login challenge.
pub fn new_nonce() -> Result<[u8; 32], ring::error::Unspecified> {
    let mut nonce = [0u8; 32];
    SystemRandom::new().fill(&mut nonce)?;
    Ok(nonce)
}
