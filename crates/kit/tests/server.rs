//! The server bootstrap with a deliberately slow method: a call in flight
//! when shutdown starts completes (on the caller's runtime and on serving
//! threads of the server's own); a call longer than the configured timeout
//! is cut off, and on serving threads so is one still running when the
//! grace period ends; serving threads take new connections in turn.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use esocial_auth::{Access, AccessPolicy, AuthLayer, StaticJwks, TokenVerifier, VerifierSettings};
use esocial_kit::config::GrpcSettings;
use esocial_kit::server::GrpcServer;
use esocial_kit::shutdown::Shutdown;
use tonic::body::Body;
use tonic::server::NamedService;

const SLEEP_PATH: &str = "/test.Slow/Sleep";

/// `test.Slow/Sleep` answers after a second, noting the thread it ran on.
#[derive(Clone, Default)]
struct Slow {
    threads: Arc<Mutex<Vec<String>>>,
}

impl NamedService for Slow {
    const NAME: &'static str = "test.Slow";
}

struct Sleep(Arc<Mutex<Vec<String>>>);

impl tonic::server::UnaryService<()> for Sleep {
    type Response = ();
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<()>, tonic::Status>> + Send>>;

    fn call(&mut self, _request: tonic::Request<()>) -> Self::Future {
        let thread = std::thread::current().name().unwrap_or_default().to_owned();
        self.0.lock().expect("not poisoned").push(thread);
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
        let threads = self.threads.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<(), ()>::default());
            Ok(grpc.unary(Sleep(threads), request).await)
        })
    }
}

struct Started {
    address: std::net::SocketAddr,
    shutdown: Shutdown,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The names of the threads the calls ran on.
    threads: Arc<Mutex<Vec<String>>>,
}

async fn start(request_timeout: Duration, long_running: &[&'static str]) -> Started {
    start_with(request_timeout, long_running, 0, Duration::from_secs(5)).await
}

async fn start_with(
    request_timeout: Duration,
    long_running: &[&'static str],
    serving_threads: usize,
    shutdown_grace: Duration,
) -> Started {
    let settings = GrpcSettings { request_timeout, message_bytes_max: 1 << 20, shutdown_grace };
    let verifier = Arc::new(TokenVerifier::new(
        VerifierSettings::new("issuer", "audience"),
        Arc::new(StaticJwks(jsonwebtoken::jwk::JwkSet { keys: Vec::new() })),
    ));
    let policy = Arc::new(AccessPolicy::new([(SLEEP_PATH, Access::Public)]));
    let server = GrpcServer::new(&settings, AuthLayer::new(verifier, policy), &["test.Slow"])
        .long_running(long_running)
        .serving_threads(serving_threads);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let address = listener.local_addr().expect("address");
    let shutdown = Shutdown::new();
    let slow = Slow::default();
    let threads = slow.threads.clone();
    let server = tokio::spawn(server.serve(tonic::service::Routes::new(slow), listener, shutdown.wait()));
    Started { address, shutdown, server, threads }
}

async fn call_sleep(address: std::net::SocketAddr) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|error| tonic::Status::internal(error.to_string()))?
        .connect()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    call_sleep_on(channel).await
}

async fn call_sleep_on(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(SLEEP_PATH);
    client.unary(tonic::Request::new(()), path, tonic_prost::ProstCodec::<(), ()>::default()).await.map(drop)
}

async fn a_call_in_flight_when_shutdown_starts_completes_on(serving_threads: usize) {
    let Started { address, shutdown, server, .. } =
        start_with(Duration::from_secs(30), &[], serving_threads, Duration::from_secs(5)).await;
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
async fn a_call_in_flight_when_shutdown_starts_completes() {
    a_call_in_flight_when_shutdown_starts_completes_on(0).await;
}

#[tokio::test]
async fn a_call_in_flight_when_shutdown_starts_completes_on_serving_threads() {
    a_call_in_flight_when_shutdown_starts_completes_on(2).await;
}

/// On serving threads, a call still running when the grace period ends is
/// cut off (their runtimes end, and every task on them), and the server
/// stops then rather than when the call would have ended. (On the caller's
/// runtime, `serve` returns at the same moment, but the connection's task
/// lives on until the process ends, as it does right after in `esocial`.)
#[tokio::test]
async fn a_call_still_running_after_the_grace_period_is_cut_off_on_serving_threads() {
    let Started { address, shutdown, server, .. } =
        start_with(Duration::from_secs(30), &[], 2, Duration::from_millis(300)).await;
    let in_flight = tokio::spawn(call_sleep(address));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shutdown_at = Instant::now();
    shutdown.trigger();

    let stopped = tokio::time::timeout(Duration::from_secs(5), server).await.expect("server stops").expect("joined");
    assert!(stopped.is_ok(), "{stopped:?}");
    let stopped_after = shutdown_at.elapsed();
    assert!(
        stopped_after >= Duration::from_millis(250) && stopped_after < Duration::from_millis(850),
        "stopped {stopped_after:?} after the shutdown began: at the end of the grace period, before the call's end"
    );
    let cut = in_flight.await.expect("joined");
    assert!(cut.is_err(), "the call was cut off, not answered: {cut:?}");
}

#[tokio::test]
async fn serving_threads_take_new_connections_in_turn() {
    let Started { address, shutdown, server, threads } =
        start_with(Duration::from_secs(30), &[], 2, Duration::from_secs(5)).await;
    // Four connections, two calls on each at once.
    let mut calls = Vec::new();
    for _ in 0..4 {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .expect("url")
            .connect()
            .await
            .expect("connected");
        for _ in 0..2 {
            calls.push(tokio::spawn(call_sleep_on(channel.clone())));
        }
    }
    for call in calls {
        assert_eq!(call.await.expect("joined").map_err(|status| status.code()), Ok(()));
    }
    let mut seen = threads.lock().expect("not poisoned").clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            "grpc-serve-0",
            "grpc-serve-0",
            "grpc-serve-0",
            "grpc-serve-0",
            "grpc-serve-1",
            "grpc-serve-1",
            "grpc-serve-1",
            "grpc-serve-1"
        ],
        "each thread served two connections' calls"
    );
    shutdown.trigger();
    let stopped = tokio::time::timeout(Duration::from_secs(5), server).await.expect("server stops").expect("joined");
    assert!(stopped.is_ok(), "{stopped:?}");
}

#[tokio::test]
async fn a_call_longer_than_the_timeout_is_cut_off() {
    let Started { address, shutdown, .. } = start(Duration::from_millis(200), &[]).await;
    let started = Instant::now();
    let status = call_sleep(address).await.expect_err("timed out");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_millis(900), "cut off at the timeout, not after the handler");
    shutdown.trigger();
}

#[tokio::test]
async fn a_long_running_method_is_not_cut_off_at_the_ordinary_timeout() {
    let Started { address, shutdown, .. } = start(Duration::from_millis(200), &[SLEEP_PATH]).await;
    assert_eq!(call_sleep(address).await.map_err(|status| status.code()), Ok(()));
    shutdown.trigger();
}
