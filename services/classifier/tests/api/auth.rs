use esocial_auth::{Role, SigningKey};
use esocial_classifier::AUDIENCE;
use esocial_proto::classifier::v1 as pb;
use tonic::Code;

use crate::harness::{TestApp, new_request_id, open_from};

fn get_birth_assistance() -> pb::GetSupportTypeRequest {
    pb::GetSupportTypeRequest { code: "BIRTH_ASSISTANCE".to_owned(), as_of: None }
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let app = TestApp::spawn().await;

    let mut anonymous = app.client_with(None).await;
    let status = anonymous.get_support_type(get_birth_assistance()).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);

    let mut garbage = app.client_with(Some("not.a.jwt".to_owned())).await;
    assert_eq!(
        garbage.get_support_type(get_birth_assistance()).await.expect_err("garbage").code(),
        Code::Unauthenticated
    );

    // A well-formed token from a key the service does not trust.
    let stranger = SigningKey::generate();
    let forged = stranger.sign(&app.tokens.claims(AUDIENCE, &[Role::ClassifierAdmin])).expect("signs");
    let mut forger = app.client_with(Some(forged)).await;
    let status = forger.get_support_type(get_birth_assistance()).await.expect_err("untrusted key");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "invalid token", "the reason stays in the server log");

    // A trusted key, but a token meant for another service.
    let for_registry = app.tokens.token("esocial.registry", &[Role::ClassifierAdmin]);
    let mut misdirected = app.client_with(Some(for_registry)).await;
    assert_eq!(
        misdirected.get_support_type(get_birth_assistance()).await.expect_err("wrong audience").code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn reads_need_any_role_and_changes_need_classifier_admin() {
    let app = TestApp::spawn().await;
    let mut specialist = app.client_as(&[Role::SocialSpecialist]).await;
    assert!(specialist.get_support_type(get_birth_assistance()).await.is_ok());

    let request = pb::CreateSupportTypeVersionRequest {
        request_id: new_request_id(),
        code: "NEW_BENEFIT".to_owned(),
        validity: Some(open_from("2027-01-01")),
        content: Some(pb::SupportTypeContent {
            name_uk: "Нова пільга".to_owned(),
            name_en: "New benefit".to_owned(),
            category: pb::SupportCategory::Benefit.into(),
            legal_basis: "test".to_owned(),
            payment_rule: None,
            decisive_date: pb::DecisiveDate::ApplicationDate.into(),
            thresholds: vec![],
            eligibility_notes: String::new(),
        }),
        change_reason: "test".to_owned(),
        expected_latest_version: 0,
    };
    let denied = specialist.create_support_type_version(request.clone()).await.expect_err("not an admin");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("classifier_admin"), "{}", denied.message());

    // Without any role the caller is still authenticated: reads work.
    let mut no_roles = app.client_as(&[]).await;
    assert!(no_roles.get_support_type(get_birth_assistance()).await.is_ok());
    assert_eq!(
        no_roles.create_support_type_version(request.clone()).await.expect_err("no role").code(),
        Code::PermissionDenied
    );

    let mut admin = app.admin().await;
    assert!(admin.create_support_type_version(request).await.is_ok());
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM classifier.support_types WHERE code = 'NEW_BENEFIT'")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(rows, 1, "the denied attempts wrote nothing");
}

#[tokio::test]
async fn health_is_open_without_a_token() {
    let app = TestApp::spawn().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel().await);
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest { service: "esocial.classifier.v1.ClassifierService".to_owned() })
        .await;
    assert!(answer.is_ok(), "{answer:?}");
}

/// RFC 8725 attacks through the running service, not just the verifier.
#[tokio::test]
async fn forged_tokens_are_refused_by_the_running_service() {
    use base64::Engine as _;
    let app = TestApp::spawn().await;
    let encode = |value: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    let claims = serde_json::to_value(app.tokens.claims(AUDIENCE, &[Role::ClassifierAdmin])).expect("claims");
    let kid = app.tokens.key().key_id().to_owned();

    let unsigned =
        format!("{}.{}.", encode(&serde_json::json!({ "alg": "none", "typ": "JWT", "kid": kid })), encode(&claims));
    let public_x =
        serde_json::to_value(app.tokens.key().public_jwk()).expect("jwk")["x"].as_str().expect("x").to_owned();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid);
    let hmac = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(public_x.as_bytes()))
        .expect("encodes");
    let mut expired = app.tokens.claims(AUDIENCE, &[Role::ClassifierAdmin]);
    expired.exp = expired.iat - 3600;
    let expired = app.tokens.sign(&expired);
    let mut wrong_issuer = app.tokens.claims(AUDIENCE, &[Role::ClassifierAdmin]);
    wrong_issuer.iss = "https://evil.example".to_owned();
    let wrong_issuer = app.tokens.sign(&wrong_issuer);

    for (what, token) in [
        ("alg none", unsigned),
        ("HS256 keyed with the public key", hmac),
        ("expired", expired),
        ("wrong issuer", wrong_issuer),
    ] {
        let mut client = app.client_with(Some(token)).await;
        let status = client.get_support_type(get_birth_assistance()).await.expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}");
    }
}
