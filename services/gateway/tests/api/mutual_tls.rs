//! Mutual TLS: a member bound to a client certificate must present it,
//! on new calls and on streams already open.

use std::time::Duration;

use esocial_proto::gateway::v1 as pb;
use esocial_proto::gateway::v1::subscription_service_client::SubscriptionServiceClient;
use esocial_proto::registry::v1 as registry_pb;
use esocial_proto::registry::v1::idp_service_client::IdpServiceClient;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
use sha2::{Digest as _, Sha256};
use tonic::Code;
use tonic::transport::{ClientTlsConfig, Identity};

use crate::harness::*;
use crate::proxy::{BANK_SERVICE, Bank, VERIFY_ACCOUNTS, answered, ended, logged_codes, open_account_stream};
use crate::subscriptions::{REGISTERED, register_diia_entitled_to_registrations, stream_of_registrations};

const VERIFY_CERTIFICATE: &str = "/esocial.registry.v1.IdpService/VerifyIdpCertificate";

/// A certification authority for the test: its certificate (PEM) and key.
struct Authority {
    certificate_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, PEM, and the SHA-256 of its DER.
struct Issued {
    certificate_pem: String,
    key_pem: String,
    sha256: String,
}

impl Authority {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let certificate = params.self_signed(&key).expect("self-signed");
        Self { certificate_pem: certificate.pem(), issuer: Issuer::new(params, key) }
    }

    fn issue(&self, name: &str, server: bool) -> Issued {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        if server {
            params.subject_alt_names = vec![SanType::DnsName("localhost".try_into().expect("name"))];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let certificate = params.signed_by(&key, &self.issuer).expect("signed");
        Issued {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
            sha256: Sha256::digest(certificate.der()).iter().map(|byte| format!("{byte:02x}")).collect(),
        }
    }
}

fn presenting(gateway: &TestGateway, certificate: &Issued) -> ClientTlsConfig {
    gateway.client_tls().identity(Identity::from_pem(&certificate.certificate_pem, &certificate.key_pem))
}

/// A TLS connection to the gateway with `tls`, each call carrying `token`:
/// what any client of the tests goes over.
async fn over_tls(gateway: &TestGateway, tls: ClientTlsConfig, token: &str) -> Intercepted {
    tonic::service::interceptor::InterceptedService::new(
        gateway.tls_channel(tls).await.expect("connects over TLS"),
        BearerToken(Some(token.to_owned())),
    )
}

async fn idp(gateway: &TestGateway, tls: ClientTlsConfig, token: &str) -> Idp {
    IdpServiceClient::new(over_tls(gateway, tls, token).await)
}

/// A gateway serving TLS with a certificate of a CA of its own, taking
/// client certificates of `members`.
async fn gateway_with_tls(members: &Authority) -> TestGateway {
    let servers = Authority::new("gateway server CA");
    let server = servers.issue("gateway", true);
    TestGateway::spawn_with_tls(
        (&server.certificate_pem, &server.key_pem),
        &servers.certificate_pem,
        &members.certificate_pem,
    )
    .await
}

#[tokio::test]
async fn a_member_bound_to_a_client_certificate_must_present_it_with_its_token() {
    let members = Authority::new("member systems CA");
    let gateway = gateway_with_tls(&members).await;
    let diia_certificate = members.issue("Дія", false);
    let other_certificate = members.issue("інша система", false);

    gateway.register_client("diia").await;
    let mut admin = gateway.admin().await;
    admin
        .register_member(pb::RegisterMemberRequest {
            request_id: new_request_id(),
            member_id: DIIA.to_owned(),
            name: "Дія".to_owned(),
            client_id: "diia".to_owned(),
            contact: "ops@example.gov.ua".to_owned(),
            limits: None,
            log_mode: pb::LogMode::Metadata.into(),
            client_certificate_sha256: diia_certificate.sha256.to_uppercase(),
        })
        .await
        .expect("registered with its certificate");
    grant(&mut admin, DIIA, VERIFY_CERTIFICATE).await;
    gateway.register_member(BANK, "bank", None, &[VERIFY_CERTIFICATE]).await;
    let member = member(&mut admin, DIIA).await;
    assert_eq!(member.client_certificate_sha256, diia_certificate.sha256, "kept in lower case");

    let verify = registry_pb::VerifyIdpCertificateRequest { code: "1234567890123452".to_owned() };
    let diia_token = gateway.system_token("diia").await;

    // Its token and its certificate: forwarded.
    let mut with_certificate = idp(&gateway, presenting(&gateway, &diia_certificate), &diia_token).await;
    with_certificate.verify_idp_certificate(verify.clone()).await.expect("token and certificate");

    // Its token alone, or with another member's certificate from the same CA: refused.
    let mut token_only = idp(&gateway, gateway.client_tls(), &diia_token).await;
    let refused = token_only.verify_idp_certificate(verify.clone()).await.expect_err("no certificate");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("client certificate"), "{}", refused.message());
    let mut wrong = idp(&gateway, presenting(&gateway, &other_certificate), &diia_token).await;
    let refused = wrong.verify_idp_certificate(verify.clone()).await.expect_err("another certificate");
    assert_eq!(refused.code(), Code::Unauthenticated);

    // A member bound to no certificate comes in with its token, over TLS.
    let mut bank = idp(&gateway, gateway.client_tls(), &gateway.system_token("bank").await).await;
    bank.verify_idp_certificate(verify.clone()).await.expect("token only");

    // A certificate from a CA the gateway does not trust fails the handshake.
    let stranger = Authority::new("unknown CA").issue("Дія", false);
    let untrusted = async {
        match gateway.tls_channel(presenting(&gateway, &stranger)).await {
            Err(_) => true,
            Ok(channel) => IdpServiceClient::with_interceptor(channel, BearerToken(Some(diia_token.clone())))
                .verify_idp_certificate(verify.clone())
                .await
                .is_err(),
        }
    };
    let refused = tokio::time::timeout(std::time::Duration::from_secs(10), untrusted).await;
    assert_eq!(refused, Ok(true), "a certificate of an unknown CA is not accepted");

    // Unbound again, the token alone is enough; a malformed fingerprint is named.
    let bad = admin
        .update_member(pb::UpdateMemberRequest {
            request_id: new_request_id(),
            member_id: DIIA.to_owned(),
            client_certificate_sha256: Some("not-a-digest".to_owned()),
            ..Default::default()
        })
        .await
        .expect_err("malformed");
    assert_eq!(violated_fields(&bad), ["client_certificate_sha256"]);
    admin
        .update_member(pb::UpdateMemberRequest {
            request_id: new_request_id(),
            member_id: DIIA.to_owned(),
            client_certificate_sha256: Some(String::new()),
            ..Default::default()
        })
        .await
        .expect("unbound");
    token_only.verify_idp_certificate(verify).await.expect("token only now");
}

/// Binds the Diia portal to `certificate`, as its administrator does.
async fn bind_certificate(admin: &mut Admin, certificate: &Issued) {
    admin
        .update_member(pb::UpdateMemberRequest {
            request_id: new_request_id(),
            member_id: DIIA.to_owned(),
            client_certificate_sha256: Some(certificate.sha256.clone()),
            ..Default::default()
        })
        .await
        .expect("bound to its certificate");
}

async fn subscriptions(gateway: &TestGateway, tls: ClientTlsConfig, token: &str) -> Subscriptions {
    SubscriptionServiceClient::new(over_tls(gateway, tls, token).await)
}

#[tokio::test]
async fn an_open_stream_ends_once_its_member_is_bound_to_a_certificate_its_connection_did_not_present() {
    let members = Authority::new("member systems CA");
    let gateway = gateway_with_tls(&members).await;
    let diia_certificate = members.issue("Дія", false);
    register_diia_entitled_to_registrations(&gateway).await;
    let mut admin = gateway.admin().await;
    let token = gateway.system_token("diia").await;

    // Bound to no certificate yet, the member opens two streams: one over a
    // connection with its certificate, one without.
    let mut with_certificate =
        stream_of_registrations(&mut subscriptions(&gateway, presenting(&gateway, &diia_certificate), &token).await)
            .await;
    let mut token_only =
        stream_of_registrations(&mut subscriptions(&gateway, gateway.client_tls(), &token).await).await;

    bind_certificate(&mut admin, &diia_certificate).await;

    // The stream without it ends, as a new call without it is refused; the
    // other goes on and carries what occurs next.
    let ended = tokio::time::timeout(Duration::from_secs(15), token_only.message())
        .await
        .expect("the stream without the certificate ends")
        .expect_err("refused");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("client certificate"), "{}", ended.message());
    let mut registry = gateway.providers_directly(Some(gateway.service_token("registry-writer").await)).await;
    registry.register_provider(provider("Орган 1", 3_285_590)).await.expect("provider");
    let event = tokio::time::timeout(Duration::from_secs(15), with_certificate.message())
        .await
        .expect("an event on the stream with the certificate")
        .expect("still open")
        .expect("an event");
    assert_eq!(event.event_type, REGISTERED);
}

async fn bank(gateway: &TestGateway, tls: ClientTlsConfig, token: &str) -> Bank {
    esocial_proto::external::bank::v1::bank_service_client::BankServiceClient::new(over_tls(gateway, tls, token).await)
}

#[tokio::test]
async fn a_forwarded_stream_ends_once_its_member_is_bound_to_a_certificate_its_connection_did_not_present() {
    let members = Authority::new("member systems CA");
    let gateway = gateway_with_tls(&members).await;
    let diia_certificate = members.issue("Дія", false);
    gateway.register_member(DIIA, "diia", None, &[BANK_SERVICE]).await;
    let token = gateway.system_token("diia").await;
    let adult = esocial_external::sandbox_adults().iter().find(|adult| adult.account_open).expect("an open account");

    // Bound to no certificate yet, the member opens two two-way streams to
    // the bank: one over a connection with its certificate, one without.
    let mut with_certificate = bank(&gateway, presenting(&gateway, &diia_certificate), &token).await;
    let (requests, mut answers) = open_account_stream(&mut with_certificate, adult).await;
    let mut token_only = bank(&gateway, gateway.client_tls(), &token).await;
    let (_token_only_requests, mut token_only_answers) = open_account_stream(&mut token_only, adult).await;

    bind_certificate(&mut gateway.admin().await, &diia_certificate).await;

    // The stream without it ends, as a new call without it is refused; the
    // other goes on.
    let refused = ended(&mut token_only_answers).await;
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("client certificate"), "{}", refused.message());
    answered(&requests, &mut answers, adult).await;
    let logged = logged_codes(&gateway, VERIFY_ACCOUNTS, 1).await;
    assert_eq!(logged, [Code::Unauthenticated as i32], "the ended stream's entry says why; the other is open");
}
