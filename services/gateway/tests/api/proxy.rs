use std::time::{Duration, Instant};

use esocial_auth::Role;
use esocial_proto::gateway::v1 as pb;
use esocial_proto::registry::v1 as registry_pb;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::harness::*;

const REGISTER_PROVIDER: &str = "/esocial.registry.v1.ProviderService/RegisterProvider";
const VERIFY_CERTIFICATE: &str = "/esocial.registry.v1.IdpService/VerifyIdpCertificate";

#[tokio::test]
async fn a_member_without_the_right_is_denied_and_the_service_is_not_called() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[REGISTER_PROVIDER]).await;
    gateway.register_member(BANK, "bank", None, &[VERIFY_CERTIFICATE]).await;

    let mut diia = gateway.providers(Some(gateway.system_token("diia", &[Role::Service]))).await;
    let registered = diia.register_provider(provider("УСЗН Звенигородської РДА", 3_285_596)).await.expect("forwarded");
    let registered = registered.into_inner().provider.expect("provider");
    assert_eq!(registered.data.expect("data").name, "УСЗН Звенигородської РДА");
    assert_eq!(gateway.count("registry.providers").await, 1);

    // The bank's token carries the same role; only the gateway's right differs.
    let mut bank = gateway.providers(Some(gateway.system_token("bank", &[Role::Service]))).await;
    let denied = bank.register_provider(provider("Інший орган", 1_436_050)).await.expect_err("no right");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains(REGISTER_PROVIDER), "names the method: {}", denied.message());
    assert!(denied.message().contains(BANK), "names the member: {}", denied.message());
    assert_eq!(gateway.count("registry.providers").await, 1, "the registry was not called");

    // The same call straight to the registry would have worked: the gateway decided.
    let mut direct = gateway.providers_directly(Some(gateway.system_token("bank", &[Role::Service]))).await;
    direct.register_provider(provider("Інший орган", 1_436_050)).await.expect("the registry allows the role");
    assert_eq!(gateway.count("registry.providers").await, 2);
}

#[tokio::test]
async fn callers_that_are_not_active_members_are_unauthenticated() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[VERIFY_CERTIFICATE]).await;
    let verify = registry_pb::VerifyIdpCertificateRequest { code: "1234567890123452".to_owned() };

    let mut unknown_client = gateway.idp(Some(gateway.system_token("stranger", &[Role::Service]))).await;
    let status = unknown_client.verify_idp_certificate(verify.clone()).await.expect_err("not a member");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("client:stranger"), "{}", status.message());

    let mut no_token = gateway.idp(None).await;
    assert_eq!(
        no_token.verify_idp_certificate(verify.clone()).await.expect_err("no token").code(),
        Code::Unauthenticated
    );

    let mut forged = gateway.idp(Some("eyJhbGciOiJub25lIn0.eyJzdWIiOiJjbGllbnQ6ZGlpYSJ9.".to_owned())).await;
    assert_eq!(
        forged.verify_idp_certificate(verify.clone()).await.expect_err("alg none").code(),
        Code::Unauthenticated
    );

    // A person is not a member system, whatever their roles.
    let mut person = gateway.idp(Some(gateway.person_token(&[Role::SecurityAdmin]))).await;
    assert_eq!(person.verify_idp_certificate(verify.clone()).await.expect_err("person").code(), Code::Unauthenticated);

    let mut diia = gateway.idp(Some(gateway.system_token("diia", &[Role::Service]))).await;
    let answer = diia.verify_idp_certificate(verify.clone()).await.expect("member with the right").into_inner();
    assert!(!answer.valid, "an unknown code is not valid");

    let mut admin = gateway.admin().await;
    admin
        .update_member(pb::UpdateMemberRequest {
            request_id: new_request_id(),
            member_id: DIIA.to_owned(),
            status: pb::MemberStatus::Suspended.into(),
            reason: "contract ended".to_owned(),
            ..Default::default()
        })
        .await
        .expect("suspended");
    let suspended = diia.verify_idp_certificate(verify).await.expect_err("suspended member");
    assert_eq!(suspended.code(), Code::Unauthenticated);
    assert!(suspended.message().contains("suspended"), "{}", suspended.message());
}

#[tokio::test]
async fn a_member_over_its_rate_gets_resource_exhausted_with_retry_information() {
    let gateway = TestGateway::spawn().await;
    let limits = pb::Limits { requests_per_second: 1, burst: 3, message_bytes_max: 0 };
    gateway.register_member(DIIA, "diia", Some(limits), &[VERIFY_CERTIFICATE]).await;
    let mut diia = gateway.idp(Some(gateway.system_token("diia", &[Role::Service]))).await;
    let verify = registry_pb::VerifyIdpCertificateRequest { code: "1234567890123452".to_owned() };
    for call in 0..3 {
        diia.verify_idp_certificate(verify.clone()).await.unwrap_or_else(|status| panic!("call {call}: {status:?}"));
    }
    let refused = diia.verify_idp_certificate(verify.clone()).await.expect_err("over the burst");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let retry = refused.get_details_retry_info().expect("retry info").retry_delay.expect("delay");
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(1), "{retry:?}");
    tokio::time::sleep(retry).await;
    diia.verify_idp_certificate(verify).await.expect("a token refilled");
}

#[tokio::test]
async fn a_client_stream_passes_through_and_an_oversized_request_is_cut_off() {
    let gateway = TestGateway::spawn().await;
    let limits = pb::Limits { requests_per_second: 0, burst: 0, message_bytes_max: 4096 };
    gateway
        .register_member(DIIA, "diia", Some(limits), &["/esocial.registry.v1.RegistryService/*", REGISTER_PROVIDER])
        .await;
    let mut persons = gateway.persons(Some(gateway.system_token("diia", &[Role::Service]))).await;
    let csv = format!(
        "last_name,first_name,patronymic,birth_date,sex,rnokpp,citizenship,registered_territory\n\
         Петренко,Олена,Іванівна,1990-05-17,female,3300912347,UA,{BUZHANKA}\n\
         Сидоренко,Іван,,1991-13-40,male,1234567890,UA,{BUZHANKA}\n"
    );
    // Chunks of 40 bytes: a real client stream of several messages.
    let chunks: Vec<registry_pb::ImportPersonsChunk> = csv
        .as_bytes()
        .chunks(40)
        .enumerate()
        .map(|(index, data)| registry_pb::ImportPersonsChunk {
            request_id: if index == 0 { new_request_id() } else { String::new() },
            format: registry_pb::ImportFormat::Csv.into(),
            source_document: String::new(),
            data: data.to_vec(),
        })
        .collect();
    assert!(chunks.len() > 3);
    let report =
        persons.import_persons(futures_util::stream::iter(chunks)).await.expect("the stream passes").into_inner();
    assert_eq!((report.rows, report.accepted, report.rejected), (2, 1, 1), "{report:?}");
    assert_eq!(gateway.count("registry.persons").await, 1);

    // 4096 bytes at most: a name of 3000 Cyrillic letters (6000 bytes) is cut off.
    let mut providers = gateway.providers(Some(gateway.system_token("diia", &[Role::Service]))).await;
    let long_name = "Ж".repeat(3000);
    let refused = providers.register_provider(provider(&long_name, 3_285_596)).await.expect_err("too large");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(gateway.count("registry.providers").await, 0);
}

#[tokio::test]
async fn an_upstream_that_is_down_gives_unavailable_at_once() {
    let gateway = TestGateway::spawn().await;
    // The harness routes identity's package (as if an outbound system) to a closed port.
    gateway.register_member(DIIA, "diia", None, &["/esocial.identity.v1.IdentityService/GetJwks"]).await;
    let mut identity = esocial_proto::identity::v1::identity_service_client::IdentityServiceClient::with_interceptor(
        gateway.channel().await,
        BearerToken(Some(gateway.system_token("diia", &[Role::Service]))),
    );
    let started = Instant::now();
    let status = identity.get_jwks(esocial_proto::identity::v1::GetJwksRequest {}).await.expect_err("down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(status.message().contains("esocial.identity.v1"), "{}", status.message());
}

#[tokio::test]
async fn a_method_no_service_serves_is_unimplemented_and_the_gateway_answers_health() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &["/esocial.registry.v1.IdpService/*"]).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(gateway.channel().await);
    let started = Instant::now();
    loop {
        let status = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
        if status.is_ok_and(|response| response.into_inner().status == 1) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the gateway never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Classifier methods exist, but the member has no right to them.
    let mut classifier =
        esocial_proto::classifier::v1::classifier_service_client::ClassifierServiceClient::with_interceptor(
            gateway.channel().await,
            BearerToken(Some(gateway.system_token("diia", &[Role::Service]))),
        );
    let denied = classifier
        .get_support_type(esocial_proto::classifier::v1::GetSupportTypeRequest {
            code: "BIRTH_ASSISTANCE".to_owned(),
            as_of: None,
        })
        .await
        .expect_err("no right");
    assert_eq!(denied.code(), Code::PermissionDenied);
}
