//! The server bootstrap with a deliberately slow method: a call in flight
//! when shutdown starts completes; a call longer than the configured timeout
//! is cut off.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use esocial_auth::{Access, AccessPolicy, AuthLayer, StaticJwks, TokenVerifier, VerifierSettings};
use esocial_kit::config::GrpcSettings;
use esocial_kit::server::GrpcServer;
use esocial_kit::shutdown::Shutdown;
use tonic::body::Body;
use tonic::server::NamedService;

const SLEEP_PATH: &str = "/test.Slow/Sleep";

/// `test.Slow/Sleep` answers after a second.
#[derive(Clone)]
struct Slow;

impl NamedService for Slow {
    const NAME: &'static str = "test.Slow";
}

struct Sleep;

impl tonic::server::UnaryService<()> for Sleep {
    type Response = ();
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<()>, tonic::Status>> + Send>>;

    fn call(&mut self, _request: tonic::Request<()>) -> Self::Future {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(tonic::Response::new(()))
        })
    }
}

impl tower_service::Service<http::Request<Body>> for Slow {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<(), ()>::default());
            Ok(grpc.unary(Sleep, request).await)
        })
    }
}

async fn start(
    request_timeout: Duration,
    long_running: &[&'static str],
) -> (std::net::SocketAddr, Shutdown, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let settings = GrpcSettings { request_timeout, message_bytes_max: 1 << 20, shutdown_grace: Duration::from_secs(5) };
    let verifier = Arc::new(TokenVerifier::new(
        VerifierSettings::new("issuer", "audience"),
        Arc::new(StaticJwks(jsonwebtoken::jwk::JwkSet { keys: Vec::new() })),
    ));
    let policy = Arc::new(AccessPolicy::new([(SLEEP_PATH, Access::Public)]));
    let server =
        GrpcServer::new(&settings, AuthLayer::new(verifier, policy), &["test.Slow"]).long_running(long_running);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let address = listener.local_addr().expect("address");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.serve(tonic::service::Routes::new(Slow), listener, shutdown.wait()));
    (address, shutdown, task)
}

async fn call_sleep(address: std::net::SocketAddr) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|error| tonic::Status::internal(error.to_string()))?
        .connect()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(SLEEP_PATH);
    client.unary(tonic::Request::new(()), path, tonic_prost::ProstCodec::<(), ()>::default()).await.map(drop)
}

#[tokio::test]
async fn a_call_in_flight_when_shutdown_starts_completes() {
    let (address, shutdown, server) = start(Duration::from_secs(30), &[]).await;
    let in_flight = tokio::spawn(call_sleep(address));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shutdown_at = Instant::now();
    shutdown.trigger();

    assert_eq!(in_flight.await.expect("joined").map_err(|status| status.code()), Ok(()), "the in-flight call finished");
    let stopped = tokio::time::timeout(Duration::from_secs(5), server).await.expect("server stops").expect("joined");
    assert!(stopped.is_ok(), "{stopped:?}");
    assert!(shutdown_at.elapsed() >= Duration::from_millis(700), "the server waited for the call");
    assert!(call_sleep(address).await.is_err(), "no new calls after shutdown");
}

#[tokio::test]
async fn a_call_longer_than_the_timeout_is_cut_off() {
    let (address, shutdown, _server) = start(Duration::from_millis(200), &[]).await;
    let started = Instant::now();
    let status = call_sleep(address).await.expect_err("timed out");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_millis(900), "cut off at the timeout, not after the handler");
    shutdown.trigger();
}

#[tokio::test]
async fn a_long_running_method_is_not_cut_off_at_the_ordinary_timeout() {
    let (address, shutdown, _server) = start(Duration::from_millis(200), &[SLEEP_PATH]).await;
    assert_eq!(call_sleep(address).await.map_err(|status| status.code()), Ok(()));
    shutdown.trigger();
}
