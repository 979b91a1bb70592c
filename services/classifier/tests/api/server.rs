use std::time::Duration;

use esocial_proto::classifier::v1 as pb;
use esocial_testkit::TcpProxy;
use futures_util::StreamExt as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::{Options, TestApp, new_request_id, open_from};

const SERVICE: &str = "esocial.classifier.v1.ClassifierService";

async fn status_of(health: &mut HealthClient<tonic::transport::Channel>) -> i32 {
    health
        .check(HealthCheckRequest { service: SERVICE.to_owned() })
        .await
        .map(|response| response.into_inner().status)
        .unwrap_or_default()
}

async fn wait_for(health: &mut HealthClient<tonic::transport::Channel>, wanted: WireStatus) -> bool {
    for _ in 0..100 {
        if status_of(health).await == wanted as i32 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn health_follows_the_database_connection() {
    // The service reaches PostgreSQL through a proxy the test can cut.
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().expect("address")).await.expect("proxy");
    let app = TestApp::spawn_with(Options { database_via: Some(proxy.address()), ..Options::default() }).await;
    let mut health = HealthClient::new(app.channel().await);
    assert!(wait_for(&mut health, WireStatus::Serving).await, "serving while the database answers");

    proxy.cut();
    assert!(wait_for(&mut health, WireStatus::NotServing).await, "not serving while the database is unreachable");
    let mut reader = app.reader().await;
    let during = reader.get_support_type(pb::GetSupportTypeRequest { code: "ANY_CODE".to_owned(), as_of: None }).await;
    let code = during.expect_err("database unreachable").code();
    assert_eq!(code, tonic::Code::Unavailable, "clients are told to retry");

    proxy.restore();
    assert!(wait_for(&mut health, WireStatus::Serving).await, "serving again once the database is back");
}

#[tokio::test]
async fn reflection_describes_only_what_this_server_serves() {
    use tonic_reflection::pb::{v1, v1alpha};

    let app = TestApp::spawn_with(Options::default()).await;
    let mut current = v1::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut responses = current.server_reflection_info(tokio_stream::iter([request])).await.expect("v1").into_inner();
    let response = responses.next().await.expect("one response").expect("ok");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) = response.message_response
    else {
        panic!("list expected")
    };
    let mut names: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
    names.sort();
    assert_eq!(
        names,
        ["esocial.classifier.v1.ClassifierService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"],
        "no other esocial service is advertised"
    );

    // The older protocol, which many clients still speak, answers too.
    let mut older = v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
            "esocial.classifier.v1.ClassifierService".to_owned(),
        )),
    };
    let mut responses =
        older.server_reflection_info(tokio_stream::iter([request])).await.expect("v1alpha").into_inner();
    let response = responses.next().await.expect("one response").expect("ok");
    assert!(
        matches!(
            response.message_response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
        ),
        "{response:?}"
    );
}

#[tokio::test]
async fn request_ids_are_returned_and_client_ids_kept() {
    let app = TestApp::spawn().await;
    let mut client = app.reader().await;
    let response = client
        .get_support_type(pb::GetSupportTypeRequest { code: "BIRTH_ASSISTANCE".to_owned(), as_of: None })
        .await
        .expect("ok");
    let generated =
        response.metadata().get("x-request-id").and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "a UUID is generated: {generated:?}");

    let mut request =
        tonic::Request::new(pb::GetSupportTypeRequest { code: "BIRTH_ASSISTANCE".to_owned(), as_of: None });
    request.metadata_mut().insert("x-request-id", "caller-chosen-42".parse().expect("ascii"));
    let response = client.get_support_type(request).await.expect("ok");
    assert_eq!(response.metadata().get("x-request-id").and_then(|value| value.to_str().ok()), Some("caller-chosen-42"));
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let app = TestApp::spawn_with(Options {
        extra_env: vec![("ESOCIAL_GRPC_MESSAGE_BYTES_MAX".to_owned(), "16384".to_owned())],
        ..Options::default()
    })
    .await;
    let mut admin = app.admin().await;
    let request = pb::CreateSupportTypeVersionRequest {
        request_id: new_request_id(),
        code: "BIG".to_owned(),
        validity: Some(open_from("2026-01-01")),
        content: None,
        change_reason: "x".repeat(20_000),
        expected_latest_version: 0,
    };
    let status = admin.create_support_type_version(request).await.expect_err("too large");
    assert!(matches!(status.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted), "{status:?}");
}

#[tokio::test]
async fn shutdown_turns_health_to_not_serving_before_the_server_stops() {
    let mut app = TestApp::spawn_with(Options::default()).await;
    let mut health = HealthClient::new(app.channel().await);
    assert!(wait_for(&mut health, WireStatus::Serving).await);
    let mut watch = health.watch(HealthCheckRequest { service: SERVICE.to_owned() }).await.expect("watch").into_inner();
    let first = watch.next().await.expect("status").expect("ok");
    assert_eq!(first.status, WireStatus::Serving as i32);

    let stopping = tokio::spawn(async move { app.stop().await });
    let next =
        tokio::time::timeout(Duration::from_secs(5), watch.next()).await.expect("a status before the stream closes");
    assert_eq!(next.expect("status").expect("ok").status, WireStatus::NotServing as i32);
    let stopped = tokio::time::timeout(Duration::from_secs(10), stopping).await.expect("stops within the grace period");
    assert!(stopped.expect("joined").is_ok());
}
