//! Logs, traces and metrics.
//!
//! Logs go to stderr as text or JSON. Spans always carry W3C trace context
//! (an in-process tracer provider gives them ids even when nothing is
//! exported), so a `traceparent` received over gRPC reaches the events a call
//! writes and the consumers that handle them. With
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans and metrics are exported over
//! OTLP/gRPC.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::{Resource, metrics::SdkMeterProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{LogFormat, TelemetrySettings};

/// Owns the exporters. Call [`TelemetryGuard::shutdown`] before the runtime
/// ends so buffered spans and metrics are sent; dropping the guard without it
/// only starts a best-effort shutdown on another thread.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
}

impl TelemetryGuard {
    /// Exports what is buffered now. The SDK's flush blocks until the export
    /// task (running on this runtime) answers, so it runs on a blocking thread.
    pub async fn flush(&self) {
        let tracer_provider = self.tracer_provider.clone();
        let meter_provider = self.meter_provider.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(provider) = tracer_provider {
                let _ = provider.force_flush();
            }
            if let Some(provider) = meter_provider {
                let _ = provider.force_flush();
            }
        })
        .await;
    }

    /// Exports what is buffered and stops the exporters.
    pub async fn shutdown(mut self) {
        let tracer_provider = self.tracer_provider.take();
        let meter_provider = self.meter_provider.take();
        let _ = tokio::task::spawn_blocking(move || shut_down(tracer_provider, meter_provider)).await;
    }
}

fn shut_down(tracer_provider: Option<SdkTracerProvider>, meter_provider: Option<SdkMeterProvider>) {
    if let Some(provider) = tracer_provider {
        let _ = provider.shutdown();
    }
    if let Some(provider) = meter_provider {
        let _ = provider.shutdown();
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let tracer_provider = self.tracer_provider.take();
        let meter_provider = self.meter_provider.take();
        if tracer_provider.is_some() || meter_provider.is_some() {
            // Never block here: the export tasks may need this very thread.
            std::thread::spawn(move || shut_down(tracer_provider, meter_provider));
        }
    }
}

/// Installs the global subscriber, propagator and providers. Call once per
/// process, inside the Tokio runtime; a second call (tests that start several
/// services) leaves the first installation in place and returns an empty
/// guard.
pub fn init(service_name: &str, settings: &TelemetrySettings) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = Resource::builder().with_service_name(service_name.to_owned()).build();

    let mut tracer_builder = SdkTracerProvider::builder().with_resource(resource.clone());
    let mut meter_provider = None;
    if let Some(endpoint) = &settings.otlp_endpoint {
        let span_exporter =
            opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint.clone()).build()?;
        // The batch processor runs on Tokio: the tonic exporter needs a reactor,
        // which the SDK's default OS-thread processor does not have.
        let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            span_exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
        tracer_builder = tracer_builder.with_span_processor(processor);

        let metric_exporter =
            opentelemetry_otlp::MetricExporter::builder().with_tonic().with_endpoint(endpoint.clone()).build()?;
        let reader = opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader::builder(
            metric_exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
        let provider = SdkMeterProvider::builder().with_resource(resource).with_reader(reader).build();
        meter_provider = Some(provider);
    }
    let tracer_provider = tracer_builder.build();
    let tracer = tracer_provider.tracer(service_name.to_owned());

    let filter = EnvFilter::try_new(&settings.log_filter)
        .map_err(|error| anyhow::anyhow!("RUST_LOG={:?}: {error}", settings.log_filter))?;
    let format_layer = match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
    };
    // The log filter governs only what is logged. Spans at INFO and above are
    // always kept for tracing, so trace context flows even when logs are quiet.
    let spans_only = tracing_subscriber::filter::filter_fn(|metadata| {
        metadata.is_span() && *metadata.level() <= tracing::Level::INFO
    });
    let installed = tracing_subscriber::registry()
        .with(format_layer.with_filter(filter))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                // Nothing here reads the OpenTelemetry context of the current
                // thread (trace context is taken from the span itself), and a
                // span's busy and idle time cost two clock reads at every poll
                // of the future it instruments; the thread's name and id are
                // noise in a Tokio pool. None of the three is kept.
                .with_context_activation(false)
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_filter(spans_only),
        )
        .try_init()
        .is_ok();
    if !installed {
        return Ok(TelemetryGuard::default());
    }
    if let Some(provider) = &meter_provider {
        opentelemetry::global::set_meter_provider(provider.clone());
    }
    opentelemetry::global::set_tracer_provider(tracer_provider.clone());
    Ok(TelemetryGuard { tracer_provider: Some(tracer_provider), meter_provider })
}

/// The W3C trace context headers (`traceparent`, maybe `tracestate`) of the
/// current span.
pub fn current_trace_context() -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier
}

/// Writes the current span's W3C trace context into HTTP/2 headers,
/// replacing what was there (a call forwarded on continues this trace).
pub fn inject_trace_context(headers: &mut http::HeaderMap) {
    headers.remove("traceparent");
    headers.remove("tracestate");
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// Makes `span` a child of the trace context found in `carrier`, if any.
pub fn set_parent_from(span: &tracing::Span, carrier: &dyn Extractor) {
    let context = TraceContextPropagator::new().extract(carrier);
    let _ = span.set_parent(context);
}

/// Reads trace context from HTTP/2 headers (gRPC metadata).
#[derive(Debug)]
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes trace context into HTTP/2 headers (gRPC metadata).
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (http::HeaderName::try_from(key), http::HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

/// A tonic client interceptor that sends the current span's trace context,
/// so a call continues the caller's trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        for (key, value) in current_trace_context() {
            if let (Ok(key), Ok(value)) = (tonic::metadata::AsciiMetadataKey::from_bytes(key.as_bytes()), value.parse())
            {
                request.metadata_mut().insert(key, value);
            }
        }
        Ok(request)
    }
}
