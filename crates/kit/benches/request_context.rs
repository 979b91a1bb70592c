//! What the request context costs a call: the request id, the span that
//! continues the caller's trace, the deadline and the duration metric that
//! every service's server adds ([`RequestContextLayer`]), plus writing the
//! trace context into the headers of a call forwarded on, as the exchange
//! gateway does for every call it passes.
//!
//! ```text
//! cargo bench -p esocial-kit --bench request_context
//! BENCH_CALLS=500000 BENCH_ROUNDS=7 cargo bench -p esocial-kit --bench request_context
//! ```
//!
//! Telemetry is installed as a service installs it with no OTLP endpoint
//! (logs at `info`, to stderr; none is written for a call that succeeds).
//! The calls run one after another on one thread, so the time a call takes
//! is the CPU it costs. Printed: nanoseconds a call, the best and the median
//! of the rounds, for calls that bring a `traceparent` and calls that do not,
//! and for the inner service alone (what the layer adds is the difference).

#![allow(clippy::print_stdout, clippy::cast_precision_loss)]

use std::convert::Infallible;
use std::time::{Duration, Instant};

use esocial_kit::config::{LogFormat, TelemetrySettings};
use esocial_kit::server::RequestContextLayer;
use esocial_kit::telemetry::inject_trace_context;
use http::{HeaderMap, HeaderValue, Request, Response};
use tower::{Layer as _, ServiceExt as _};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// The inner service: writes the current trace context into fresh headers,
/// as the gateway's forwarder does, and answers.
async fn forward(_request: Request<()>) -> Result<Response<()>, Infallible> {
    let mut headers = HeaderMap::new();
    inject_trace_context(&mut headers);
    std::hint::black_box(&headers);
    Ok(Response::new(()))
}

fn request(traceparent: bool) -> Request<()> {
    let mut request =
        Request::builder().uri("/esocial.registry.v1.IdpService/VerifyIdpCertificate").body(()).expect("a request");
    if traceparent {
        request
            .headers_mut()
            .insert("traceparent", HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
    }
    request
}

/// Nanoseconds a call for each round.
async fn rounds<S>(service: &mut S, traceparent: bool, calls: u64, rounds: u64) -> Vec<f64>
where
    S: tower::Service<Request<()>, Response = Response<()>, Error = Infallible>,
{
    let mut figures = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..calls {
            let response = service.ready().await.expect("ready").call(request(traceparent)).await.expect("answered");
            std::hint::black_box(response);
        }
        figures.push(started.elapsed().as_nanos() as f64 / calls as f64);
    }
    figures.sort_by(f64::total_cmp);
    figures
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let settings = TelemetrySettings {
            log_format: LogFormat::Json,
            log_filter: "info".to_owned(),
            otlp_endpoint: None,
        };
        let _telemetry = esocial_kit::telemetry::init("request-context-bench", &settings)?;
        let calls = env_number("BENCH_CALLS", 200_000);
        let count = env_number("BENCH_ROUNDS", 5).max(1);
        println!("{calls} calls a round, {count} rounds; nanoseconds a call, best / median");
        let mut bare = tower::service_fn(forward);
        let mut layered = RequestContextLayer::new(Duration::from_secs(30)).layer(tower::service_fn(forward));
        // Warm up allocator and caches.
        rounds(&mut layered, true, calls / 10, 1).await;
        for (label, traceparent) in [("with traceparent", true), ("without traceparent", false)] {
            let inner = rounds(&mut bare, traceparent, calls, count).await;
            let whole = rounds(&mut layered, traceparent, calls, count).await;
            let median = |figures: &[f64]| figures[figures.len() / 2];
            println!(
                "{label:>20}: inner service {:>7.0} / {:>7.0}   with the layer {:>7.0} / {:>7.0}   the layer adds {:>7.0}",
                inner[0],
                median(&inner),
                whole[0],
                median(&whole),
                median(&whole) - median(&inner),
            );
        }
        Ok(())
    })
}
