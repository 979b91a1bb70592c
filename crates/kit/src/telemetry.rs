//! Logs, traces and metrics.
//!
//! Logs go to stderr as text or JSON. Spans always carry W3C trace context,
//! so a `traceparent` received over gRPC reaches the events a call writes and
//! the consumers that handle them. With `OTEL_EXPORTER_OTLP_ENDPOINT` set,
//! spans and metrics are exported over OTLP/gRPC, and the OpenTelemetry SDK
//! gives spans their ids. With nothing exported, a small layer of the kit's
//! own ([`TraceIdsLayer`]) gives them ids instead: the same trace context
//! travels, without building an OpenTelemetry span for every span, which is
//! most of what a call's span costs (`cargo bench -p esocial-kit --bench
//! request_context`).

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TraceFlags, TraceState, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator, SdkTracerProvider};
use opentelemetry_sdk::{Resource, metrics::SdkMeterProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
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

    let mut tracer_provider = None;
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
        tracer_provider =
            Some(SdkTracerProvider::builder().with_resource(resource.clone()).with_span_processor(processor).build());

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
    // always given trace context, so it flows even when logs are quiet.
    // This filter depends on the callsite alone, so each callsite is asked
    // once; the level hint lets `debug!` and `trace!` below the log filter's level stop
    // at the macro's own level check.
    let spans_only = || {
        tracing_subscriber::filter::filter_fn(|metadata| {
            metadata.is_span() && *metadata.level() <= tracing::Level::INFO
        })
        .with_max_level_hint(tracing::level_filters::LevelFilter::INFO)
    };
    // One layer or the other, never an `Option` of each: a `None` layer
    // enables every callsite, and the HTTP/2 crates' trace-level spans would
    // then be made on every frame.
    let trace_context = match &tracer_provider {
        Some(provider) => tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service_name.to_owned()))
            // Nothing here reads the OpenTelemetry context of the current
            // thread (trace context is taken from the span itself), and a
            // span's busy and idle time cost two clock reads at every poll
            // of the future it instruments; the thread's name and id are
            // noise in a Tokio pool. None of the three is kept.
            .with_context_activation(false)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_filter(spans_only())
            .boxed(),
        None => TraceIdsLayer.with_filter(spans_only()).boxed(),
    };
    let installed =
        tracing_subscriber::registry().with(trace_context).with(format_layer.with_filter(filter)).try_init().is_ok();
    if !installed {
        return Ok(TelemetryGuard::default());
    }
    if let Some(provider) = &meter_provider {
        opentelemetry::global::set_meter_provider(provider.clone());
    }
    if let Some(provider) = &tracer_provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
        EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(TelemetryGuard { tracer_provider, meter_provider })
}

static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether spans are exported (telemetry was installed with an OTLP
/// endpoint): only then are the fields that describe an OpenTelemetry span
/// (`otel.name`, `otel.kind` and the like) worth filling in.
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// A span's place in a W3C trace, which [`TraceIdsLayer`] keeps in the
/// span's extensions when nothing is exported.
#[derive(Debug, Clone)]
struct TraceIds(SpanContext);

/// Gives every span trace context with no OpenTelemetry SDK behind it: a
/// span continues its parent span's trace with a span id of its own, a span
/// without a parent starts a trace (sampled, as the SDK's default sampler
/// would have it), and [`set_parent_from`] moves a span into the caller's
/// trace, with the caller's flags and trace state.
#[derive(Debug, Clone, Copy)]
pub struct TraceIdsLayer;

impl<S> tracing_subscriber::Layer<S> for TraceIdsLayer
where
    S: tracing::Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn on_new_span(
        &self,
        _attributes: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        context: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(span) = context.span(id) else { return };
        let parent = span.parent().and_then(|parent| parent.extensions().get::<TraceIds>().map(|ids| ids.0.clone()));
        let ids = match parent {
            Some(parent) => SpanContext::new(
                parent.trace_id(),
                RandomIdGenerator::default().new_span_id(),
                parent.trace_flags(),
                false,
                parent.trace_state().clone(),
            ),
            None => new_trace(),
        };
        span.extensions_mut().insert(TraceIds(ids));
    }
}

/// The first span of a new trace.
fn new_trace() -> SpanContext {
    let ids = RandomIdGenerator::default();
    SpanContext::new(ids.new_trace_id(), ids.new_span_id(), TraceFlags::SAMPLED, false, TraceState::default())
}

/// Runs `with` on the trace ids [`TraceIdsLayer`] gave `span`; `None` when
/// it gave none (the layer is not installed, or the span is disabled).
fn with_own_ids<T>(span: &tracing::Span, with: impl FnOnce(&mut SpanContext) -> T) -> Option<T> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let span = registry.span(id)?;
        let mut extensions = span.extensions_mut();
        extensions.get_mut::<TraceIds>().map(|ids| with(&mut ids.0))
    })
    .flatten()
}

/// Writes the current span's W3C trace context (`traceparent`, maybe
/// `tracestate`) into `carrier`: the ids the kit's layer gave it, or else
/// the OpenTelemetry layer's.
fn inject_current(carrier: &mut dyn Injector) {
    let span = tracing::Span::current();
    let own = with_own_ids(&span, |ids| {
        if !ids.is_valid() {
            return;
        }
        carrier
            .set("traceparent", format!("00-{}-{}-{:02x}", ids.trace_id(), ids.span_id(), ids.trace_flags().to_u8()));
        let state = ids.trace_state().header();
        if !state.is_empty() {
            carrier.set("tracestate", state);
        }
    });
    if own.is_none() {
        TraceContextPropagator::new().inject_context(&span.context(), carrier);
    }
}

/// The W3C trace context headers (`traceparent`, maybe `tracestate`) of the
/// current span.
pub fn current_trace_context() -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    inject_current(&mut carrier);
    carrier
}

/// Writes the current span's W3C trace context into HTTP/2 headers,
/// replacing what was there (a call forwarded on continues this trace).
pub fn inject_trace_context(headers: &mut http::HeaderMap) {
    headers.remove(TRACEPARENT);
    headers.remove(TRACESTATE);
    inject_current(&mut HeaderInjector(headers));
}

/// Makes `span` a child of the trace context found in `carrier`, if any.
/// With no valid trace context there, the span starts a trace of its own.
pub fn set_parent_from(span: &tracing::Span, carrier: &dyn Extractor) {
    let context = TraceContextPropagator::new().extract(carrier);
    let caller = context.span().span_context().clone();
    let own = with_own_ids(span, |ids| {
        *ids = if caller.is_valid() {
            SpanContext::new(
                caller.trace_id(),
                ids.span_id(),
                caller.trace_flags(),
                false,
                caller.trace_state().clone(),
            )
        } else {
            new_trace()
        };
    });
    if own.is_none() {
        let _ = span.set_parent(context);
    }
}

/// Reads trace context from HTTP/2 headers (gRPC metadata).
#[derive(Debug)]
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

/// The trace context's header names, made once: a name given as a `&str`
/// is parsed (and, not being a standard one, copied) at every use.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// The name made once of the trace context's header `key`, if it is one.
fn trace_header(key: &str) -> Option<http::HeaderName> {
    match key {
        "traceparent" => Some(TRACEPARENT),
        "tracestate" => Some(TRACESTATE),
        _ => None,
    }
}

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = match trace_header(key) {
            Some(name) => self.0.get(name),
            None => self.0.get(key),
        };
        value.and_then(|value| value.to_str().ok())
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
        let name = trace_header(key).or_else(|| http::HeaderName::try_from(key).ok());
        if let (Some(name), Ok(value)) = (name, http::HeaderValue::try_from(value)) {
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
