use base64::Engine as _;
use esocial_auth::Role;
use esocial_identifiers::{CertificateCode, Sex};
use esocial_proto::registry::v1 as pb;
use tonic::Code;

use crate::harness::*;

struct Registered {
    person: pb::Person,
    rnokpp: String,
    registration: pb::IdpRegistration,
}

/// A person from Lviv hromada registered as displaced to Buzhanka (Cherkasy).
async fn displaced(app: &TestApp, idp: &mut Idp) -> Registered {
    let mut persons = app.persons_with(app.token("gateway", &[Role::Service], &[])).await;
    let data = person("Федорович", "Юлія", "1987-03-14", Sex::Female, 61, BUZHANKA);
    let person = register(&mut persons, data.clone()).await;
    let registration = idp
        .register_idp(pb::RegisterIdpRequest {
            request_id: new_request_id(),
            person_id: person.id.clone(),
            family_member_ids: Vec::new(),
            origin_territory: LVIV_HROMADA.to_owned(),
            current_territory: BUZHANKA.to_owned(),
            current_address: "вул. Центральна, 5".to_owned(),
            registered_on: None,
            registered_by: String::new(),
        })
        .await
        .expect("registered")
        .into_inner()
        .registration
        .expect("registration");
    Registered { person, rnokpp: data.rnokpp, registration }
}

async fn issue(idp: &mut Idp, registration_id: &str) -> pb::IdpCertificate {
    idp.issue_idp_certificate(pb::IssueIdpCertificateRequest {
        request_id: new_request_id(),
        registration_id: registration_id.to_owned(),
    })
    .await
    .expect("issued")
    .into_inner()
    .certificate
    .expect("certificate")
}

async fn verify(app: &TestApp, code: &str) -> pb::VerifyIdpCertificateResponse {
    // No token: anyone may verify.
    let mut anonymous = app.idp_with(None).await;
    anonymous
        .verify_idp_certificate(pb::VerifyIdpCertificateRequest { code: code.to_owned() })
        .await
        .expect("verified")
        .into_inner()
}

#[tokio::test]
async fn a_certificate_carries_one_code_in_three_forms_and_verification_follows_its_state() {
    let app = TestApp::spawn().await;
    let mut idp = app.idp_with(app.token("cherkasy-specialist", &[Role::SocialSpecialist], &[CHERKASY_OBLAST])).await;
    let registered = displaced(&app, &mut idp).await;
    assert_eq!(registered.registration.registered_by, "32855961", "the caller's organization by default");
    let again = idp
        .register_idp(pb::RegisterIdpRequest {
            request_id: new_request_id(),
            person_id: registered.person.id.clone(),
            origin_territory: LVIV_HROMADA.to_owned(),
            current_territory: BUZHANKA.to_owned(),
            current_address: "вул. Центральна, 5".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("already registered");
    assert_eq!(again.code(), Code::AlreadyExists);

    let certificate = issue(&mut idp, &registered.registration.id).await;
    let code: CertificateCode = certificate.numeric_code.parse().expect("16 digits with a Luhn check digit");
    assert_eq!(code.as_str().len(), 16);
    assert!(certificate.qr_svg.starts_with("<svg") || certificate.qr_svg.starts_with("<?xml"), "QR as SVG");
    assert_eq!(&certificate.qr_png[..8], b"\x89PNG\r\n\x1a\n", "QR as PNG");
    assert!(certificate.barcode_svg.contains("<svg"), "Code 128 as SVG");
    assert!(certificate.content_json.contains(&registered.person.id));

    let valid = verify(&app, &code.grouped()).await;
    assert!(valid.valid, "{valid:?}");
    assert_eq!(valid.holder_initials, "Ф. Ю.");
    assert_eq!(valid.number, certificate.number);

    let reissued = issue(&mut idp, &registered.registration.id).await;
    let superseded = verify(&app, &certificate.numeric_code).await;
    assert_eq!((superseded.valid, superseded.reason.as_str()), (false, "superseded"));

    idp.revoke_idp_certificate(pb::RevokeIdpCertificateRequest {
        request_id: new_request_id(),
        certificate_id: reissued.id.clone(),
        reason: "issued by mistake".to_owned(),
    })
    .await
    .expect("revoked");
    let revoked = verify(&app, &reissued.numeric_code).await;
    assert_eq!((revoked.valid, revoked.reason.as_str()), (false, "revoked"));

    let mut mistyped = reissued.numeric_code.clone().into_bytes();
    mistyped[3] = b'0' + (mistyped[3] - b'0' + 1) % 10;
    let malformed = verify(&app, &String::from_utf8(mistyped).expect("ascii")).await;
    assert_eq!((malformed.valid, malformed.reason.as_str(), malformed.number.as_str()), (false, "malformed", ""));
    let unknown = verify(&app, CertificateCode::compose(123_456_789_012_345).expect("code").as_str()).await;
    assert_eq!((unknown.valid, unknown.reason.as_str()), (false, "unknown"));

    let types: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM registry.outbox WHERE subject LIKE 'registry.idp.%' ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .expect("outbox");
    assert_eq!(
        types,
        [
            "ua.gov.esocial.registry.idp.registered.v1",
            "ua.gov.esocial.registry.idp.certificate.issued.v1",
            "ua.gov.esocial.registry.idp.certificate.revoked.v1",
            "ua.gov.esocial.registry.idp.certificate.issued.v1",
            "ua.gov.esocial.registry.idp.certificate.revoked.v1",
        ]
    );

    idp.deregister_idp(pb::DeregisterIdpRequest {
        request_id: new_request_id(),
        registration_id: registered.registration.id.clone(),
        reason: "returned home".to_owned(),
        deregistered_on: None,
    })
    .await
    .expect("deregistered");
    let ended = idp
        .issue_idp_certificate(pb::IssueIdpCertificateRequest {
            request_id: new_request_id(),
            registration_id: registered.registration.id.clone(),
        })
        .await
        .expect_err("no certificate for an ended registration");
    assert_eq!(ended.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn an_approved_share_delivers_a_signed_copy_to_the_asking_organization_only() {
    let app = TestApp::spawn().await;
    let mut specialist =
        app.idp_with(app.token("cherkasy-specialist", &[Role::SocialSpecialist], &[CHERKASY_OBLAST])).await;
    let registered = displaced(&app, &mut specialist).await;
    issue(&mut specialist, &registered.registration.id).await;

    let mut bank = app.idp_with(app.token("bank-client", &[Role::Integrator], &[])).await;
    let share = bank
        .create_share_request(pb::CreateShareRequestRequest {
            request_id: new_request_id(),
            person_rnokpp: registered.rnokpp.clone(),
            documents: vec!["idp_certificate".to_owned()],
            purpose: "відкриття рахунку".to_owned(),
        })
        .await
        .expect("asked")
        .into_inner()
        .share
        .expect("share");
    assert_eq!(share.status, i32::from(pb::ShareStatus::Pending));
    let early = bank
        .get_shared_copy(pb::GetSharedCopyRequest { share_id: share.id.clone() })
        .await
        .expect_err("not approved yet");
    assert_eq!(early.code(), Code::FailedPrecondition);

    let mut diia = app.idp_with(app.token("diia", &[Role::Service], &[])).await;
    let wrong_person = diia
        .decide_share_request(pb::DecideShareRequestRequest {
            request_id: new_request_id(),
            share_id: share.id.clone(),
            person_rnokpp: person("Інший", "Хтось", "1990-01-01", Sex::Male, 1, BUZHANKA).rnokpp,
            approve: true,
        })
        .await
        .expect_err("only the person decides");
    assert_eq!(wrong_person.code(), Code::PermissionDenied);
    diia.decide_share_request(pb::DecideShareRequestRequest {
        request_id: new_request_id(),
        share_id: share.id.clone(),
        person_rnokpp: registered.rnokpp.clone(),
        approve: true,
    })
    .await
    .expect("approved");

    let mut other_bank = app.idp_with(app.token("other-bank", &[Role::Integrator], &[])).await;
    let foreign = other_bank
        .get_shared_copy(pb::GetSharedCopyRequest { share_id: share.id.clone() })
        .await
        .expect_err("not theirs");
    assert_eq!(foreign.code(), Code::NotFound);

    let copy = bank
        .get_shared_copy(pb::GetSharedCopyRequest { share_id: share.id.clone() })
        .await
        .expect("delivered")
        .into_inner();
    assert!(copy.pdf.starts_with(b"%PDF-"));
    assert_eq!(copy.share.expect("share").status, i32::from(pb::ShareStatus::Delivered));

    // The detached signature verifies over the PDF with the published key.
    let mut public = app.persons_with(None).await;
    let keys = public.get_signing_keys(pb::GetSigningKeysRequest {}).await.expect("keys").into_inner().keys;
    let key = keys.first().expect("a key");
    let (header, signature) = copy.detached_signature.split_once("..").expect("detached JWS");
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing_input = format!("{header}.{}", engine.encode(&copy.pdf));
    let public_key: [u8; 32] = engine.decode(&key.x).expect("x").try_into().expect("32 bytes");
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public_key).expect("key");
    let signature =
        ed25519_dalek::Signature::from_slice(&engine.decode(signature).expect("signature")).expect("64 bytes");
    verifying.verify_strict(signing_input.as_bytes(), &signature).expect("the signature verifies");
    let mut tampered = copy.pdf.clone();
    let last = tampered.len() - 2;
    tampered[last] ^= 1;
    let tampered_input = format!("{header}.{}", engine.encode(&tampered));
    assert!(verifying.verify_strict(tampered_input.as_bytes(), &signature).is_err());

    // The person's shares and access history show it.
    let shares = specialist
        .list_shares(pb::ListSharesRequest {
            person_id: registered.person.id.clone(),
            purpose: "the person asked".to_owned(),
        })
        .await
        .expect("shares")
        .into_inner()
        .shares;
    assert_eq!(shares.len(), 1);
    let log = app
        .auditor()
        .await
        .list_access_log(pb::ListAccessLogRequest { person_id: registered.person.id.clone(), page: None })
        .await
        .expect("log")
        .into_inner();
    assert!(
        log.entries.iter().any(|entry| entry.method == "GetSharedCopy"
            && entry.reader.as_ref().is_some_and(|reader| reader.subject == "bank-client")
            && entry.purpose == "відкриття рахунку"),
        "{:?}",
        log.entries
    );
}
