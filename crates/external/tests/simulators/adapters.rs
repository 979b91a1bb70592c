//! What the adapters do around the calls: the bearer token and deadline on
//! every request, health, and refusing answers that do not hold together.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use esocial_external::demographic::{DemographicRegister, PersonKey};
use esocial_external::{Error, GatewayClients, PACKAGES, TokenError, TokenSource, sandbox_adults};
use esocial_identifiers::Unzr;
use esocial_proto::common::v1 as common;
use esocial_proto::external::demographic::v1 as pb;
use esocial_proto::external::demographic::v1::demographic_register_service_server::{
    DemographicRegisterService, DemographicRegisterServiceServer,
};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::Sandbox;

#[tokio::test]
async fn every_external_service_reports_serving_through_grpc_health() {
    let sandbox = Sandbox::start().await;
    let mut health = HealthClient::new(sandbox.channel.clone());
    let mut services: Vec<String> = PACKAGES
        .iter()
        .flat_map(|package| esocial_proto::method_paths(package))
        .filter_map(|path| path.trim_start_matches('/').split_once('/').map(|(service, _)| service.to_owned()))
        .collect();
    services.dedup();
    assert_eq!(services.len(), 6, "{services:?}");
    services.push(String::new());
    for service in services {
        let status = health
            .check(HealthCheckRequest { service: service.clone() })
            .await
            .unwrap_or_else(|error| panic!("health of {service:?}: {error}"))
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    sandbox.stop().await;
}

/// What a fake demographic register saw and answered.
#[derive(Debug, Default)]
struct Seen {
    authorizations: Vec<String>,
    timeouts: Vec<String>,
}

/// A demographic register whose answers are broken in the ways a real one
/// could be.
#[derive(Debug, Clone, Default)]
struct BrokenDemographicRegister {
    seen: Arc<Mutex<Seen>>,
}

impl BrokenDemographicRegister {
    fn note<T>(&self, request: &Request<T>) {
        let header = |name: &str| {
            request.metadata().get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned()
        };
        let mut seen = self.seen.lock().expect("lock");
        seen.authorizations.push(header("authorization"));
        seen.timeouts.push(header("grpc-timeout"));
    }
}

fn record(unzr: &str, rnokpp: &str) -> pb::PersonRecord {
    pb::PersonRecord {
        unzr: unzr.to_owned(),
        rnokpp: rnokpp.to_owned(),
        last_name: "Мельник".to_owned(),
        first_name: "Ірина".to_owned(),
        patronymic: "Василівна".to_owned(),
        birth_date: Some(common::Date { year: 1990, month: 5, day: 17 }),
        sex: pb::Sex::Female.into(),
        ukrainian_citizen: true,
        ..pb::PersonRecord::default()
    }
}

#[tonic::async_trait]
impl DemographicRegisterService for BrokenDemographicRegister {
    async fn check_person_registration(
        &self,
        request: Request<pb::CheckPersonRegistrationRequest>,
    ) -> Result<Response<pb::CheckPersonRegistrationResponse>, Status> {
        self.note(&request);
        // An RNOKPP with a wrong check digit.
        Ok(Response::new(pb::CheckPersonRegistrationResponse {
            registered: true,
            record: Some(record("19900517-00017", "3300912340")),
        }))
    }

    async fn assign_newborn_unzr(
        &self,
        request: Request<pb::AssignNewbornUnzrRequest>,
    ) -> Result<Response<pb::AssignNewbornUnzrResponse>, Status> {
        self.note(&request);
        // A valid UNZR of another birth date than the record's.
        let mut newborn = record("20260110-00013", "");
        newborn.birth_act_record_number = request.into_inner().birth_act_record_number;
        Ok(Response::new(pb::AssignNewbornUnzrResponse { record: Some(newborn), newly_assigned: true }))
    }

    async fn get_person_record(
        &self,
        request: Request<pb::GetPersonRecordRequest>,
    ) -> Result<Response<pb::GetPersonRecordResponse>, Status> {
        self.note(&request);
        // A UNZR with a wrong check digit.
        Ok(Response::new(pb::GetPersonRecordResponse { record: Some(record("19900517-00018", "3300912347")) }))
    }
}

async fn start_broken_register() -> (BrokenDemographicRegister, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let register = BrokenDemographicRegister::default();
    let service = DemographicRegisterServiceServer::new(register.clone());
    tokio::spawn(Server::builder().add_service(service).serve_with_incoming(TcpIncoming::from(listener)));
    (register, address)
}

fn clients_at(address: SocketAddr, tokens: impl TokenSource + 'static) -> GatewayClients {
    let channel = Endpoint::from_shared(format!("http://{address}")).expect("endpoint").connect_lazy();
    GatewayClients::new(channel, tokens)
}

fn problem_fields(error: &Error) -> Vec<String> {
    match error {
        Error::InvalidResponse { problems, .. } => problems.iter().map(|problem| problem.field.clone()).collect(),
        other => panic!("expected an invalid response, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_identifiers_in_answers_are_invalid_responses_not_panics() {
    let (register, address) = start_broken_register().await;
    let clients = clients_at(address, esocial_external::FixedToken::new("token-42"));
    let adult = &sandbox_adults()[0];

    let error = clients.demographic.find_person(PersonKey::Rnokpp(adult.rnokpp)).await.expect_err("broken");
    assert_eq!(problem_fields(&error), ["record.rnokpp"]);
    assert!(!error.is_retryable());

    let unzr: Unzr = "19900517-00017".parse().expect("unzr");
    let error = clients.demographic.person_record(unzr).await.expect_err("broken");
    assert_eq!(problem_fields(&error), ["record.unzr"]);

    let number = "2026-000001".parse().expect("act record number");
    let error = clients.demographic.assign_newborn_unzr(&number).await.expect_err("broken");
    assert_eq!(problem_fields(&error), ["record.unzr"], "the UNZR does not carry the birth date");

    let seen = register.seen.lock().expect("lock");
    assert_eq!(seen.authorizations, ["Bearer token-42"; 3], "every call carries the bearer token");
    assert!(seen.timeouts.iter().all(|timeout| !timeout.is_empty()), "every call has a deadline: {:?}", seen.timeouts);
}

/// A token source that cannot give a token.
#[derive(Debug)]
struct NoTokens;

impl TokenSource for NoTokens {
    async fn token(&self) -> Result<String, TokenError> {
        Err(TokenError("identity is down".to_owned()))
    }
}

#[tokio::test]
async fn without_a_token_nothing_is_sent_and_the_error_says_why() {
    let (register, address) = start_broken_register().await;
    let unzr: Unzr = "19900517-00017".parse().expect("unzr");

    let error = clients_at(address, NoTokens).demographic.person_record(unzr).await.expect_err("no token");
    assert!(matches!(&error, Error::Token(TokenError(reason)) if reason == "identity is down"), "{error:?}");
    assert!(error.is_retryable());

    let unprintable = esocial_external::FixedToken::new("line\nbreak");
    let error = clients_at(address, unprintable).demographic.person_record(unzr).await.expect_err("bad token");
    assert!(matches!(error, Error::Token(_)), "{error:?}");
    assert!(register.seen.lock().expect("lock").authorizations.is_empty(), "no request left without a token");
}

#[tokio::test]
async fn a_system_that_is_down_is_unavailable_and_worth_retrying() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let clients = clients_at(address, esocial_external::FixedToken::new("token"));
    let error = clients.demographic.person_record("19900517-00017".parse().expect("unzr")).await.expect_err("down");
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(error.is_retryable());
}
