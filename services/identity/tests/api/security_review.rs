//! Regression tests for the findings of the identity service's security
//! review (the reviewer's reproductions, asserting the secure behaviour).

use std::collections::BTreeSet;
use std::sync::Arc;

use esocial_auth::{Role, SigningKey, TokenVerifier, VerifierSettings};
use esocial_identity::ca::KeyAlgorithm;
use esocial_identity::tokens::client_claims;
use esocial_kit::identity::IdentityJwks;
use esocial_proto::identity::v1 as pb;
use esocial_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tonic::Code;

use crate::harness::{Bearer, Person, TestIdentity, mint, new_request_id, reason, sign, violated_fields};
use crate::service_tokens::{assertion, public_jwk};

fn verifier(app: &TestIdentity) -> TokenVerifier {
    TokenVerifier::new(
        VerifierSettings::new(app.issuer.clone(), "esocial.classifier"),
        Arc::new(IdentityJwks::new(&app.grpc).expect("url")),
    )
}

fn register_client_request(client_id: &str, key: &SigningKey, scopes: &[&str]) -> pb::RegisterSystemClientRequest {
    pb::RegisterSystemClientRequest {
        request_id: new_request_id(),
        client_id: client_id.to_owned(),
        name: "automation".to_owned(),
        public_key: Some(public_jwk(key)),
        scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        audiences: Vec::new(),
    }
}

fn suspend(id: &str) -> pb::SetAccountStatusRequest {
    pb::SetAccountStatusRequest {
        request_id: new_request_id(),
        id: id.to_owned(),
        status: pb::AccountStatus::Suspended.into(),
        reason: "review".to_owned(),
    }
}

fn reactivate(id: &str) -> pb::SetAccountStatusRequest {
    pb::SetAccountStatusRequest {
        request_id: new_request_id(),
        id: id.to_owned(),
        status: pb::AccountStatus::Active.into(),
        reason: "review".to_owned(),
    }
}

fn set_certificate_status(id: &str, status: pb::CertificateStatus) -> pb::SetCertificateStatusRequest {
    pb::SetCertificateStatusRequest {
        request_id: new_request_id(),
        certificate_id: id.to_owned(),
        status: status.into(),
        reason: "review".to_owned(),
    }
}

async fn access_token(app: &TestIdentity, person: &Person) -> String {
    app.sign_in(&person.issued).await.expect("signs in").tokens.expect("tokens").access_token
}

/// A sign-in with a signature that is not the certificate's over the challenge.
async fn sign_in_with_garbage(app: &TestIdentity, certificate_der: &[u8]) -> tonic::Status {
    let mut client = app.client().await;
    let challenge = client.begin_login(pb::BeginLoginRequest {}).await.expect("challenge").into_inner();
    client
        .complete_login(pb::CompleteLoginRequest {
            challenge_id: challenge.challenge_id,
            certificate_chain: vec![certificate_der.to_vec()],
            signature: vec![1u8; 64],
        })
        .await
        .expect_err("refused")
}

/// The payloads of the outbox's events of one subject, oldest first.
async fn events<M: prost::Message + Default>(app: &TestIdentity, subject: &str) -> Vec<M> {
    let payloads: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT payload FROM identity.outbox WHERE subject = $1 ORDER BY id")
            .bind(subject)
            .fetch_all(&app.pool)
            .await
            .expect("events");
    payloads.iter().map(|payload| M::decode(payload.as_slice()).expect("decodes")).collect()
}

/// Finding 1: a system client can hold only the roles of systems, and no
/// client token changes the catalogue, whatever roles it carries.
#[tokio::test]
async fn a_system_client_holds_only_system_scopes_and_never_administers() {
    let app = TestIdentity::spawn().await;
    let admin_token = app.admin_token().await;
    let mut admin = app.admin_client(&admin_token).await;
    let key = SigningKey::generate();
    for scopes in [&["security_admin"][..], &["service", "registry_auditor"], &["decision_maker"]] {
        let refused = admin
            .register_system_client(register_client_request("ops-automation", &key, scopes))
            .await
            .expect_err("a person's role as a client's scope");
        assert_eq!(refused.code(), Code::InvalidArgument, "{scopes:?}");
        assert_eq!(violated_fields(&refused), ["scopes"]);
    }
    let planted = sqlx::query(
        "INSERT INTO identity.system_clients (client_id, name, public_jwk, scopes, created_by, updated_by)
         VALUES ('planted', 'planted', '{}', '{security_admin}', 'x', 'x')",
    )
    .execute(&app.pool)
    .await;
    assert!(planted.is_err(), "the database refuses it too");

    // A client registered before the rule, with a person's role, gets tokens
    // with only the roles of systems.
    sqlx::query("ALTER TABLE identity.system_clients DROP CONSTRAINT system_clients_scopes_of_systems")
        .execute(&app.pool)
        .await
        .expect("constraint dropped");
    sqlx::query(
        "INSERT INTO identity.system_clients (client_id, name, public_jwk, scopes, created_by, updated_by)
         VALUES ('legacy', 'legacy', $1, '{security_admin,service}', 'x', 'x')",
    )
    .bind(sqlx::types::Json(key.public_jwk()))
    .execute(&app.pool)
    .await
    .expect("legacy client");
    let mut client = app.client().await;
    let issued = client
        .issue_service_token(pb::IssueServiceTokenRequest {
            client_assertion: assertion(&key, "legacy", &app.issuer, 60),
            scopes: vec![],
        })
        .await
        .expect("token")
        .into_inner();
    assert_eq!(issued.scopes, ["service"]);
    let overreach = client
        .issue_service_token(pb::IssueServiceTokenRequest {
            client_assertion: assertion(&key, "legacy", &app.issuer, 60),
            scopes: vec!["security_admin".to_owned()],
        })
        .await
        .expect_err("not a system's role");
    assert_eq!(overreach.code(), Code::PermissionDenied);

    // Even a client token carrying security_admin (as such a client's were)
    // changes nothing: not the admin's own roles or status, nor anything else.
    let backdoor = mint(&app, &client_claims(&app.identity.settings, "legacy", &[Role::SecurityAdmin], &[])).await;
    let mut as_client = app.admin_client(&backdoor).await;
    let own_roles = as_client
        .assign_roles(pb::AssignRolesRequest {
            request_id: new_request_id(),
            account_id: app.admin.account_id.clone(),
            roles: vec!["security_admin".to_owned(), "decision_maker".to_owned(), "finance_officer".to_owned()],
        })
        .await
        .expect_err("self-grant through a client");
    assert_eq!(own_roles.code(), Code::PermissionDenied);
    let status = as_client.set_account_status(reactivate(&app.admin.account_id)).await.expect_err("status");
    assert_eq!(status.code(), Code::PermissionDenied);
    let registered = as_client
        .register_system_client(register_client_request("another", &SigningKey::generate(), &["service"]))
        .await
        .expect_err("a client registers no clients");
    assert_eq!(registered.code(), Code::PermissionDenied);
    let rotated = as_client
        .rotate_signing_key(pb::RotateSigningKeyRequest { request_id: new_request_id() })
        .await
        .expect_err("a client rotates no keys");
    assert_eq!(rotated.code(), Code::PermissionDenied);

    // Nor does a token claiming a qualified signature without a session.
    let mut sessionless = client_claims(&app.identity.settings, "legacy", &[Role::SecurityAdmin], &[]);
    sessionless.sub = app.admin.account_id.clone();
    sessionless.amr = vec!["qes".to_owned()];
    let sessionless = mint(&app, &sessionless).await;
    let refused = app
        .admin_client(&sessionless)
        .await
        .set_account_status(reactivate(&app.admin.account_id))
        .await
        .expect_err("no session");
    assert_eq!(refused.code(), Code::PermissionDenied);

    // A suspended administrator's unexpired token changes nothing either:
    // suspension ended the session it belongs to.
    let other = app.person(&["security_admin"], KeyAlgorithm::EcdsaP256).await;
    let other_token = access_token(&app, &other).await;
    app.admin_client(&other_token).await.set_account_status(suspend(&app.admin.account_id)).await.expect("suspended");
    let after = admin
        .assign_roles(pb::AssignRolesRequest {
            request_id: new_request_id(),
            account_id: other.account_id.clone(),
            roles: vec![],
        })
        .await
        .expect_err("the suspended admin demotes nobody");
    assert_eq!(after.code(), Code::Unauthenticated);
    let roles: Vec<String> = sqlx::query_scalar("SELECT unnest(roles) FROM identity.accounts WHERE id = $1::uuid")
        .bind(&app.admin.account_id)
        .fetch_all(&app.pool)
        .await
        .expect("roles");
    assert_eq!(roles, ["security_admin"], "no role was granted through a client");
}

/// Finding 2: a client id is never an account id, a client token's subject
/// is `client:<id>`, and only a person's token owns a session.
#[tokio::test]
async fn a_client_id_is_never_an_account_id_and_a_client_token_owns_no_session() {
    let app = TestIdentity::spawn().await;
    let person = app.person(&["social_specialist"], KeyAlgorithm::EcdsaP256).await;
    let session = app.sign_in(&person.issued).await.expect("signs in").tokens.expect("tokens");
    let admin_token = app.admin_token().await;
    let mut admin = app.admin_client(&admin_token).await;
    let key = SigningKey::generate();
    let simple = uuid::Uuid::parse_str(&person.account_id).expect("uuid").simple().to_string();
    for client_id in [person.account_id.clone(), simple] {
        let refused = admin
            .register_system_client(register_client_request(&client_id, &key, &["service"]))
            .await
            .expect_err("an account id as client id");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&refused), ["client_id"]);
    }

    admin.register_system_client(register_client_request("ops-automation", &key, &["service"])).await.expect("ok");
    let token = app
        .client()
        .await
        .issue_service_token(pb::IssueServiceTokenRequest {
            client_assertion: assertion(&key, "ops-automation", &app.issuer, 60),
            scopes: vec![],
        })
        .await
        .expect("token")
        .into_inner()
        .access_token;
    let claims = verifier(&app).verify(&token).await.expect("verifies");
    assert_eq!(claims.sub, "client:ops-automation");
    assert!(claims.amr.is_empty() && claims.sid.is_none());

    // A client token does not end a person's session, even one whose subject
    // is the person's account id (a client registered with it before).
    let mut colliding = client_claims(&app.identity.settings, &person.account_id, &[Role::Service], &[]);
    for subject in [colliding.sub.clone(), person.account_id.clone()] {
        colliding.sub = subject;
        let mut as_client =
            IdentityServiceClient::with_interceptor(app.channel().await, Bearer(mint(&app, &colliding).await));
        let refused = as_client
            .revoke_session(pb::RevokeSessionRequest { session_id: session.session_id.clone(), reason: String::new() })
            .await
            .expect_err("not its session");
        assert_eq!(refused.code(), Code::PermissionDenied);
    }
    let mut client = app.client().await;
    client
        .refresh_session(pb::RefreshSessionRequest { refresh_token: session.refresh_token.clone() })
        .await
        .expect("the session is still open");

    // The person ends it.
    let mut as_person = IdentityServiceClient::with_interceptor(app.channel().await, Bearer(session.access_token));
    as_person
        .revoke_session(pb::RevokeSessionRequest { session_id: session.session_id, reason: String::new() })
        .await
        .expect("their own");
}

/// Finding 3: nobody changes their own account or its certificates.
#[tokio::test]
async fn an_administrator_changes_neither_their_own_account_nor_its_certificates() {
    let app = TestIdentity::spawn().await;
    let admin_token = app.admin_token().await;
    let mut admin = app.admin_client(&admin_token).await;
    let me = admin
        .get_account(pb::GetAccountRequest { id: app.admin.account_id.clone(), purpose: "review".into() })
        .await
        .expect("read")
        .into_inner()
        .account
        .expect("account");
    let widen = |version: u32| pb::UpdateAccountRequest {
        request_id: new_request_id(),
        id: me.id.clone(),
        expected_version: version,
        full_name: me.full_name.clone(),
        organization_id: me.organization_id.clone(),
        position: me.position.clone(),
        territories: vec!["UA71020010000037786".into(), "UA80000000000093317".into()],
    };
    let own = admin.update_account(widen(me.version)).await.expect_err("own territories");
    assert_eq!(own.code(), Code::PermissionDenied);

    let renewed = app
        .authority
        .issue_person(&app.admin.rnokpp, "Адміністратор Безпеки", KeyAlgorithm::EcdsaP256, -1, 365)
        .expect("certificate");
    let own_certificate = admin
        .register_certificate(pb::RegisterCertificateRequest {
            request_id: new_request_id(),
            account_id: app.admin.account_id.clone(),
            certificate: renewed.certificate_der.clone(),
        })
        .await
        .expect_err("own certificate");
    assert_eq!(own_certificate.code(), Code::PermissionDenied);

    let certificate_id = app.certificate_id(&app.admin).await;
    let own_status = admin
        .set_certificate_status(set_certificate_status(&certificate_id, pb::CertificateStatus::Revoked))
        .await
        .expect_err("own certificate's status");
    assert_eq!(own_status.code(), Code::PermissionDenied);
    assert!(own_status.message().contains("their own account"), "{}", own_status.message());

    // Another administrator may do all of it.
    let other = app.person(&["security_admin"], KeyAlgorithm::EcdsaP256).await;
    let other_token = access_token(&app, &other).await;
    let mut as_other = app.admin_client(&other_token).await;
    let updated = as_other.update_account(widen(me.version)).await.expect("another admin").into_inner();
    assert_eq!(updated.account.expect("account").territories.len(), 2);
    as_other
        .register_certificate(pb::RegisterCertificateRequest {
            request_id: new_request_id(),
            account_id: app.admin.account_id.clone(),
            certificate: renewed.certificate_der,
        })
        .await
        .expect("another admin renews it");
}

/// Finding 4: a stranger holding only someone's public certificate cannot
/// lock them out: unknown and reused challenges count against nobody.
#[tokio::test]
async fn a_stranger_with_only_the_certificate_cannot_lock_the_owner_out() {
    let app = TestIdentity::spawn_with(&[("ESOCIAL_IDENTITY_LOGIN_FAILURES_MAX", "2")]).await;
    let person = app.person(&[], KeyAlgorithm::EcdsaP256).await;
    let mut client = app.client().await;
    for _ in 0..10 {
        let refused = client
            .complete_login(pb::CompleteLoginRequest {
                challenge_id: uuid::Uuid::new_v4().to_string(),
                certificate_chain: vec![person.issued.certificate_der.clone()],
                signature: vec![1u8; 8],
            })
            .await
            .expect_err("unknown challenge");
        assert_eq!(reason(&refused), "UNKNOWN_CHALLENGE");
    }
    // A retried duplicate of a used challenge (the owner's client retrying,
    // or someone replaying it) does not count either.
    let challenge = client.begin_login(pb::BeginLoginRequest {}).await.expect("challenge").into_inner();
    let request = pb::CompleteLoginRequest {
        challenge_id: challenge.challenge_id.clone(),
        certificate_chain: vec![person.issued.certificate_der.clone()],
        signature: sign(&person.issued, &challenge),
    };
    client.complete_login(request.clone()).await.expect("signs in");
    for _ in 0..5 {
        assert_eq!(reason(&client.complete_login(request.clone()).await.expect_err("used")), "CHALLENGE_USED");
    }
    app.sign_in(&person.issued).await.expect("the owner is not locked out");

    // Wrong signatures over issued challenges count: past the limit they are
    // throttled, yet the key holder still signs in.
    for _ in 0..2 {
        assert_eq!(reason(&sign_in_with_garbage(&app, &person.issued.certificate_der).await), "WRONG_SIGNATURE");
    }
    let throttled = sign_in_with_garbage(&app, &person.issued.certificate_der).await;
    assert_eq!(throttled.code(), Code::ResourceExhausted);
    app.sign_in(&person.issued).await.expect("the key holder is never locked out");
    let counted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM identity.login_failures WHERE reason = 'wrong_signature' AND account_id = $1::uuid
           AND challenge_id IS NOT NULL",
    )
    .bind(&person.account_id)
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(counted, 2, "wrong signatures are recorded against the account, with their challenge");
}

/// Finding 5: the account's and certificate's states are told only to whoever
/// proves they hold the certificate's key; the event keeps the detail.
#[tokio::test]
async fn a_sign_in_tells_the_account_status_only_to_the_key_holder() {
    let app = TestIdentity::spawn().await;
    let person = app.person(&[], KeyAlgorithm::EcdsaP256).await;
    let admin_token = app.admin_token().await;
    let mut admin = app.admin_client(&admin_token).await;

    admin.set_account_status(suspend(&person.account_id)).await.expect("suspended");
    assert_eq!(reason(&sign_in_with_garbage(&app, &person.issued.certificate_der).await), "WRONG_SIGNATURE");
    assert_eq!(reason(&app.sign_in(&person.issued).await.expect_err("suspended")), "ACCOUNT_SUSPENDED");
    admin.set_account_status(reactivate(&person.account_id)).await.expect("active");

    let certificate_id = app.certificate_id(&person).await;
    admin
        .set_certificate_status(set_certificate_status(&certificate_id, pb::CertificateStatus::Blocked))
        .await
        .expect("blocked");
    assert_eq!(reason(&sign_in_with_garbage(&app, &person.issued.certificate_der).await), "WRONG_SIGNATURE");
    assert_eq!(reason(&app.sign_in(&person.issued).await.expect_err("blocked")), "CERTIFICATE_BLOCKED");

    // Whether a certificate is registered at all is not told either.
    let stranger = app
        .authority
        .issue_person(&crate::harness::new_rnokpp(), "Незнайомець", KeyAlgorithm::EcdsaP256, -1, 30)
        .expect("certificate");
    assert_eq!(reason(&sign_in_with_garbage(&app, &stranger.certificate_der).await), "WRONG_SIGNATURE");
    assert_eq!(reason(&app.sign_in(&stranger).await.expect_err("unregistered")), "UNKNOWN_CERTIFICATE");

    let failed: Vec<pb::LoginFailed> = events(&app, "identity.login.failed").await;
    let reasons: Vec<&str> = failed.iter().map(|event| event.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "wrong_signature",
            "account_suspended",
            "wrong_signature",
            "certificate_blocked",
            "wrong_signature",
            "unknown_certificate"
        ]
    );
    assert_eq!(failed[0].account_id, person.account_id, "the holder's account is told in the event");
    assert_eq!(failed[1].account_id, person.account_id);
}

/// Finding 6: a sign-in racing a block opens no session that outlives it.
#[tokio::test]
async fn a_sign_in_racing_a_block_leaves_no_open_session() {
    let app = TestIdentity::spawn_with(&[("ESOCIAL_IDENTITY_LOGIN_FAILURES_MAX", "100")]).await;
    let admin_token = app.admin_token().await;
    let mut admin = app.admin_client(&admin_token).await;
    let mut opened_after_block = 0;
    for round in 0..20 {
        let person = app.person(&[], KeyAlgorithm::EcdsaP256).await;
        let certificate_id = app.certificate_id(&person).await;
        let mut logins = Vec::new();
        for _ in 0..8 {
            let issued = person.issued.clone();
            let grpc = app.grpc.clone();
            logins.push(tokio::spawn(async move {
                let mut client = IdentityServiceClient::connect(grpc).await.expect("connects");
                let challenge = client.begin_login(pb::BeginLoginRequest {}).await.expect("challenge").into_inner();
                let signature = sign(&issued, &challenge);
                client
                    .complete_login(pb::CompleteLoginRequest {
                        challenge_id: challenge.challenge_id,
                        certificate_chain: vec![issued.certificate_der.clone()],
                        signature,
                    })
                    .await
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(2 + (round % 5))).await;
        admin
            .set_certificate_status(set_certificate_status(&certificate_id, pb::CertificateStatus::Blocked))
            .await
            .expect("blocked");
        for login in logins {
            match login.await.expect("joined") {
                Ok(_) => {}
                Err(refused) => assert_eq!(reason(&refused), "CERTIFICATE_BLOCKED"),
            }
        }
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM identity.sessions WHERE certificate_id = $1::uuid AND revoked_at IS NULL",
        )
        .bind(&certificate_id)
        .fetch_one(&app.pool)
        .await
        .expect("count");
        opened_after_block += open;
    }
    assert_eq!(opened_after_block, 0, "sessions of blocked certificates left open");
    let revoked: i64 = sqlx::query_scalar("SELECT count(*) FROM identity.sessions WHERE revoked_at IS NOT NULL")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    let announced = events::<pb::SessionRevoked>(&app, "identity.session.revoked").await.len();
    assert_eq!(i64::try_from(announced).expect("fits"), revoked, "each ended session announced");
}

/// Finding 7: only keys that open with the master key and match their row
/// are published, and a retired key no longer than its tokens live.
#[tokio::test]
async fn only_keys_that_check_out_are_published_and_retired_ones_not_for_long() {
    let app = TestIdentity::spawn().await;
    let attacker = SigningKey::generate();
    // A row written with database access only: retired a minute ago, to be
    // published for ten minutes more, but not sealed under the master key.
    sqlx::query(
        "INSERT INTO identity.signing_keys (kid, public_jwk, sealed_private_key, retired_at, publish_until)
         VALUES ($1, $2, '\\x00', now() - interval '1 minute', now() + interval '10 minutes')",
    )
    .bind(attacker.key_id())
    .bind(sqlx::types::Json(attacker.public_jwk()))
    .execute(&app.pool)
    .await
    .expect("planted");
    // One administrator's token for every rotation: identity's own verifier
    // fetches keys it has not seen at most every ten seconds.
    let admin_token = app.admin_token().await;
    let mut admin = app.admin_client(&admin_token).await;
    let mut rotate = async || {
        admin
            .rotate_signing_key(pb::RotateSigningKeyRequest { request_id: new_request_id() })
            .await
            .expect("rotated")
            .into_inner()
    };
    let published = async || -> Vec<pb::Jwk> {
        app.client().await.get_jwks(pb::GetJwksRequest {}).await.expect("jwks").into_inner().keys
    };
    let first = rotate().await;
    let keys = published().await;
    let kids: BTreeSet<&str> = keys.iter().map(|key| key.kid.as_str()).collect();
    assert_eq!(kids, BTreeSet::from([first.new_key_id.as_str(), first.retired_key_id.as_str()]));

    // A real retired key's row given another public key is not published,
    // and a retired key whose publication was stretched goes when its tokens
    // would have expired.
    let second = rotate().await;
    let mut swapped = serde_json::to_value(attacker.public_jwk()).expect("jwk");
    swapped["kid"] = serde_json::Value::String(first.retired_key_id.clone());
    sqlx::query("UPDATE identity.signing_keys SET public_jwk = $2 WHERE kid = $1")
        .bind(&first.retired_key_id)
        .bind(sqlx::types::Json(&swapped))
        .execute(&app.pool)
        .await
        .expect("swapped");
    sqlx::query(
        "UPDATE identity.signing_keys SET retired_at = now() - interval '1 day', publish_until = now() + interval '10 years'
         WHERE kid = $1",
    )
    .bind(&second.retired_key_id)
    .execute(&app.pool)
    .await
    .expect("stretched");
    let third = rotate().await;
    let keys = published().await;
    let kids: BTreeSet<&str> = keys.iter().map(|key| key.kid.as_str()).collect();
    assert_eq!(kids, BTreeSet::from([third.new_key_id.as_str(), third.retired_key_id.as_str()]));
    let attacker_x = swapped["x"].as_str().expect("x");
    assert!(keys.iter().all(|key| key.x != attacker_x), "the attacker's public key is nowhere");

    // A token signed with the planted key is good nowhere.
    let mut forged = client_claims(&app.identity.settings, "anyone", &[Role::SecurityAdmin], &[]);
    forged.amr = vec!["qes".to_owned()];
    let forged = attacker.sign(&forged).expect("signs");
    assert!(verifier(&app).verify(&forged).await.is_err(), "other services refuse it");
    let listed = app
        .admin_client(&forged)
        .await
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .expect_err("identity refuses it");
    assert_eq!(listed.code(), Code::Unauthenticated);
}

/// Finding 8: every session ended in bulk (suspension, block, renewal) is
/// announced, one event each, in the change's transaction.
#[tokio::test]
async fn sessions_ended_in_bulk_are_announced_one_event_each() {
    let app = TestIdentity::spawn().await;
    let person = app.person(&["social_specialist"], KeyAlgorithm::EcdsaP256).await;
    let admin_token = app.admin_token().await;
    let mut admin = app.admin_client(&admin_token).await;
    let session_of = async || app.sign_in(&person.issued).await.expect("signs in").tokens.expect("tokens").session_id;

    let suspended_sessions = BTreeSet::from([session_of().await, session_of().await]);
    let suspended = admin.set_account_status(suspend(&person.account_id)).await.expect("suspended").into_inner();
    assert_eq!(suspended.sessions_revoked, 2);
    admin.set_account_status(reactivate(&person.account_id)).await.expect("active");

    let certificate_id = app.certificate_id(&person).await;
    let blocked_session = session_of().await;
    let blocked = admin
        .set_certificate_status(set_certificate_status(&certificate_id, pb::CertificateStatus::Blocked))
        .await
        .expect("blocked")
        .into_inner();
    assert_eq!(blocked.sessions_revoked, 1);
    admin
        .set_certificate_status(set_certificate_status(&certificate_id, pb::CertificateStatus::Active))
        .await
        .expect("unblocked");

    let superseded_session = session_of().await;
    let renewed =
        app.authority.issue_person(&person.rnokpp, "Тестова Особа", KeyAlgorithm::Ed25519, -1, 365).expect("issued");
    admin
        .register_certificate(pb::RegisterCertificateRequest {
            request_id: new_request_id(),
            account_id: person.account_id.clone(),
            certificate: renewed.certificate_der,
        })
        .await
        .expect("renewed");

    let revoked: Vec<pb::SessionRevoked> = events(&app, "identity.session.revoked").await;
    let by_reason = |reason: &str| -> BTreeSet<String> {
        revoked.iter().filter(|event| event.reason == reason).map(|event| event.session_id.clone()).collect()
    };
    assert_eq!(by_reason("account suspended"), suspended_sessions);
    assert_eq!(by_reason("certificate blocked"), BTreeSet::from([blocked_session]));
    assert_eq!(by_reason("certificate superseded"), BTreeSet::from([superseded_session]));
    assert_eq!(revoked.len(), 4);
    assert!(revoked.iter().all(|event| event.account_id == person.account_id));
}

/// Finding 8: reading an account's certificates (their subjects name the
/// holder and carry the RNOKPP) is recorded, like reading the account.
#[tokio::test]
async fn reading_an_accounts_certificates_is_recorded() {
    let app = TestIdentity::spawn().await;
    let person = app.person(&["social_specialist"], KeyAlgorithm::EcdsaP256).await;
    let auditor = app.person(&["registry_auditor"], KeyAlgorithm::EcdsaP256).await;
    let auditor_token = access_token(&app, &auditor).await;
    let listed = app
        .admin_client(&auditor_token)
        .await
        .list_certificates(pb::ListCertificatesRequest {
            account_id: person.account_id.clone(),
            purpose: "checking a complaint".to_owned(),
        })
        .await
        .expect("listed")
        .into_inner()
        .certificates;
    assert_eq!(listed.len(), 1);
    let without_purpose = app
        .admin_client(&auditor_token)
        .await
        .list_certificates(pb::ListCertificatesRequest {
            account_id: person.account_id.clone(),
            purpose: String::new(),
        })
        .await
        .expect_err("a purpose is required");
    assert_eq!(without_purpose.code(), tonic::Code::InvalidArgument);
    let recorded: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT details FROM identity.audit_log
         WHERE action = 'account.certificates_read' AND target = $1 AND actor = $2",
    )
    .bind(&person.account_id)
    .bind(&auditor.account_id)
    .fetch_all(&app.pool)
    .await
    .expect("audit");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["certificates"], serde_json::json!([listed[0].id]));
    assert_eq!(recorded[0]["purpose"], "checking a complaint");
}

/// Finding 9: a refresh checks that the certificate is still valid and ends
/// the session when it is not.
#[tokio::test]
async fn refresh_ends_a_session_whose_certificate_expired() {
    let app = TestIdentity::spawn().await;
    let person = app.person(&["social_specialist"], KeyAlgorithm::EcdsaP256).await;
    let tokens = app.sign_in(&person.issued).await.expect("signs in").tokens.expect("tokens");
    sqlx::query("UPDATE identity.certificates SET not_after = now() - interval '1 second' WHERE fingerprint = $1")
        .bind(esocial_identity::qes::fingerprint(&person.issued.certificate_der))
        .execute(&app.pool)
        .await
        .expect("expired");
    let mut client = app.client().await;
    let expired = client
        .refresh_session(pb::RefreshSessionRequest { refresh_token: tokens.refresh_token.clone() })
        .await
        .expect_err("expired certificate");
    assert_eq!(reason(&expired), "CERTIFICATE_EXPIRED");
    let revoked: Vec<pb::SessionRevoked> = events(&app, "identity.session.revoked").await;
    assert_eq!(revoked.iter().map(|event| event.session_id.as_str()).collect::<Vec<_>>(), [tokens.session_id]);
    let ended = client
        .refresh_session(pb::RefreshSessionRequest { refresh_token: tokens.refresh_token })
        .await
        .expect_err("ended");
    assert_eq!(reason(&ended), "SESSION_REVOKED");
}

/// Finding 9: `service` is a role of systems; no person is given it.
#[tokio::test]
async fn people_are_never_given_the_service_role() {
    let app = TestIdentity::spawn().await;
    let person = app.person(&["social_specialist"], KeyAlgorithm::EcdsaP256).await;
    let admin_token = app.admin_token().await;
    let refused = app
        .admin_client(&admin_token)
        .await
        .assign_roles(pb::AssignRolesRequest {
            request_id: new_request_id(),
            account_id: person.account_id.clone(),
            roles: vec!["social_specialist".to_owned(), "service".to_owned()],
        })
        .await
        .expect_err("a system's role");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["roles"]);
}

/// The list of system clients, which the exchange gateway reads to follow
/// their status: for security administrators and the gateway's role, in
/// the order of the clients' ids, page by page, with each one's version.
#[tokio::test]
async fn the_system_clients_are_listed_to_security_administrators_and_the_gateway_only() {
    let app = TestIdentity::spawn().await;
    let admin_token = app.admin_token().await;
    let mut admin = app.admin_client(&admin_token).await;
    for client_id in ["zz-last", "aa-first", "mm-middle"] {
        admin
            .register_system_client(register_client_request(client_id, &SigningKey::generate(), &["service"]))
            .await
            .expect("registered");
    }
    admin
        .set_system_client_status(pb::SetSystemClientStatusRequest {
            request_id: new_request_id(),
            client_id: "mm-middle".to_owned(),
            active: false,
        })
        .await
        .expect("deactivated");
    let list = |page_token: String| pb::ListSystemClientsRequest {
        page: Some(esocial_proto::common::v1::PageRequest { page_size: 2, page_token }),
    };
    let gateway = mint(&app, &client_claims(&app.identity.settings, "esocial-gateway", &[Role::Gateway], &[])).await;
    let mut as_gateway = app.admin_client(&gateway).await;
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = as_gateway.list_system_clients(list(page_token)).await.expect("listed").into_inner();
        assert!(page.clients.len() <= 2, "{page:?}");
        listed.extend(page.clients.into_iter().map(|client| (client.client_id, client.active, client.version)));
        page_token = page.page.map(|page| page.next_page_token).unwrap_or_default();
        if page_token.is_empty() {
            break;
        }
    }
    let ours: Vec<_> =
        listed.iter().filter(|(id, ..)| ["aa-first", "mm-middle", "zz-last"].contains(&id.as_str())).collect();
    assert_eq!(
        ours,
        [&("aa-first".to_owned(), true, 1), &("mm-middle".to_owned(), false, 2), &("zz-last".to_owned(), true, 1)]
    );
    assert!(listed.windows(2).all(|pair| pair[0].0 < pair[1].0), "in the order of their ids: {listed:?}");
    let by_admin = admin.list_system_clients(list(String::new())).await.expect("an administrator lists them");
    assert_eq!(by_admin.into_inner().clients.len(), 2);

    // A system with role `service` does not.
    let service = mint(&app, &client_claims(&app.identity.settings, "ops-automation", &[Role::Service], &[])).await;
    let refused =
        app.admin_client(&service).await.list_system_clients(list(String::new())).await.expect_err("not its to read");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let malformed =
        as_gateway.list_system_clients(list("not a page token".to_owned())).await.expect_err("a bad page token");
    assert_eq!(violated_fields(&malformed), ["page.page_token"]);
}
