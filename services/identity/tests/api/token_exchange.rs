//! Token exchange (RFC 8693) for the exchange gateway.

use std::sync::Arc;

use esocial_auth::{Audience, SigningKey, TokenVerifier, VerificationError, VerifierSettings};
use esocial_kit::identity::{IdentityJwks, ServiceTokens};
use esocial_proto::identity::v1 as pb;
use esocial_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::harness::{Bearer, TestIdentity, new_request_id, reason, violated_fields};
use crate::service_tokens::{public_jwk, register_for};

const GATEWAY: &str = "esocial.gateway";
const REGISTRY: &str = "esocial.registry";

/// A registered client and its tokens by client credentials.
async fn client(app: &TestIdentity, client_id: &str, scopes: &[&str], audiences: &[&str]) -> ServiceTokens {
    let key = SigningKey::generate();
    register_for(app, client_id, &key, scopes, audiences).await;
    let key = SigningKey::from_pkcs8_pem(key.private_pkcs8_pem()).expect("key");
    ServiceTokens::new(&app.grpc, &app.issuer, client_id, key).expect("client")
}

fn verifier(app: &TestIdentity, audience: &str) -> TokenVerifier {
    TokenVerifier::new(
        VerifierSettings::new(app.issuer.clone(), audience),
        Arc::new(IdentityJwks::new(&app.grpc).expect("url")),
    )
}

async fn calling_as(app: &TestIdentity, token: String) -> IdentityServiceClient<InterceptedService<Channel, Bearer>> {
    IdentityServiceClient::with_interceptor(app.channel().await, Bearer(token))
}

fn exchange(subject_token: &str, audience: &str) -> pb::ExchangeTokenRequest {
    pb::ExchangeTokenRequest { subject_token: subject_token.to_owned(), audience: audience.to_owned() }
}

#[tokio::test]
async fn a_member_token_for_the_gateway_becomes_a_token_for_one_service_naming_the_gateway() {
    let app = TestIdentity::spawn().await;
    let gateway = client(&app, "esocial-gateway", &["gateway"], &["esocial.identity"]).await;
    let member = client(&app, "ua.gov.diia", &["integrator", "service"], &[GATEWAY]).await;
    let member_token = member.token().await.expect("member token");

    // The member's own token is good at the gateway and nowhere else.
    let member_claims = verifier(&app, GATEWAY).verify(&member_token).await.expect("good at the gateway");
    assert_eq!(member_claims.aud, Audience::Many(vec![GATEWAY.to_owned()]));
    assert_eq!(verifier(&app, REGISTRY).verify(&member_token).await, Err(VerificationError::WrongAudience));

    let mut identity = calling_as(&app, gateway.token().await.expect("gateway token")).await;
    let exchanged = identity.exchange_token(exchange(&member_token, REGISTRY)).await.expect("exchanged").into_inner();
    assert_eq!(exchanged.scopes, ["integrator", "service"]);
    assert!(exchanged.expires_in_seconds > 0);

    let claims = verifier(&app, REGISTRY).verify(&exchanged.access_token).await.expect("good at the registry");
    assert_eq!(claims.sub, "client:ua.gov.diia", "the member's system, not the gateway");
    assert_eq!(claims.aud, Audience::One(REGISTRY.to_owned()), "one service only");
    assert_eq!(claims.act.as_ref().map(|actor| actor.sub.as_str()), Some("client:esocial-gateway"));
    assert_eq!(claims.roles, ["integrator", "service"]);
    assert!(claims.exp <= member_claims.exp, "never outlives the member's token");
    assert_ne!(claims.jti, member_claims.jti);
    let (actor, details): (String, serde_json::Value) = sqlx::query_as(
        "SELECT actor, details FROM identity.audit_log WHERE action = 'token.exchanged' AND target = 'client:ua.gov.diia'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the exchange is recorded, once");
    assert_eq!(actor, "client:esocial-gateway");
    assert_eq!(
        details,
        serde_json::json!({
            "audience": REGISTRY,
            "scopes": ["integrator", "service"],
            "token_id": claims.jti,
            "subject_token_id": member_claims.jti,
            "expires_at": claims.exp,
        })
    );
    for elsewhere in ["esocial.classifier", GATEWAY] {
        assert_eq!(
            verifier(&app, elsewhere).verify(&exchanged.access_token).await,
            Err(VerificationError::WrongAudience),
            "{elsewhere}"
        );
    }
}

#[tokio::test]
async fn only_the_gateway_exchanges_and_only_live_system_tokens_for_known_services() {
    let app = TestIdentity::spawn().await;
    let gateway = client(&app, "esocial-gateway", &["gateway"], &["esocial.identity"]).await;
    let member = client(&app, "ua.gov.diia", &["service"], &[GATEWAY]).await;
    let member_token = member.token().await.expect("member token");
    let mut identity = calling_as(&app, gateway.token().await.expect("gateway token")).await;

    // A member may not exchange its own token, and nobody may without a token.
    let mut itself = calling_as(&app, member_token.clone()).await;
    let denied = itself.exchange_token(exchange(&member_token, REGISTRY)).await.expect_err("not the gateway");
    assert_eq!(denied.code(), Code::Unauthenticated, "a member's token is not for identity at all");
    let service = client(&app, "registry", &["service"], &[]).await;
    let mut service = calling_as(&app, service.token().await.expect("service token")).await;
    let denied = service.exchange_token(exchange(&member_token, REGISTRY)).await.expect_err("no gateway role");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let anonymous = app.client().await.exchange_token(exchange(&member_token, REGISTRY)).await.expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    // Bad requests name their field.
    let unknown = identity.exchange_token(exchange(&member_token, "esocial.nowhere")).await.expect_err("audience");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&unknown), ["audience"]);
    let empty = identity.exchange_token(exchange("", REGISTRY)).await.expect_err("no subject token");
    assert_eq!(violated_fields(&empty), ["subject_token"]);

    // A person's token, a token signed by another key, a token for another
    // service and a token already exchanged are all refused.
    let person = app.admin_token().await;
    let refused = identity.exchange_token(exchange(&person, REGISTRY)).await.expect_err("a person");
    assert_eq!(reason(&refused), "INVALID_SUBJECT_TOKEN");
    let mut forged_claims = (*verifier(&app, GATEWAY).verify(&member_token).await.expect("claims")).clone();
    forged_claims.sub = "client:registry".to_owned();
    let forged = SigningKey::generate().sign(&forged_claims).expect("signs");
    let refused = identity.exchange_token(exchange(&forged, REGISTRY)).await.expect_err("forged");
    assert_eq!(reason(&refused), "INVALID_SUBJECT_TOKEN");
    let registry_only = client(&app, "ua.gov.tax", &["service"], &[REGISTRY]).await;
    let registry_only = registry_only.token().await.expect("token");
    let refused = identity.exchange_token(exchange(&registry_only, REGISTRY)).await.expect_err("not for the gateway");
    assert_eq!(reason(&refused), "INVALID_SUBJECT_TOKEN");
    let exchanged = identity.exchange_token(exchange(&member_token, GATEWAY)).await.expect("for the gateway itself");
    let again = exchanged.into_inner().access_token;
    let refused = identity.exchange_token(exchange(&again, REGISTRY)).await.expect_err("exchanged twice");
    assert_eq!(reason(&refused), "INVALID_SUBJECT_TOKEN");
    assert!(refused.message().contains("not exchanged again"), "{}", refused.message());

    // A client deactivated after its token was issued gets no more.
    let admin = app.admin_token().await;
    app.admin_client(&admin)
        .await
        .set_system_client_status(pb::SetSystemClientStatusRequest {
            request_id: new_request_id(),
            client_id: "ua.gov.diia".to_owned(),
            active: false,
        })
        .await
        .expect("deactivated");
    let refused = identity.exchange_token(exchange(&member_token, REGISTRY)).await.expect_err("inactive");
    assert_eq!(reason(&refused), "INVALID_SUBJECT_TOKEN");

    // Only the token issued is recorded; a refusal issues none.
    let audiences: Vec<String> = sqlx::query_scalar(
        "SELECT details->>'audience' FROM identity.audit_log WHERE action = 'token.exchanged' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("audit");
    assert_eq!(audiences, [GATEWAY]);

    // Each refusal is recorded, by the gateway, about the system the subject
    // token names; requests the gateway could not make (no right, a bad
    // field) never reach the exchange and are not.
    let refusals: Vec<(String, String, serde_json::Value)> = sqlx::query_as(
        "SELECT actor, target, details FROM identity.audit_log WHERE action = 'token.exchange_refused' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("audit");
    let targets: Vec<&str> = refusals.iter().map(|(_, target, _)| target.as_str()).collect();
    assert_eq!(targets.len(), 5, "{refusals:?}");
    assert!(!targets[0].is_empty() && !targets[0].starts_with("client:"), "a person's account: {}", targets[0]);
    assert_eq!(targets[1..], ["client:registry", "client:ua.gov.tax", "client:ua.gov.diia", "client:ua.gov.diia"]);
    for (actor, _, details) in &refusals {
        assert_eq!(actor, "client:esocial-gateway");
        assert_eq!(details["reason"], "invalid_subject_token", "{details}");
        assert_eq!(details["audience"], REGISTRY, "{details}");
        assert!(details["subject_token_id"].as_str().is_some_and(|id| !id.is_empty()), "{details}");
    }
    assert!(refusals[3].2["message"].as_str().is_some_and(|message| message.contains("not exchanged again")));
    assert!(refusals[4].2["message"].as_str().is_some_and(|message| message.contains("unknown or inactive")));
}

#[tokio::test]
async fn a_client_is_limited_to_known_audiences() {
    let app = TestIdentity::spawn().await;
    let admin = app.admin_token().await;
    let key = SigningKey::generate();
    let refused = app
        .admin_client(&admin)
        .await
        .register_system_client(pb::RegisterSystemClientRequest {
            request_id: new_request_id(),
            client_id: "ua.gov.diia".to_owned(),
            name: "Дія".to_owned(),
            public_key: Some(public_jwk(&key)),
            scopes: vec!["service".to_owned()],
            audiences: vec![GATEWAY.to_owned(), "esocial.elsewhere".to_owned()],
        })
        .await
        .expect_err("unknown audience");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["audiences"]);
    let clients: i64 =
        sqlx::query_scalar("SELECT count(*) FROM identity.system_clients").fetch_one(&app.pool).await.expect("count");
    assert_eq!(clients, 0, "nothing written");

    let registered = app
        .admin_client(&admin)
        .await
        .register_system_client(pb::RegisterSystemClientRequest {
            request_id: new_request_id(),
            client_id: "ua.gov.diia".to_owned(),
            name: "Дія".to_owned(),
            public_key: Some(public_jwk(&key)),
            scopes: vec!["service".to_owned()],
            audiences: vec![GATEWAY.to_owned(), GATEWAY.to_owned()],
        })
        .await
        .expect("registered")
        .into_inner();
    assert_eq!(registered.client.expect("client").audiences, [GATEWAY]);
}
