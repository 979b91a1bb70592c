//! The simulators describe themselves by server reflection, as the
//! gateway's catalog reads its upstreams.

use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::Sandbox;

#[tokio::test]
async fn the_simulators_list_the_six_systems_and_nothing_of_esocial_by_reflection() {
    let sandbox = Sandbox::start().await;
    let mut reflection = ServerReflectionClient::new(sandbox.channel.clone());
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers =
        reflection.server_reflection_info(futures_util::stream::iter([ask])).await.expect("reflection").into_inner();
    let Some(MessageResponse::ListServicesResponse(listed)) =
        answers.message().await.expect("answer").and_then(|answer| answer.message_response)
    else {
        panic!("not a list of services");
    };
    let mut systems: Vec<String> =
        listed.service.into_iter().map(|service| service.name).filter(|name| !name.starts_with("grpc.")).collect();
    systems.sort();
    let packages: Vec<&str> =
        systems.iter().filter_map(|name| name.rsplit_once('.').map(|(package, _)| package)).collect();
    assert_eq!(systems.len(), 6, "{systems:?}");
    let mut expected: Vec<&str> = esocial_external::PACKAGES.to_vec();
    expected.sort_unstable();
    assert_eq!(packages, expected);
    sandbox.stop().await;
}
