//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans and metrics leave the
//! process over OTLP/gRPC: a stand-in collector counts the exports it gets.
//! (Its own test binary: telemetry is installed once per process.)

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use esocial_kit::config::{LogFormat, TelemetrySettings};
use tonic::body::Body;
use tonic::server::NamedService;

/// Accepts every call of one OTLP collector service and counts it by path.
#[derive(Clone)]
struct Collector {
    calls: Arc<Mutex<BTreeMap<String, usize>>>,
}

#[derive(Clone)]
struct CollectorService<const TRACES: bool>(Collector);

impl NamedService for CollectorService<true> {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl NamedService for CollectorService<false> {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}

/// Replies to `Export` with an empty response (all OTLP export responses
/// have only optional fields); the request is decoded as an empty message,
/// which skips its fields.
struct Accept;

impl tonic::server::UnaryService<()> for Accept {
    type Response = ();
    type Future = std::future::Ready<Result<tonic::Response<()>, tonic::Status>>;

    fn call(&mut self, _request: tonic::Request<()>) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new(())))
    }
}

impl<const TRACES: bool> tower_service::Service<http::Request<Body>> for CollectorService<TRACES> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        if let Ok(mut calls) = self.0.calls.lock() {
            *calls.entry(path).or_default() += 1;
        }
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<(), ()>::default());
            Ok(grpc.unary(Accept, request).await)
        })
    }
}

#[tokio::test]
async fn spans_and_metrics_are_exported_when_an_endpoint_is_set() {
    let collector = Collector { calls: Arc::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let address = listener.local_addr().expect("address");
    let routes = tonic::service::Routes::new(CollectorService::<true>(collector.clone()))
        .add_service(CollectorService::<false>(collector.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let settings = TelemetrySettings {
        log_format: LogFormat::Json,
        log_filter: "warn".to_owned(),
        otlp_endpoint: Some(format!("http://{address}")),
    };
    let guard = esocial_kit::telemetry::init("otlp-test", &settings).expect("telemetry");
    {
        let span = tracing::info_span!("exported_operation");
        let _entered = span.enter();
        let context = esocial_kit::telemetry::current_trace_context();
        assert!(context.get("traceparent").is_some_and(|value| value.starts_with("00-")), "{context:?}");
    }
    opentelemetry::global::meter("esocial").u64_counter("esocial.test.counter").build().add(1, &[]);
    guard.flush().await;

    let calls = collector.calls.lock().expect("lock").clone();
    assert!(
        calls.get("/opentelemetry.proto.collector.trace.v1.TraceService/Export").is_some_and(|count| *count >= 1),
        "{calls:?}"
    );
    assert!(
        calls.get("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export").is_some_and(|count| *count >= 1),
        "{calls:?}"
    );
    guard.shutdown().await;
}
