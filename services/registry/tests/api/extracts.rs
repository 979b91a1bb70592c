use base64::Engine as _;
use esocial_auth::Role;
use esocial_identifiers::Sex;
use esocial_proto::registry::v1 as pb;
use sha2::Digest as _;
use tonic::Code;

use crate::harness::*;

fn request(person_id: &str) -> pb::RequestExtractRequest {
    pb::RequestExtractRequest {
        request_id: new_request_id(),
        person_id: person_id.to_owned(),
        purpose: "розгляд заяви про допомогу".to_owned(),
    }
}

#[tokio::test]
async fn an_extract_needs_a_qualified_signature_and_is_signed_numbered_and_verifiable() {
    let app = TestApp::spawn().await;
    let mut specialist = app.cherkasy().await;
    let registered =
        register(&mut specialist, person("Зінченко", "Оксана", "1983-10-12", Sex::Female, 19, BUZHANKA)).await;

    // The same role, signed in without a qualified e-signature: refused.
    let mut claims = app.claims("cherkasy-specialist", &[Role::SocialSpecialist], &[CHERKASY_OBLAST]);
    claims.amr = vec!["pwd".to_owned()];
    let mut without_qes = app.persons_with(Some(app.tokens.sign(&claims))).await;
    let refused = without_qes.request_extract(request(&registered.id)).await.expect_err("no qes");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("qualified"), "{}", refused.message());
    assert_eq!(app.count("extracts").await, 0);
    let mut cashier = app.persons_with(app.token("cnap", &[Role::CnapAdministrator], &[CHERKASY_OBLAST])).await;
    assert_eq!(
        cashier.request_extract(request(&registered.id)).await.expect_err("role").code(),
        Code::PermissionDenied
    );

    let extract = specialist
        .request_extract(request(&registered.id))
        .await
        .expect("extract")
        .into_inner()
        .extract
        .expect("extract");
    assert!(extract.number.starts_with("ESR-"), "{}", extract.number);
    assert_eq!(extract.person_id, registered.id);
    assert!(extract.pdf.starts_with(b"%PDF-"));
    assert!(extract.qr_svg.contains("<svg"));
    let content: serde_json::Value = serde_json::from_str(&extract.json).expect("JSON");
    assert_eq!(content["person_id"], registered.id.as_str());
    assert_eq!(content["number"], extract.number.as_str());
    assert_eq!(content["generated_at"], extract.generated_at.as_str());

    // The JWS carries exactly the JSON and verifies with the published key.
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = extract.signature.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: serde_json::Value =
        serde_json::from_slice(&engine.decode(parts[0]).expect("header")).expect("header JSON");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(engine.decode(parts[1]).expect("payload"), extract.json.as_bytes());
    let mut public = app.persons_with(None).await;
    let key = public.get_signing_keys(pb::GetSigningKeysRequest {}).await.expect("keys").into_inner().keys.remove(0);
    assert_eq!(header["kid"], key.kid.as_str());
    let public_key: [u8; 32] = engine.decode(&key.x).expect("x").try_into().expect("32 bytes");
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public_key).expect("key");
    let signature =
        ed25519_dalek::Signature::from_slice(&engine.decode(parts[2]).expect("signature")).expect("64 bytes");
    verifying.verify_strict(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature).expect("verifies");

    // Anyone can check the number, and whether the JSON they hold is the one issued.
    let digest: String =
        sha2::Sha256::digest(extract.json.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect();
    let checked = public
        .verify_extract(pb::VerifyExtractRequest { number: extract.number.clone(), json_sha256: digest })
        .await
        .expect("verified")
        .into_inner();
    assert!(checked.genuine && checked.content_matches, "{checked:?}");
    let altered: String = sha2::Sha256::digest(b"{}").iter().map(|byte| format!("{byte:02x}")).collect();
    let mismatch = public
        .verify_extract(pb::VerifyExtractRequest { number: extract.number.clone(), json_sha256: altered })
        .await
        .expect("verified")
        .into_inner();
    assert!(mismatch.genuine && !mismatch.content_matches);
    let forged = public
        .verify_extract(pb::VerifyExtractRequest { number: "ESR-2026-99999999".to_owned(), json_sha256: String::new() })
        .await
        .expect("verified")
        .into_inner();
    assert!(!forged.genuine);

    // The extract is a recorded read, with its purpose.
    let purposes: Vec<(String, String)> = sqlx::query_as("SELECT method, purpose FROM registry.access_log ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .expect("log");
    assert_eq!(purposes, [("RequestExtract".to_owned(), "розгляд заяви про допомогу".to_owned())]);
}
