//! Token verification, including the attacks of RFC 8725 §2.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use esocial_auth::{
    Audience, Claims, JwksSource, SigningKey, StaticJwks, TokenVerifier, VerificationError, VerifierSettings,
};
use jsonwebtoken::jwk::JwkSet;

const ISSUER: &str = "https://identity.esocial.test";
const AUDIENCE: &str = "esocial.classifier";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0)
}

fn claims() -> Claims {
    Claims {
        iss: ISSUER.to_owned(),
        aud: Audience::One(AUDIENCE.to_owned()),
        sub: "account-1".to_owned(),
        exp: now() + 900,
        iat: now(),
        nbf: None,
        jti: "token-1".to_owned(),
        roles: vec!["classifier_admin".to_owned()],
        org: Some("32855961".to_owned()),
        territories: vec![],
        amr: vec!["qes".to_owned()],
        sid: None,
        act: None,
    }
}

fn verifier_trusting(keys: &[&SigningKey]) -> TokenVerifier {
    let source: Arc<dyn JwksSource> = Arc::new(StaticJwks(SigningKey::key_set(keys.iter().copied())));
    TokenVerifier::new(VerifierSettings::new(ISSUER, AUDIENCE), source)
}

fn encode_part(value: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn a_token_signed_by_a_trusted_key_verifies_with_its_claims() {
    let key = SigningKey::generate();
    // The same claims on both sides: made twice, a second may pass between.
    let claims = claims();
    let token = key.sign(&claims).expect("signs");
    let verified = verifier_trusting(&[&key]).verify(&token).await.expect("valid token");
    assert_eq!(*verified, claims);
}

#[tokio::test]
async fn alg_none_is_refused() {
    let key = SigningKey::generate();
    let header = serde_json::json!({ "alg": "none", "typ": "JWT", "kid": key.key_id() });
    let body = serde_json::to_value(claims()).expect("serializes");
    let token = format!("{}.{}.", encode_part(&header), encode_part(&body));
    let error = verifier_trusting(&[&key]).verify(&token).await.expect_err("must be refused");
    assert!(matches!(error, VerificationError::Malformed | VerificationError::WrongAlgorithm(_)), "{error:?}");
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let key = SigningKey::generate();
    let jwk = serde_json::to_value(key.public_jwk()).expect("serializes");
    let public_x = jwk["x"].as_str().expect("x").to_owned();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(key.key_id().to_owned());
    // The classic confusion: HMAC keyed with the public key, in both encodings.
    for secret in
        [public_x.as_bytes().to_vec(), base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&public_x).expect("b64")]
    {
        let token = jsonwebtoken::encode(&header, &claims(), &jsonwebtoken::EncodingKey::from_secret(&secret))
            .expect("encodes");
        let error = verifier_trusting(&[&key]).verify(&token).await.expect_err("must be refused");
        assert_eq!(error, VerificationError::WrongAlgorithm("HS256".to_owned()));
    }
}

#[tokio::test]
async fn an_hmac_key_in_the_key_set_is_never_used() {
    let key = SigningKey::generate();
    let secret = b"shared secret that must not verify anything";
    let oct = serde_json::json!({
        "kty": "oct", "kid": "hmac-key", "alg": "HS256",
        "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
    });
    let set: JwkSet = serde_json::from_value(serde_json::json!({ "keys": [oct] })).expect("jwks");
    let verifier = TokenVerifier::new(VerifierSettings::new(ISSUER, AUDIENCE), Arc::new(StaticJwks(set)));
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("hmac-key".to_owned());
    let token = key.sign(&claims()).expect("signs");
    let forged = format!(
        "{}.{}",
        encode_part(&serde_json::to_value(&header).expect("header")),
        token.split_once('.').expect("jws").1
    );
    let error = verifier.verify(&forged).await.expect_err("must be refused");
    assert_eq!(error, VerificationError::UnknownKeyId("hmac-key".to_owned()));
}

#[tokio::test]
async fn wrong_audience_and_wrong_issuer_are_refused() {
    let key = SigningKey::generate();
    let verifier = verifier_trusting(&[&key]);
    let mut other_audience = claims();
    other_audience.aud = Audience::Many(vec!["esocial.registry".to_owned()]);
    assert_eq!(
        verifier.verify(&key.sign(&other_audience).expect("signs")).await,
        Err(VerificationError::WrongAudience)
    );
    let mut other_issuer = claims();
    other_issuer.iss = "https://evil.example".to_owned();
    assert_eq!(verifier.verify(&key.sign(&other_issuer).expect("signs")).await, Err(VerificationError::WrongIssuer));
}

#[tokio::test]
async fn expiry_is_enforced_beyond_the_leeway_only() {
    let key = SigningKey::generate();
    let verifier = verifier_trusting(&[&key]);
    let leeway = verifier.settings().leeway.as_secs();
    let mut expired = claims();
    expired.exp = now() - leeway - 5;
    assert_eq!(verifier.verify(&key.sign(&expired).expect("signs")).await, Err(VerificationError::Expired));
    let mut within_leeway = claims();
    within_leeway.exp = now() - leeway / 2;
    assert!(verifier.verify(&key.sign(&within_leeway).expect("signs")).await.is_ok());
    let mut not_yet = claims();
    not_yet.nbf = Some(now() + leeway + 60);
    assert_eq!(verifier.verify(&key.sign(&not_yet).expect("signs")).await, Err(VerificationError::NotYetValid));
}

#[tokio::test]
async fn a_key_id_outside_the_key_set_is_refused() {
    let trusted = SigningKey::generate();
    let stranger = SigningKey::generate();
    let error = verifier_trusting(&[&trusted]).verify(&stranger.sign(&claims()).expect("signs")).await;
    assert_eq!(error, Err(VerificationError::UnknownKeyId(stranger.key_id().to_owned())));
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let key = SigningKey::generate();
    let token = key.sign(&claims()).expect("signs");
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut escalated = serde_json::to_value(claims()).expect("serializes");
    escalated["roles"] = serde_json::json!(["security_admin"]);
    parts[1] = encode_part(&escalated);
    let error = verifier_trusting(&[&key]).verify(&parts.join(".")).await;
    assert_eq!(error, Err(VerificationError::BadSignature));
}

#[tokio::test]
async fn missing_subject_or_token_id_is_refused() {
    let key = SigningKey::generate();
    let verifier = verifier_trusting(&[&key]);
    let mut without_jti = claims();
    without_jti.jti = String::new();
    assert_eq!(
        verifier.verify(&key.sign(&without_jti).expect("signs")).await,
        Err(VerificationError::MissingClaim("jti".to_owned()))
    );
    let mut body = serde_json::to_value(claims()).expect("serializes");
    body.as_object_mut().expect("object").remove("sub");
    let header = jsonwebtoken::Header {
        kid: Some(key.key_id().to_owned()),
        ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA)
    };
    let pem = key.private_pkcs8_pem().to_owned();
    let token =
        jsonwebtoken::encode(&header, &body, &jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).expect("pem"))
            .expect("encodes");
    assert!(matches!(
        verifier.verify(&token).await,
        Err(VerificationError::MissingClaim(_) | VerificationError::Malformed)
    ));
}

/// A source whose key set can be swapped, to watch rotation.
#[derive(Debug)]
struct RotatingJwks(std::sync::Mutex<JwkSet>);

impl JwksSource for RotatingJwks {
    fn fetch(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<JwkSet, String>> + Send + '_>> {
        let set = self.0.lock().map(|set| set.clone()).map_err(|_| "poisoned".to_owned());
        Box::pin(async move { set })
    }
}

#[tokio::test]
async fn an_unknown_key_id_triggers_a_rate_limited_refresh() {
    let old = SigningKey::generate();
    let new = SigningKey::generate();
    let source = Arc::new(RotatingJwks(std::sync::Mutex::new(SigningKey::key_set([&old]))));
    let mut settings = VerifierSettings::new(ISSUER, AUDIENCE);
    settings.min_refresh_interval = Duration::from_millis(200);
    let verifier = TokenVerifier::new(settings, source.clone());
    assert!(verifier.verify(&old.sign(&claims()).expect("signs")).await.is_ok());

    // The issuer rotates: the new key appears in the set.
    *source.0.lock().expect("lock") = SigningKey::key_set([&old, &new]);
    // Too soon after the last fetch: the unknown key id is not fetched again.
    let soon = verifier.verify(&new.sign(&claims()).expect("signs")).await;
    assert_eq!(soon, Err(VerificationError::UnknownKeyId(new.key_id().to_owned())));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(verifier.verify(&new.sign(&claims()).expect("signs")).await.is_ok());
}

/// A source that answers once, then keeps callers waiting and fails (an
/// identity service that has gone away); it counts the fetches.
#[derive(Debug)]
struct VanishingJwks {
    set: JwkSet,
    fetches: std::sync::atomic::AtomicUsize,
}

impl JwksSource for VanishingJwks {
    fn fetch(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<JwkSet, String>> + Send + '_>> {
        let first = self.fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        let set = self.set.clone();
        Box::pin(async move {
            if first {
                return Ok(set);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            Err("identity does not answer".to_owned())
        })
    }
}

#[tokio::test]
async fn with_the_key_set_old_and_identity_away_calls_go_on_with_the_keys_held_after_one_fetch() {
    let key = SigningKey::generate();
    let source = Arc::new(VanishingJwks { set: SigningKey::key_set([&key]), fetches: Default::default() });
    let mut settings = VerifierSettings::new(ISSUER, AUDIENCE);
    settings.max_key_age = Duration::from_millis(100);
    settings.min_refresh_interval = Duration::from_secs(1);
    let verifier = Arc::new(TokenVerifier::new(settings, source.clone()));
    let token = key.sign(&claims()).expect("signs");
    assert!(verifier.verify(&token).await.is_ok());
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    // The key set is old: many calls at once, while the fetch they cause
    // waits for an identity service that does not answer.
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let verifier = verifier.clone();
            let token = token.clone();
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.expect("joins").is_ok(), "verified with the key held");
    }
    // One fetch for the old set, not one for each call, one after another.
    assert_eq!(source.fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
    // The failed fetch counts against the interval as one that worked
    // would: a call right after it goes on with the key held.
    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(source.fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn a_stored_key_reads_back_with_the_same_key_id() {
    let key = SigningKey::generate();
    let restored = SigningKey::from_pkcs8_pem(key.private_pkcs8_pem()).expect("pem");
    assert_eq!(restored.key_id(), key.key_id());
}

#[tokio::test]
async fn a_remembered_token_still_expires() {
    let key = SigningKey::generate();
    let source: Arc<dyn JwksSource> = Arc::new(StaticJwks(SigningKey::key_set([&key])));
    let mut settings = VerifierSettings::new(ISSUER, AUDIENCE);
    settings.leeway = Duration::ZERO;
    let verifier = TokenVerifier::new(settings, source);
    let mut short_lived = claims();
    short_lived.exp = now() + 1;
    let token = key.sign(&short_lived).expect("signs");
    assert!(verifier.verify(&token).await.is_ok());
    assert!(verifier.verify(&token).await.is_ok(), "remembered");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(verifier.verify(&token).await, Err(VerificationError::Expired));
}

#[tokio::test]
async fn a_key_removed_from_the_set_stops_its_remembered_tokens() {
    let old = SigningKey::generate();
    let new = SigningKey::generate();
    let source = Arc::new(RotatingJwks(std::sync::Mutex::new(SigningKey::key_set([&old, &new]))));
    let verifier = TokenVerifier::new(VerifierSettings::new(ISSUER, AUDIENCE), source.clone());
    let token = old.sign(&claims()).expect("signs");
    assert!(verifier.verify(&token).await.is_ok());
    *source.0.lock().expect("lock") = SigningKey::key_set([&new]);
    verifier.refresh().await.expect("refreshed");
    assert_eq!(verifier.verify(&token).await, Err(VerificationError::UnknownKeyId(old.key_id().to_owned())));
}

#[tokio::test]
async fn a_tampered_copy_of_a_remembered_token_is_refused() {
    let key = SigningKey::generate();
    let verifier = verifier_trusting(&[&key]);
    let token = key.sign(&claims()).expect("signs");
    assert!(verifier.verify(&token).await.is_ok());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut escalated = serde_json::to_value(claims()).expect("serializes");
    escalated["roles"] = serde_json::json!(["security_admin"]);
    parts[1] = encode_part(&escalated);
    assert_eq!(verifier.verify(&parts.join(".")).await, Err(VerificationError::BadSignature));
}

#[tokio::test]
async fn a_remembered_token_is_rechecked_once_the_key_set_is_old() {
    // The key disappears from the set without anyone calling refresh: once
    // the cached set is older than max_key_age, remembered tokens are checked
    // again and the missing key is noticed.
    let key = SigningKey::generate();
    let source = Arc::new(RotatingJwks(std::sync::Mutex::new(SigningKey::key_set([&key]))));
    let mut settings = VerifierSettings::new(ISSUER, AUDIENCE);
    settings.max_key_age = Duration::from_millis(300);
    settings.min_refresh_interval = Duration::from_millis(100);
    let verifier = TokenVerifier::new(settings, source.clone());
    let token = key.sign(&claims()).expect("signs");
    assert!(verifier.verify(&token).await.is_ok());
    *source.0.lock().expect("lock") = JwkSet { keys: Vec::new() };
    assert!(verifier.verify(&token).await.is_ok(), "within max_key_age the remembered answer stands");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(verifier.verify(&token).await, Err(VerificationError::UnknownKeyId(key.key_id().to_owned())));
}
