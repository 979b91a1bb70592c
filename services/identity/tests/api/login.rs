use std::sync::Arc;

use esocial_auth::{TokenVerifier, VerifierSettings};
use esocial_identity::ca::{CertificateAuthority, KeyAlgorithm};
use esocial_kit::identity::IdentityJwks;
use esocial_proto::identity::v1 as pb;
use esocial_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::{TestIdentity, new_request_id, new_rnokpp, reason, sign};

fn verifier(app: &TestIdentity, audience: &str) -> TokenVerifier {
    TokenVerifier::new(
        VerifierSettings::new(app.issuer.clone(), audience),
        Arc::new(IdentityJwks::new(&app.grpc).expect("url")),
    )
}

#[tokio::test]
async fn a_person_signs_in_with_p256_or_ed25519_and_any_service_can_verify_the_token() {
    let app = TestIdentity::spawn().await;
    for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let person = app.person(&["social_specialist"], algorithm).await;
        let response = app.sign_in(&person.issued).await.expect("signs in");
        let tokens = response.tokens.expect("tokens");
        assert_eq!(tokens.access_token_expires_in_seconds, 900, "15 minutes");
        assert!(tokens.refresh_token.starts_with("rt_"));
        assert_eq!(response.account.map(|account| account.id), Some(person.account_id.clone()));

        // The classifier's view: keys from identity, its own audience.
        let caller = verifier(&app, "esocial.classifier").verify(&tokens.access_token).await.expect("verifies");
        assert_eq!(caller.sub, person.account_id);
        assert_eq!(caller.roles, ["social_specialist"]);
        assert_eq!(caller.amr, ["qes"]);
        assert_eq!(caller.sid.as_deref(), Some(tokens.session_id.as_str()));
        assert_eq!(caller.org.as_deref(), Some("32855961"));
        assert_eq!(caller.territories, ["UA71020010000037786"]);
    }
    // Nothing about the refresh token is stored but its hash.
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM identity.refresh_tokens WHERE octet_length(token_hash) = 32")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert!(stored >= 2);
}

#[tokio::test]
async fn each_way_a_sign_in_fails_has_its_own_reason_and_is_recorded() {
    let app = TestIdentity::spawn().await;
    let person = app.person(&[], KeyAlgorithm::EcdsaP256).await;
    let mut client = app.client().await;
    let complete = |challenge_id: String, issued: &esocial_identity::ca::Issued, signature: Vec<u8>| {
        pb::CompleteLoginRequest { challenge_id, certificate_chain: vec![issued.certificate_der.clone()], signature }
    };

    // A nonce works once.
    let challenge = client.begin_login(pb::BeginLoginRequest {}).await.expect("challenge").into_inner();
    let signature = sign(&person.issued, &challenge);
    client
        .complete_login(complete(challenge.challenge_id.clone(), &person.issued, signature.clone()))
        .await
        .expect("first use");
    let replay = client
        .complete_login(complete(challenge.challenge_id.clone(), &person.issued, signature))
        .await
        .expect_err("replay");
    assert_eq!((replay.code(), reason(&replay)), (Code::Unauthenticated, "CHALLENGE_USED".to_owned()));

    // An expired nonce.
    let challenge = client.begin_login(pb::BeginLoginRequest {}).await.expect("challenge").into_inner();
    sqlx::query("UPDATE identity.login_challenges SET expires_at = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(&challenge.challenge_id)
        .execute(&app.pool)
        .await
        .expect("expire");
    let signature = sign(&person.issued, &challenge);
    let expired =
        client.complete_login(complete(challenge.challenge_id, &person.issued, signature)).await.expect_err("expired");
    assert_eq!(reason(&expired), "CHALLENGE_EXPIRED");

    // A nonce that was never issued.
    let challenge = client.begin_login(pb::BeginLoginRequest {}).await.expect("challenge").into_inner();
    let signature = sign(&person.issued, &challenge);
    let unknown = client
        .complete_login(complete(uuid::Uuid::new_v4().to_string(), &person.issued, signature))
        .await
        .expect_err("unknown");
    assert_eq!(reason(&unknown), "UNKNOWN_CHALLENGE");

    // A signature over something else.
    let challenge = client.begin_login(pb::BeginLoginRequest {}).await.expect("challenge").into_inner();
    let mut other = challenge.clone();
    other.nonce = vec![0u8; 32];
    let wrong = client
        .complete_login(complete(challenge.challenge_id, &person.issued, sign(&person.issued, &other)))
        .await
        .expect_err("wrong");
    assert_eq!(reason(&wrong), "WRONG_SIGNATURE");

    // A certificate from the trusted CA that no account has.
    let stranger =
        app.authority.issue_person(&new_rnokpp(), "Незнайомець", KeyAlgorithm::EcdsaP256, -1, 30).expect("certificate");
    let refused = app.sign_in(&stranger).await.expect_err("unknown certificate");
    assert_eq!(reason(&refused), "UNKNOWN_CERTIFICATE");

    // A certificate from a CA nobody trusts, for a registered person's RNOKPP.
    let rogue = CertificateAuthority::create("rogue CA").expect("CA");
    let forged =
        rogue.issue_person(&person.rnokpp, "Тестова Особа", KeyAlgorithm::EcdsaP256, -1, 30).expect("certificate");
    let untrusted = app.sign_in(&forged).await.expect_err("untrusted");
    assert_eq!(reason(&untrusted), "UNTRUSTED_ISSUER");

    // A certificate whose validity has ended.
    let old = app
        .authority
        .issue_person(&person.rnokpp, "Тестова Особа", KeyAlgorithm::EcdsaP256, -30, 10)
        .expect("certificate");
    let expired_certificate = app.sign_in(&old).await.expect_err("expired certificate");
    assert_eq!(reason(&expired_certificate), "CERTIFICATE_EXPIRED");

    let recorded = app.failure_reasons().await;
    assert_eq!(
        recorded,
        [
            "challenge_used",
            "challenge_expired",
            "unknown_challenge",
            "wrong_signature",
            "unknown_certificate",
            "untrusted_issuer",
            "certificate_expired"
        ]
    );
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM identity.outbox WHERE subject = 'identity.login.failed'")
            .fetch_one(&app.pool)
            .await
            .expect("events");
    assert_eq!(events, 7, "a login.failed event for each");
}

#[tokio::test]
async fn blocked_and_revoked_certificates_and_suspended_accounts_cannot_sign_in() {
    let app = TestIdentity::spawn().await;
    let person = app.person(&["social_specialist"], KeyAlgorithm::EcdsaP256).await;
    let certificate_id = app.certificate_id(&person).await;
    let admin_token = app.admin_token().await;
    let mut admin = app.admin_client(&admin_token).await;
    let set_status = |status: pb::CertificateStatus| pb::SetCertificateStatusRequest {
        request_id: new_request_id(),
        certificate_id: certificate_id.clone(),
        status: status.into(),
        reason: "test".to_owned(),
    };

    admin.set_certificate_status(set_status(pb::CertificateStatus::Blocked)).await.expect("blocked");
    assert_eq!(reason(&app.sign_in(&person.issued).await.expect_err("blocked")), "CERTIFICATE_BLOCKED");
    admin.set_certificate_status(set_status(pb::CertificateStatus::Active)).await.expect("unblocked");
    assert!(app.sign_in(&person.issued).await.is_ok(), "unblocking takes effect for the next sign-in");

    admin
        .set_account_status(pb::SetAccountStatusRequest {
            request_id: new_request_id(),
            id: person.account_id.clone(),
            status: pb::AccountStatus::Suspended.into(),
            reason: "leave".to_owned(),
        })
        .await
        .expect("suspended");
    assert_eq!(reason(&app.sign_in(&person.issued).await.expect_err("suspended")), "ACCOUNT_SUSPENDED");
    admin
        .set_account_status(pb::SetAccountStatusRequest {
            request_id: new_request_id(),
            id: person.account_id.clone(),
            status: pb::AccountStatus::Active.into(),
            reason: "back".to_owned(),
        })
        .await
        .expect("active");

    admin.set_certificate_status(set_status(pb::CertificateStatus::Revoked)).await.expect("revoked");
    assert_eq!(reason(&app.sign_in(&person.issued).await.expect_err("revoked")), "CERTIFICATE_REVOKED");
    let final_state = admin.set_certificate_status(set_status(pb::CertificateStatus::Active)).await.expect_err("final");
    assert_eq!(final_state.code(), Code::FailedPrecondition);
}

/// Wrong signatures over issued challenges are throttled past the limit, but
/// a correct signature always signs in: only the key holder can make one, so
/// a lock-out would only ever punish them.
#[tokio::test]
async fn repeated_wrong_signatures_are_throttled_but_the_key_holder_still_signs_in() {
    let app = TestIdentity::spawn().await;
    let person = app.person(&[], KeyAlgorithm::EcdsaP256).await;
    let mut client = app.client().await;
    let wrong_signature = async |client: &mut IdentityServiceClient<Channel>| {
        let challenge = client.begin_login(pb::BeginLoginRequest {}).await.expect("challenge").into_inner();
        let request = pb::CompleteLoginRequest {
            challenge_id: challenge.challenge_id,
            certificate_chain: vec![person.issued.certificate_der.clone()],
            signature: vec![1u8; 64],
        };
        client.complete_login(request).await.expect_err("bad signature")
    };
    for _ in 0..5 {
        assert_eq!(reason(&wrong_signature(&mut client).await), "WRONG_SIGNATURE");
    }
    let throttled = wrong_signature(&mut client).await;
    assert_eq!(throttled.code(), Code::ResourceExhausted);
    use tonic_types::StatusExt as _;
    let retry = throttled.get_details_retry_info().and_then(|info| info.retry_delay).expect("retry info");
    assert_eq!(retry.as_secs(), 900);
    assert_eq!(app.failure_reasons().await.last().map(String::as_str), Some("throttled"));

    let signed_in = app.sign_in(&person.issued).await.expect("the key holder is never locked out");
    assert_eq!(signed_in.account.map(|account| account.id), Some(person.account_id.clone()));
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_ends_the_session() {
    let app = TestIdentity::spawn().await;
    let person = app.person(&["social_specialist"], KeyAlgorithm::Ed25519).await;
    let first = app.sign_in(&person.issued).await.expect("signs in").tokens.expect("tokens");
    let mut client = app.client().await;
    let second = client
        .refresh_session(pb::RefreshSessionRequest { refresh_token: first.refresh_token.clone() })
        .await
        .expect("refreshed")
        .into_inner()
        .tokens
        .expect("tokens");
    assert_ne!(second.refresh_token, first.refresh_token, "rotates");
    assert_eq!(second.session_id, first.session_id);
    assert_ne!(second.access_token, first.access_token);

    // Someone replays the first refresh token: the whole session ends.
    let reused = client
        .refresh_session(pb::RefreshSessionRequest { refresh_token: first.refresh_token })
        .await
        .expect_err("reused");
    assert_eq!(reason(&reused), "REFRESH_TOKEN_REUSED");
    let after = client
        .refresh_session(pb::RefreshSessionRequest { refresh_token: second.refresh_token })
        .await
        .expect_err("session ended");
    assert_eq!(reason(&after), "SESSION_REVOKED");
}

#[tokio::test]
async fn blocking_a_certificate_or_suspending_an_account_stops_refresh_at_once() {
    let app = TestIdentity::spawn().await;
    let person = app.person(&["social_specialist"], KeyAlgorithm::EcdsaP256).await;
    let certificate_id = app.certificate_id(&person).await;
    let admin_token = app.admin_token().await;
    let mut admin = app.admin_client(&admin_token).await;
    let mut client = app.client().await;

    let tokens = app.sign_in(&person.issued).await.expect("signs in").tokens.expect("tokens");
    let blocked = admin
        .set_certificate_status(pb::SetCertificateStatusRequest {
            request_id: new_request_id(),
            certificate_id,
            status: pb::CertificateStatus::Blocked.into(),
            reason: "lost token".to_owned(),
        })
        .await
        .expect("blocked")
        .into_inner();
    assert_eq!(blocked.sessions_revoked, 1);
    assert!(client.refresh_session(pb::RefreshSessionRequest { refresh_token: tokens.refresh_token }).await.is_err());

    let other = app.person(&["social_specialist"], KeyAlgorithm::EcdsaP256).await;
    let tokens = app.sign_in(&other.issued).await.expect("signs in").tokens.expect("tokens");
    let suspended = admin
        .set_account_status(pb::SetAccountStatusRequest {
            request_id: new_request_id(),
            id: other.account_id.clone(),
            status: pb::AccountStatus::Suspended.into(),
            reason: "left the office".to_owned(),
        })
        .await
        .expect("suspended")
        .into_inner();
    assert_eq!(suspended.sessions_revoked, 1);
    let refused = client
        .refresh_session(pb::RefreshSessionRequest { refresh_token: tokens.refresh_token })
        .await
        .expect_err("suspended");
    assert_eq!(reason(&refused), "SESSION_REVOKED");
}

#[tokio::test]
async fn people_end_their_own_sessions_but_not_others() {
    let app = TestIdentity::spawn().await;
    let alice = app.person(&["social_specialist"], KeyAlgorithm::EcdsaP256).await;
    let bob = app.person(&["social_specialist"], KeyAlgorithm::EcdsaP256).await;
    let alice_tokens = app.sign_in(&alice.issued).await.expect("alice").tokens.expect("tokens");
    let bob_tokens = app.sign_in(&bob.issued).await.expect("bob").tokens.expect("tokens");

    let mut as_bob = esocial_proto::identity::v1::identity_service_client::IdentityServiceClient::with_interceptor(
        app.channel().await,
        crate::harness::Bearer(bob_tokens.access_token.clone()),
    );
    let denied = as_bob
        .revoke_session(pb::RevokeSessionRequest { session_id: alice_tokens.session_id.clone(), reason: String::new() })
        .await
        .expect_err("not his");
    assert_eq!(denied.code(), Code::PermissionDenied);
    as_bob
        .revoke_session(pb::RevokeSessionRequest { session_id: bob_tokens.session_id, reason: String::new() })
        .await
        .expect("his own");
    let mut client = app.client().await;
    assert!(
        client.refresh_session(pb::RefreshSessionRequest { refresh_token: bob_tokens.refresh_token }).await.is_err()
    );
    assert!(
        client.refresh_session(pb::RefreshSessionRequest { refresh_token: alice_tokens.refresh_token }).await.is_ok()
    );
}
