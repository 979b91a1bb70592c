//! The gateway learns the methods of the services behind it from their
//! reflection: a method added to a service is granted, listed, and given
//! the deadline of its kind without a change to the gateway.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use esocial_auth::Role;
use esocial_proto::gateway::v1 as pb;
use esocial_proto::registry::v1 as registry_pb;
use http_body::Frame;
use prost::Message as _;
use tonic::Code;
use tonic::server::NamedService;

use crate::harness::*;

const REGISTRY: &str = "esocial.registry.v1.RegistryService";
const GET_PERSON: &str = "/esocial.registry.v1.RegistryService/GetPerson";
/// Added in the first version of the newer registry: streams five answers.
const WATCH_PEOPLE: &str = "/esocial.registry.v1.RegistryService/WatchPeople";
/// Added in its second version: a unary method that takes three seconds…
const SLOW_PING: &str = "/esocial.registry.v1.RegistryService/SlowPing";
/// …and another stream.
const TAIL: &str = "/esocial.registry.v1.RegistryService/Tail";
/// Answers with headers, then nothing.
const STALL: &str = "/esocial.registry.v1.RegistryService/Stall";
/// Declared unary, answers with messages without end, each ready at once.
const FLOOD: &str = "/esocial.registry.v1.RegistryService/Flood";
/// Declared server-streaming, answers a small message and one of
/// [`LARGE_ANSWER_BYTES`] in one HTTP/2 frame.
const SMALL_THEN_LARGE: &str = "/esocial.registry.v1.RegistryService/SmallThenLarge";
const LARGE_ANSWER_BYTES: usize = 2048;
/// What a unary call may take at the gateway in these tests; the streams
/// last longer.
const UNARY_TIMEOUT_MS: u64 = 1500;
const TICKS: usize = 5;
const TICK: Duration = Duration::from_millis(400);

/// The compiled protos, with methods added to the registry's service.
fn descriptors(added: &[(&str, bool)]) -> prost_types::FileDescriptorSet {
    let mut set = esocial_proto::file_descriptor_set();
    let service = set
        .file
        .iter_mut()
        .flat_map(|file| {
            let package = file.package().to_owned();
            file.service.iter_mut().map(move |service| (package.clone(), service))
        })
        .find_map(|(package, service)| (format!("{package}.{}", service.name()) == REGISTRY).then_some(service))
        .expect("the registry's service");
    for (name, server_streaming) in added {
        service.method.push(prost_types::MethodDescriptorProto {
            name: Some((*name).to_owned()),
            input_type: Some(".esocial.registry.v1.GetPersonRequest".to_owned()),
            output_type: Some(".esocial.registry.v1.GetPersonResponse".to_owned()),
            server_streaming: Some(*server_streaming),
            ..Default::default()
        });
    }
    set
}

fn reflection(
    added: &[(&str, bool)],
) -> tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection> {
    tonic_reflection::server::Builder::configure()
        .register_file_descriptor_set(descriptors(added))
        .build_v1()
        .expect("reflection")
}

/// The newer registry at the HTTP/2 level: its reflection as deployed
/// (the first version, or once `upgraded` the second) and its new methods.
/// It is routed by both names; `REFLECTION` tells which this copy has.
#[derive(Clone)]
struct NewerRegistry<R, const REFLECTION: bool> {
    first: R,
    second: R,
    upgraded: Arc<AtomicBool>,
}

impl<R, const REFLECTION: bool> NamedService for NewerRegistry<R, REFLECTION> {
    const NAME: &'static str = if REFLECTION { "grpc.reflection.v1.ServerReflection" } else { REGISTRY };
}

fn answer(n: usize, padding: usize) -> Bytes {
    let message = registry_pb::GetPersonResponse {
        person: Some(registry_pb::Person { id: format!("tick-{n}{}", " ".repeat(padding)), ..Default::default() }),
        redirected_from: String::new(),
    };
    let encoded = message.encode_to_vec();
    let mut framed = vec![0];
    framed.extend_from_slice(&u32::try_from(encoded.len()).expect("length").to_be_bytes());
    framed.extend_from_slice(&encoded);
    Bytes::from(framed)
}

/// `answers` messages, one every `every` (at once for zero), then status
/// OK; or nothing ever (`answers` of `None`); or messages `together` in
/// one frame.
struct Answers {
    answers: Option<usize>,
    sent: usize,
    every: Duration,
    next: Pin<Box<tokio::time::Sleep>>,
    together: Option<Bytes>,
}

impl Answers {
    fn new(answers: Option<usize>, every: Duration) -> Self {
        Self { answers, sent: 0, every, next: Box::pin(tokio::time::sleep(every)), together: None }
    }

    fn together(messages: &[Bytes]) -> Self {
        Self { together: Some(messages.concat().into()), ..Self::new(Some(1), Duration::ZERO) }
    }
}

impl http_body::Body for Answers {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(answers) = self.answers else { return Poll::Pending };
        if self.sent > answers {
            return Poll::Ready(None);
        }
        if !self.every.is_zero() && self.next.as_mut().poll(context).is_pending() {
            return Poll::Pending;
        }
        self.sent += 1;
        let every = self.every;
        self.next.as_mut().reset(tokio::time::Instant::now() + every);
        if self.sent > answers {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        if let Some(together) = self.together.take() {
            return Poll::Ready(Some(Ok(Frame::data(together))));
        }
        // Answers at once come large: HTTP/2 refuses floods of small frames.
        let padding = if self.every.is_zero() { 16 * 1024 } else { 0 };
        Poll::Ready(Some(Ok(Frame::data(answer(self.sent, padding)))))
    }
}

impl<R, const REFLECTION: bool> tower_service::Service<http::Request<tonic::body::Body>>
    for NewerRegistry<R, REFLECTION>
where
    R: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    R::Future: Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if REFLECTION {
            let mut reflection =
                if self.upgraded.load(Ordering::SeqCst) { self.second.clone() } else { self.first.clone() };
            return Box::pin(async move { tower_service::Service::call(&mut reflection, request).await });
        }
        let path = request.uri().path().to_owned();
        Box::pin(async move {
            let body = match path.as_str() {
                WATCH_PEOPLE | TAIL => Answers::new(Some(TICKS), TICK),
                SLOW_PING => Answers::new(Some(1), Duration::from_secs(3)),
                STALL => Answers::new(None, TICK),
                FLOOD => Answers::new(Some(usize::MAX - 1), Duration::ZERO),
                SMALL_THEN_LARGE => Answers::together(&[answer(1, 0), answer(2, LARGE_ANSWER_BYTES)]),
                _ => return Ok(tonic::Status::unimplemented(path).into_http()),
            };
            Ok(http::Response::builder()
                .header("content-type", "application/grpc")
                .body(tonic::body::Body::new(body))
                .expect("response"))
        })
    }
}

/// A gateway whose registry route leads to the newer registry; the
/// returned flag deploys its second version.
async fn gateway_before_a_newer_registry() -> (TestGateway, Arc<AtomicBool>) {
    let upgraded = Arc::new(AtomicBool::new(false));
    let registry = NewerRegistry::<_, true> {
        first: reflection(&[("WatchPeople", true), ("Stall", false), ("Flood", false), ("SmallThenLarge", true)]),
        second: reflection(&[
            ("WatchPeople", true),
            ("Stall", false),
            ("Flood", false),
            ("SmallThenLarge", true),
            ("SlowPing", false),
            ("Tail", true),
        ]),
        upgraded: upgraded.clone(),
    };
    let methods = NewerRegistry::<_, false> {
        first: registry.first.clone(),
        second: registry.second.clone(),
        upgraded: upgraded.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let address = listener.local_addr().expect("address");
    let routes = tonic::service::Routes::new(registry).add_service(methods);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let gateway = TestGateway::spawn_with(&[
        ("ESOCIAL_GATEWAY_ROUTES", &format!("esocial.registry.v1=http://{address}")),
        ("ESOCIAL_GRPC_TIMEOUT_MS", &UNARY_TIMEOUT_MS.to_string()),
    ])
    .await;
    (gateway, upgraded)
}

type Codec = tonic_prost::ProstCodec<registry_pb::GetPersonRequest, registry_pb::GetPersonResponse>;

async fn client(gateway: &TestGateway, client_id: &str) -> tonic::client::Grpc<Intercepted> {
    let token = gateway.system_token(client_id).await;
    let mut grpc = tonic::client::Grpc::new(tonic::service::interceptor::InterceptedService::new(
        gateway.channel().await,
        BearerToken(Some(token)),
    ));
    grpc.ready().await.expect("ready");
    grpc
}

fn path(method: &'static str) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::from_static(method)
}

fn request() -> tonic::Request<registry_pb::GetPersonRequest> {
    tonic::Request::new(registry_pb::GetPersonRequest::default())
}

/// Streams `method` to its end: the answers' ids, and how long it took.
async fn stream_all(grpc: &mut tonic::client::Grpc<Intercepted>, method: &'static str) -> (Vec<String>, Duration) {
    let started = Instant::now();
    grpc.ready().await.expect("ready");
    let mut stream =
        grpc.server_streaming(request(), path(method), Codec::default()).await.expect("stream").into_inner();
    let mut ids = Vec::new();
    while let Some(answer) =
        stream.message().await.unwrap_or_else(|status| panic!("{method} after {ids:?}: {status:?}"))
    {
        ids.push(answer.person.map(|person| person.id).unwrap_or_default());
    }
    (ids, started.elapsed())
}

fn ticks() -> Vec<String> {
    (1..=TICKS).map(|n| format!("tick-{n}")).collect()
}

/// The methods of the registry's service the gateway's reflection
/// describes to the bearer of `token`, as grpcurl reads them (none when it
/// does not describe the service).
async fn described_by_the_gateway(gateway: &TestGateway, token: Option<String>) -> Result<Vec<String>, tonic::Status> {
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let files =
        match ask_the_gateways_reflection(gateway, token, MessageRequest::FileContainingSymbol(REGISTRY.to_owned()))
            .await
        {
            Ok(MessageResponse::FileDescriptorResponse(files)) => files,
            Err(status) if status.code() == Code::NotFound => return Ok(Vec::new()),
            Err(status) => return Err(status),
            Ok(other) => panic!("not an answer about {REGISTRY}: {other:?}"),
        };
    Ok(files
        .file_descriptor_proto
        .iter()
        .map(|encoded| prost_types::FileDescriptorProto::decode(encoded.as_slice()).expect("file"))
        .flat_map(|file| {
            let package = file.package().to_owned();
            file.service.into_iter().map(move |service| (format!("{package}.{}", service.name()), service))
        })
        .find_map(|(name, service)| (name == REGISTRY).then_some(service))
        .map(|service| service.method.iter().map(|method| method.name().to_owned()).collect())
        .unwrap_or_default())
}

/// The file that declares the registry's service and every file it
/// imports (directly or not), as a client such as grpcurl reads them from
/// the gateway's reflection with `token`.
async fn files_a_client_reads(gateway: &TestGateway, token: Option<String>) -> Vec<prost_types::FileDescriptorProto> {
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let mut files: Vec<prost_types::FileDescriptorProto> = Vec::new();
    let mut asks = vec![MessageRequest::FileContainingSymbol(REGISTRY.to_owned())];
    while let Some(ask) = asks.pop() {
        let Ok(MessageResponse::FileDescriptorResponse(answer)) =
            ask_the_gateways_reflection(gateway, token.clone(), ask.clone()).await
        else {
            panic!("no file for {ask:?}");
        };
        for encoded in &answer.file_descriptor_proto {
            let file = prost_types::FileDescriptorProto::decode(encoded.as_slice()).expect("file");
            for import in &file.dependency {
                let asked =
                    asks.iter().any(|ask| matches!(ask, MessageRequest::FileByFilename(name) if name == import));
                if !asked && !files.iter().any(|known| known.name() == import) {
                    asks.push(MessageRequest::FileByFilename(import.clone()));
                }
            }
            files.push(file);
        }
    }
    files
}

type Names = std::collections::BTreeSet<String>;

/// The full names (`.package.Message`) of the types `files` declare, and
/// of those their methods and fields name.
fn declared_and_named(files: &[prost_types::FileDescriptorProto]) -> (Names, Names) {
    fn declare(within: &str, message: &prost_types::DescriptorProto, declared: &mut Names, named: &mut Names) {
        let full = format!("{within}.{}", message.name());
        named.extend(
            message
                .field
                .iter()
                .filter(|field| !field.type_name().is_empty())
                .map(|field| field.type_name().to_owned()),
        );
        declared.extend(message.enum_type.iter().map(|declared| format!("{full}.{}", declared.name())));
        for nested in &message.nested_type {
            declare(&full, nested, declared, named);
        }
        declared.insert(full);
    }
    let (mut declared, mut named) = (Names::new(), Names::new());
    for file in files {
        let package = format!(".{}", file.package());
        for message in &file.message_type {
            declare(&package, message, &mut declared, &mut named);
        }
        declared.extend(file.enum_type.iter().map(|declared| format!("{package}.{}", declared.name())));
        for service in &file.service {
            for method in &service.method {
                named.extend([method.input_type().to_owned(), method.output_type().to_owned()]);
            }
        }
    }
    (declared, named)
}

/// The services the gateway's reflection lists to the bearer of `token`.
async fn services_described_by_the_gateway(gateway: &TestGateway, token: Option<String>) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    match ask_the_gateways_reflection(gateway, token, MessageRequest::ListServices(String::new())).await {
        Ok(MessageResponse::ListServicesResponse(listed)) => {
            let mut names: Vec<String> = listed.service.into_iter().map(|service| service.name).collect();
            names.sort();
            names
        }
        other => panic!("no list of services: {other:?}"),
    }
}

async fn ask_the_gateways_reflection(
    gateway: &TestGateway,
    token: Option<String>,
    question: tonic_reflection::pb::v1::server_reflection_request::MessageRequest,
) -> Result<tonic_reflection::pb::v1::server_reflection_response::MessageResponse, tonic::Status> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;

    let mut reflection = ServerReflectionClient::with_interceptor(gateway.channel().await, BearerToken(token));
    let ask =
        tonic_reflection::pb::v1::ServerReflectionRequest { host: String::new(), message_request: Some(question) };
    let mut answers = reflection.server_reflection_info(tokio_stream::iter([ask])).await?.into_inner();
    Ok(answers.message().await?.and_then(|answer| answer.message_response).expect("an answer"))
}

async fn logged_status(gateway: &TestGateway, method: &str) -> i32 {
    eventually(Duration::from_secs(10), || async {
        let code: Option<i32> = sqlx::query_scalar("SELECT status_code FROM gateway.message_log WHERE method = $1")
            .bind(method)
            .fetch_optional(&gateway.pool)
            .await
            .expect("log");
        code.ok_or_else(|| format!("no entry for {method}"))
    })
    .await
}

#[tokio::test]
async fn a_method_added_to_a_service_is_learned_from_its_reflection_without_a_gateway_change() {
    let (gateway, upgraded) = gateway_before_a_newer_registry().await;

    // A right to the new method: the gateway was built without it.
    gateway.register_member(DIIA, "diia", None, &[WATCH_PEOPLE]).await;
    let refused = gateway
        .admin()
        .await
        .grant_access(pb::GrantAccessRequest {
            request_id: new_request_id(),
            member_id: DIIA.to_owned(),
            method: "/esocial.registry.v1.RegistryService/NoSuchMethod".to_owned(),
        })
        .await
        .expect_err("a method nobody serves");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["method"]);

    // Listed by the metaservice as a stream.
    let listed = gateway
        .meta(Some(gateway.system_token("diia").await))
        .await
        .list_allowed_methods(pb::ListAllowedMethodsRequest { service: REGISTRY.to_owned() })
        .await
        .expect("listed")
        .into_inner()
        .methods;
    let watch = listed.iter().find(|method| method.method == WATCH_PEOPLE).expect("the new method is listed");
    assert!(watch.server_streaming && !watch.client_streaming, "{watch:?}");
    // And described by the gateway's reflection, as grpcurl reads it.
    let diia_token = gateway.system_token("diia").await;
    let described = described_by_the_gateway(&gateway, Some(diia_token)).await.expect("described");
    // Only the method the member may call.
    assert_eq!(described, ["WatchPeople"]);

    // Streamed for longer than a unary call may take.
    let mut diia = client(&gateway, "diia").await;
    let (ids, took) = stream_all(&mut diia, WATCH_PEOPLE).await;
    assert_eq!(ids, ticks());
    assert!(took > Duration::from_millis(UNARY_TIMEOUT_MS), "{took:?}");
    assert_eq!(logged_status(&gateway, WATCH_PEOPLE).await, Code::Ok as i32);

    // The service is deployed again with two more methods; a member with a
    // right to the whole service calls them before anyone told the gateway.
    upgraded.store(true, Ordering::SeqCst);
    gateway.register_member(BANK, "bank", None, &[&format!("/{REGISTRY}/*")]).await;
    tokio::time::sleep(esocial_gateway::catalog::MISS_COOLDOWN).await;
    let mut bank = client(&gateway, "bank").await;
    let started = Instant::now();
    bank.ready().await.expect("ready");
    let slow = bank.unary(request(), path(SLOW_PING), Codec::default()).await.expect_err("too slow for a unary call");
    assert_eq!(slow.code(), Code::DeadlineExceeded, "{slow:?}");
    assert!(started.elapsed() < Duration::from_millis(2800), "held to the unary deadline: {:?}", started.elapsed());
    // That call made the gateway read the service again: nothing else
    // does for the next minute, and its reflection describes both methods
    // now (to the member that may call them).
    let described =
        described_by_the_gateway(&gateway, Some(gateway.system_token("bank").await)).await.expect("described");
    assert!(["Tail", "SlowPing"].iter().all(|new| described.iter().any(|method| method == new)), "{described:?}");
    let (ids, took) = stream_all(&mut bank, TAIL).await;
    assert_eq!(ids, ticks());
    assert!(took > Duration::from_millis(UNARY_TIMEOUT_MS), "{took:?}");
    assert_eq!(logged_status(&gateway, SLOW_PING).await, Code::DeadlineExceeded as i32);
    assert_eq!(logged_status(&gateway, TAIL).await, Code::Ok as i32);
}

#[tokio::test]
async fn the_gateway_describes_to_a_member_only_what_it_may_call_to_its_administrators_everything_and_health_to_anyone()
{
    let gateway = TestGateway::spawn().await;
    // A member with one right, within its rate.
    let one_a_second = pb::Limits { requests_per_second: 1, burst: 1, message_bytes_max: 0 };
    gateway.register_member(DIIA, "diia", Some(one_a_second), &[GET_PERSON]).await;
    let diia_token = gateway.system_token("diia").await;
    let to_member = described_by_the_gateway(&gateway, Some(diia_token.clone())).await.expect("to a member");
    assert_eq!(to_member, ["GetPerson"]);
    let over = described_by_the_gateway(&gateway, Some(diia_token)).await.expect_err("over the member's rate");
    assert_eq!(over.code(), Code::ResourceExhausted, "{over:?}");

    // A member with no right yet: the gateway's methods for members, and
    // nothing of the registry's.
    gateway.register_member(BANK, "bank", None, &[]).await;
    let bank_token = gateway.system_token("bank").await;
    let to_bank = described_by_the_gateway(&gateway, Some(bank_token.clone())).await.expect("to a member");
    assert!(to_bank.is_empty(), "{to_bank:?}");
    let for_members = [
        "esocial.gateway.v1.MetaService",
        "esocial.gateway.v1.SubscriptionService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ];
    assert_eq!(services_described_by_the_gateway(&gateway, Some(bank_token.clone())).await, for_members);

    // Given `GetPerson`, it is described the files a client such as grpcurl
    // reads for it: they declare every type they name, and not the messages
    // only the methods it may not call use.
    grant(&mut gateway.admin().await, BANK, GET_PERSON).await;
    eventually(Duration::from_secs(10), || async {
        let described = described_by_the_gateway(&gateway, Some(bank_token.clone())).await.expect("described");
        if described == ["GetPerson"] { Ok(()) } else { Err(format!("described {described:?}")) }
    })
    .await;
    let files = files_a_client_reads(&gateway, Some(bank_token.clone())).await;
    let (declared, named) = declared_and_named(&files);
    let undeclared: Vec<&String> = named.difference(&declared).collect();
    assert!(undeclared.is_empty(), "named, not declared: {undeclared:?}");
    for message in ["GetPersonRequest", "GetPersonResponse", "Person"] {
        assert!(declared.contains(&format!(".esocial.registry.v1.{message}")), "{message}: {declared:?}");
    }
    for message in ["MergePersonsRequest", "RegisterPersonRequest"] {
        assert!(!declared.contains(&format!(".esocial.registry.v1.{message}")), "{message}: {declared:?}");
    }

    // The people who administer or audit the gateway: everything.
    let registry_methods: Vec<String> = esocial_proto::method_paths("esocial.registry.v1")
        .iter()
        .filter_map(|path| path.strip_prefix(&format!("/{REGISTRY}/")).map(str::to_owned))
        .collect();
    assert!(registry_methods.len() > 1, "{registry_methods:?}");
    for role in [Role::SecurityAdmin, Role::RegistryAuditor] {
        let token = gateway.person_token(&[role]).await;
        let mut to_person = described_by_the_gateway(&gateway, Some(token.clone())).await.expect("to a person");
        to_person.sort();
        let mut expected = registry_methods.clone();
        expected.sort();
        assert_eq!(to_person, expected, "{role:?}");
        let services = services_described_by_the_gateway(&gateway, Some(token)).await;
        for service in ["esocial.gateway.v1.GatewayAdminService", "esocial.gateway.v1.MessageLogService", REGISTRY] {
            assert!(services.iter().any(|listed| listed == service), "{role:?}: {services:?}");
        }
    }
    // Another person: refused.
    let specialist = gateway.person_token(&[Role::SocialSpecialist]).await;
    let refused = described_by_the_gateway(&gateway, Some(specialist)).await.expect_err("a person with no part in it");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // Nobody else.
    let not_a_member = gateway.system_token("not-a-member").await;
    gateway.suspend(BANK).await;
    for (token, who) in [
        (None, "no token"),
        (Some("not.a.token".to_owned()), "a token that does not verify"),
        (Some(not_a_member), "a system that is not a member"),
        (Some(bank_token), "a suspended member"),
    ] {
        let refused = described_by_the_gateway(&gateway, token).await.expect_err(who);
        assert_eq!(refused.code(), Code::Unauthenticated, "{who}: {refused:?}");
    }

    // Health answers without a token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(gateway.channel().await);
    assert_eq!(serving(&mut health).await, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}

#[tokio::test]
async fn a_service_that_sends_headers_and_then_stalls_is_cut_off_at_the_deadline() {
    let (gateway, _upgraded) = gateway_before_a_newer_registry().await;
    gateway.register_member(DIIA, "diia", None, &[STALL]).await;
    let mut diia = client(&gateway, "diia").await;
    // The client keeps no deadline of its own.
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(10), diia.unary(request(), path(STALL), Codec::default()))
        .await
        .expect("the gateway ends the call, not the client's patience");
    let status = outcome.expect_err("no answer came");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(UNARY_TIMEOUT_MS - 100) && took < Duration::from_secs(5), "{took:?}");
    assert_eq!(logged_status(&gateway, STALL).await, Code::DeadlineExceeded as i32);
}

#[tokio::test]
async fn a_stream_that_always_has_data_ready_is_cut_off_at_the_deadline() {
    let (gateway, _upgraded) = gateway_before_a_newer_registry().await;
    gateway.register_member(DIIA, "diia", None, &[FLOOD]).await;
    let mut diia = client(&gateway, "diia").await;
    // A unary method whose service answers without end, read slowly: the
    // gateway takes the service's next frame only as the client takes
    // data, and finds it ready every time, so only a check at every frame
    // can end the call.
    let started = Instant::now();
    let read_all = async {
        let mut stream = diia
            .server_streaming(request(), path(FLOOD), Codec::default())
            .await
            .map_err(|status| (0, status))?
            .into_inner();
        let mut answers = 0_u64;
        loop {
            match stream.message().await {
                Ok(Some(_)) => {
                    answers += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(None) => return Ok(answers),
                Err(status) => return Err((answers, status)),
            }
        }
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .expect("the gateway ends the call, not the client's patience");
    let (answers, status) = outcome.expect_err("the flood does not end by itself");
    assert_eq!(status.code(), Code::DeadlineExceeded, "after {answers} answers: {status:?}");
    assert!(answers > 0, "answers passed before the deadline");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(UNARY_TIMEOUT_MS - 100) && took < Duration::from_secs(5), "{took:?}");
    assert_eq!(logged_status(&gateway, FLOOD).await, Code::DeadlineExceeded as i32);
}

#[tokio::test]
async fn messages_before_one_larger_than_the_members_limit_still_arrive() {
    let (gateway, _upgraded) = gateway_before_a_newer_registry().await;
    let small = pb::Limits { requests_per_second: 0, burst: 0, message_bytes_max: 1024 };
    gateway.register_member(DIIA, "diia", Some(small), &[SMALL_THEN_LARGE]).await;
    let mut diia = client(&gateway, "diia").await;
    let mut stream =
        diia.server_streaming(request(), path(SMALL_THEN_LARGE), Codec::default()).await.expect("stream").into_inner();
    // Both messages came in one frame; the first is within the limit.
    let first = stream.message().await.expect("the first message").expect("one message");
    assert_eq!(first.person.map(|person| person.id).unwrap_or_default(), "tick-1");
    let refused = stream.message().await.expect_err("the second is larger than the member's limit");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let large = answer(2, LARGE_ANSWER_BYTES).len() - 5;
    assert!(refused.message().contains(&format!("response message of {large} bytes")), "{}", refused.message());
    assert_eq!(logged_status(&gateway, SMALL_THEN_LARGE).await, Code::ResourceExhausted as i32);
}
