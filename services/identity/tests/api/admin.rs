use std::sync::Arc;

use esocial_auth::{TokenVerifier, VerifierSettings};
use esocial_identity::ca::KeyAlgorithm;
use esocial_kit::identity::IdentityJwks;
use esocial_proto::identity::v1 as pb;
use tonic::Code;

use crate::harness::{TestIdentity, new_request_id, new_rnokpp, reason, violated_fields};

#[tokio::test]
async fn only_security_administrators_administer_and_nobody_grants_themselves_roles() {
    let app = TestIdentity::spawn().await;
    let specialist = app.person(&["social_specialist"], KeyAlgorithm::EcdsaP256).await;
    let token = app.sign_in(&specialist.issued).await.expect("signs in").tokens.expect("tokens").access_token;
    let mut as_specialist = app.admin_client(&token).await;
    let denied = as_specialist
        .assign_roles(pb::AssignRolesRequest {
            request_id: new_request_id(),
            account_id: specialist.account_id.clone(),
            roles: vec!["security_admin".to_owned()],
        })
        .await
        .expect_err("not an admin");
    assert_eq!(denied.code(), Code::PermissionDenied);

    let admin_token = app.admin_token().await;
    let mut admin = app.admin_client(&admin_token).await;
    let to_self = admin
        .assign_roles(pb::AssignRolesRequest {
            request_id: new_request_id(),
            account_id: app.admin.account_id.clone(),
            roles: vec!["security_admin".to_owned(), "classifier_admin".to_owned()],
        })
        .await
        .expect_err("own roles");
    assert_eq!(to_self.code(), Code::PermissionDenied);

    let granted = admin
        .assign_roles(pb::AssignRolesRequest {
            request_id: new_request_id(),
            account_id: specialist.account_id.clone(),
            roles: vec!["decision_maker".to_owned(), "social_specialist".to_owned()],
        })
        .await
        .expect("granted")
        .into_inner()
        .account
        .expect("account");
    assert_eq!(granted.roles, ["decision_maker", "social_specialist"]);
    let token = app.sign_in(&specialist.issued).await.expect("signs in").tokens.expect("tokens").access_token;
    let verifier = TokenVerifier::new(
        VerifierSettings::new(app.issuer.clone(), "esocial.registry"),
        Arc::new(IdentityJwks::new(&app.grpc).expect("url")),
    );
    assert_eq!(
        verifier.verify(&token).await.expect("verifies").roles,
        ["decision_maker", "social_specialist"],
        "the next sign-in carries them"
    );
}

#[tokio::test]
async fn bad_identifiers_are_named_and_duplicates_refused() {
    let app = TestIdentity::spawn().await;
    let admin_token = app.admin_token().await;
    let mut admin = app.admin_client(&admin_token).await;
    let invalid = admin
        .create_organization(pb::CreateOrganizationRequest {
            request_id: new_request_id(),
            edrpou: "32855968".to_owned(),
            name: "ЦНАП".to_owned(),
            kind: 0,
            territory: "UA7102".to_owned(),
        })
        .await
        .expect_err("invalid");
    assert_eq!(violated_fields(&invalid), ["edrpou", "kind", "territory"]);

    let invalid = admin
        .create_account(pb::CreateAccountRequest {
            request_id: new_request_id(),
            rnokpp: "1759013770".to_owned(),
            full_name: String::new(),
            organization_id: "not-a-uuid".to_owned(),
            position: String::new(),
            territories: vec!["UA71020010000037786".to_owned(), "XX".to_owned()],
        })
        .await
        .expect_err("invalid");
    assert_eq!(violated_fields(&invalid), ["rnokpp", "full_name", "organization_id", "territories[1]"]);

    let duplicate = admin
        .create_account(pb::CreateAccountRequest {
            request_id: new_request_id(),
            rnokpp: app.admin.rnokpp.to_string(),
            full_name: "Двійник".to_owned(),
            organization_id: app.organization_id.clone(),
            position: String::new(),
            territories: vec![],
        })
        .await
        .expect_err("duplicate");
    assert_eq!(duplicate.code(), Code::AlreadyExists);
}

#[tokio::test]
async fn a_renewed_certificate_replaces_the_old_one() {
    let app = TestIdentity::spawn().await;
    let person = app.person(&["social_specialist"], KeyAlgorithm::EcdsaP256).await;
    let admin_token = app.admin_token().await;
    let mut admin = app.admin_client(&admin_token).await;

    let someone_else =
        app.authority.issue_person(&new_rnokpp(), "Інша Особа", KeyAlgorithm::EcdsaP256, -1, 30).expect("certificate");
    let mismatch = admin
        .register_certificate(pb::RegisterCertificateRequest {
            request_id: new_request_id(),
            account_id: person.account_id.clone(),
            certificate: someone_else.certificate_der,
        })
        .await
        .expect_err("another person's certificate");
    assert_eq!(violated_fields(&mismatch), ["certificate"]);

    let renewed = app
        .authority
        .issue_person(&person.rnokpp, "Тестова Особа", KeyAlgorithm::Ed25519, -1, 730)
        .expect("certificate");
    let registered = admin
        .register_certificate(pb::RegisterCertificateRequest {
            request_id: new_request_id(),
            account_id: person.account_id.clone(),
            certificate: renewed.certificate_der.clone(),
        })
        .await
        .expect("renewed")
        .into_inner();
    let superseded = registered.superseded.expect("the old one is superseded");
    assert_eq!(superseded.status, i32::from(pb::CertificateStatus::Revoked));
    assert_eq!(registered.certificate.map(|certificate| certificate.replaces_certificate_id), Some(superseded.id));
    assert_eq!(reason(&app.sign_in(&person.issued).await.expect_err("old certificate")), "CERTIFICATE_REVOKED");
    assert!(app.sign_in(&renewed).await.is_ok());
}

#[tokio::test]
async fn every_change_is_an_event_and_an_audit_record_and_every_read_of_an_account_is_recorded() {
    let app = TestIdentity::spawn().await;
    let person = app.person(&["social_specialist"], KeyAlgorithm::EcdsaP256).await;
    let admin_token = app.admin_token().await;
    let mut admin = app.admin_client(&admin_token).await;

    let subjects: Vec<String> =
        sqlx::query_scalar("SELECT subject FROM identity.outbox WHERE subject NOT LIKE 'identity.login.%' ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .expect("events");
    assert_eq!(
        subjects,
        [
            "identity.organization.created",
            "identity.account.created",
            "identity.account.roles_assigned",
            "identity.certificate.registered",
            "identity.account.created",
            "identity.account.roles_assigned",
            "identity.certificate.registered",
        ]
    );
    let actors: Vec<String> = sqlx::query_scalar("SELECT DISTINCT actor FROM identity.audit_log ORDER BY actor")
        .fetch_all(&app.pool)
        .await
        .expect("audit");
    assert_eq!(actors, [app.admin.account_id.clone(), "esocial-bootstrap".to_owned()], "each change names who made it");

    let no_purpose = admin
        .get_account(pb::GetAccountRequest { id: person.account_id.clone(), purpose: String::new() })
        .await
        .expect_err("purpose");
    assert_eq!(violated_fields(&no_purpose), ["purpose"]);
    admin
        .get_account(pb::GetAccountRequest { id: person.account_id.clone(), purpose: "access review".to_owned() })
        .await
        .expect("read");
    let reads: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT details FROM identity.audit_log WHERE action = 'account.read' AND target = $1 AND actor = $2",
    )
    .bind(&person.account_id)
    .bind(&app.admin.account_id)
    .fetch_all(&app.pool)
    .await
    .expect("reads");
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0]["purpose"], "access review");
}

#[tokio::test]
async fn after_a_key_rotation_old_tokens_still_verify_and_new_ones_use_the_new_key() {
    let app = TestIdentity::spawn().await;
    let before = app.admin_token().await;
    let mut admin = app.admin_client(&before).await;
    let rotated = admin
        .rotate_signing_key(pb::RotateSigningKeyRequest { request_id: new_request_id() })
        .await
        .expect("rotated")
        .into_inner();
    assert_ne!(rotated.new_key_id, rotated.retired_key_id);

    let published = app.client().await.get_jwks(pb::GetJwksRequest {}).await.expect("jwks").into_inner().keys;
    let published: Vec<String> = published.into_iter().map(|key| key.kid).collect();
    assert!(published.contains(&rotated.new_key_id) && published.contains(&rotated.retired_key_id), "{published:?}");

    let after = app.admin_token().await;
    let header = |token: &str| jsonwebtoken::decode_header(token).expect("header").kid.expect("kid");
    assert_eq!(header(&before), rotated.retired_key_id);
    assert_eq!(header(&after), rotated.new_key_id);
    let verifier = TokenVerifier::new(
        VerifierSettings::new(app.issuer.clone(), "esocial.classifier"),
        Arc::new(IdentityJwks::new(&app.grpc).expect("url")),
    );
    assert!(verifier.verify(&before).await.is_ok(), "tokens signed before the rotation stay valid until they expire");
    assert!(verifier.verify(&after).await.is_ok());
}
