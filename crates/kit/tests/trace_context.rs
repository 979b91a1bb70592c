//! Trace context with nothing exported: the kit's own layer gives spans
//! W3C trace ids, continues a caller's trace, and starts a new one when the
//! caller sent none (or nonsense). (Its own test binary: telemetry is
//! installed once per process.)

use std::collections::HashMap;

use esocial_kit::config::{LogFormat, TelemetrySettings};
use esocial_kit::telemetry::{current_trace_context, inject_trace_context, set_parent_from};

const CALLERS_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLERS_SPAN: &str = "b7ad6b7169203331";

fn install() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let settings =
            TelemetrySettings { log_format: LogFormat::Text, log_filter: "warn".to_owned(), otlp_endpoint: None };
        // The guard is empty with nothing exported; nothing to keep.
        drop(esocial_kit::telemetry::init("trace-context-test", &settings).expect("telemetry"));
    });
}

/// The fields of a `traceparent`: version, trace id, span id, flags.
fn fields(traceparent: &str) -> [String; 4] {
    let fields: Vec<String> = traceparent.split('-').map(str::to_owned).collect();
    fields.try_into().unwrap_or_else(|fields| panic!("four fields: {fields:?}"))
}

fn is_lower_hex(text: &str, length: usize) -> bool {
    text.len() == length && text.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// The trace context of `span`, read while it is the current span.
fn context_in(span: &tracing::Span) -> HashMap<String, String> {
    span.in_scope(current_trace_context)
}

fn carrier(traceparent: &str, tracestate: Option<&str>) -> HashMap<String, String> {
    let mut carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    if let Some(state) = tracestate {
        carrier.insert("tracestate".to_owned(), state.to_owned());
    }
    carrier
}

#[test]
fn a_span_continues_the_callers_trace_and_its_children_continue_it_with_spans_of_their_own() {
    install();
    let call = tracing::info_span!("call");
    set_parent_from(&call, &carrier(&format!("00-{CALLERS_TRACE}-{CALLERS_SPAN}-01"), Some("vendor=value,other=1")));
    let context = context_in(&call);
    let [version, trace, span, flags] = fields(&context["traceparent"]);
    assert_eq!((version.as_str(), trace.as_str(), flags.as_str()), ("00", CALLERS_TRACE, "01"), "{context:?}");
    assert!(is_lower_hex(&span, 16) && span != CALLERS_SPAN && span != "0000000000000000", "{span}");
    assert_eq!(
        context.get("tracestate").map(String::as_str),
        Some("vendor=value,other=1"),
        "the caller's state goes on"
    );
    // The same span reads the same ids every time.
    assert_eq!(context_in(&call), context);

    let child = call.in_scope(|| tracing::info_span!("child"));
    let [_, child_trace, child_span, child_flags] = fields(&context_in(&child)["traceparent"]);
    assert_eq!((child_trace.as_str(), child_flags.as_str()), (CALLERS_TRACE, "01"));
    assert_ne!(child_span, span, "a child has a span id of its own");
    let explicit = tracing::info_span!(parent: &call, "explicit child");
    assert_eq!(fields(&context_in(&explicit)["traceparent"])[1], CALLERS_TRACE);

    // Headers of a call forwarded on carry the current span's context, in
    // place of what the caller sent.
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "traceparent",
        http::HeaderValue::from_static("00-11111111111111111111111111111111-2222222222222222-01"),
    );
    headers.insert("tracestate", http::HeaderValue::from_static("stale=1"));
    child.in_scope(|| inject_trace_context(&mut headers));
    assert_eq!(headers["traceparent"], context_in(&child)["traceparent"].as_str());
    assert_eq!(headers["tracestate"], "vendor=value,other=1");
}

#[test]
fn a_caller_that_does_not_sample_is_followed() {
    install();
    let call = tracing::info_span!("call");
    set_parent_from(&call, &carrier(&format!("00-{CALLERS_TRACE}-{CALLERS_SPAN}-00"), None));
    let context = context_in(&call);
    let [_, trace, _, flags] = fields(&context["traceparent"]);
    assert_eq!((trace.as_str(), flags.as_str()), (CALLERS_TRACE, "00"));
    assert!(!context.contains_key("tracestate"), "{context:?}");
}

#[test]
fn without_a_valid_callers_context_a_span_starts_a_trace_of_its_own() {
    install();
    let mut traces = Vec::new();
    for traceparent in [
        None,
        Some("nonsense".to_owned()),
        Some(format!("00-{}-{CALLERS_SPAN}-01", "0".repeat(32))),
        Some(format!("00-{CALLERS_TRACE}-{}-01", "0".repeat(16))),
        Some(format!("00-{}-{CALLERS_SPAN}-01", CALLERS_TRACE.to_uppercase())),
        Some(format!("00-{CALLERS_TRACE}-{CALLERS_SPAN}-01-extra")),
    ] {
        // Inside a span of another trace: a call's span still starts anew,
        // as the OpenTelemetry SDK would have it.
        let outer = tracing::info_span!("outer");
        let call = outer.in_scope(|| tracing::info_span!("call"));
        set_parent_from(&call, &traceparent.as_deref().map(|value| carrier(value, None)).unwrap_or_default());
        let context = context_in(&call);
        let [version, trace, span, flags] = fields(&context["traceparent"]);
        assert_eq!((version.as_str(), flags.as_str()), ("00", "01"), "{traceparent:?}: {context:?}");
        assert!(is_lower_hex(&trace, 32) && trace != "0".repeat(32), "{traceparent:?}: {trace}");
        assert!(is_lower_hex(&span, 16) && span != "0".repeat(16), "{traceparent:?}: {span}");
        assert_ne!(trace, CALLERS_TRACE, "{traceparent:?}");
        assert_ne!(trace, fields(&context_in(&outer)["traceparent"])[1], "{traceparent:?}: a trace of its own");
        traces.push(trace);
    }
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), 6, "every new trace has an id of its own");
}

#[test]
fn outside_any_span_there_is_no_trace_context() {
    install();
    assert_eq!(current_trace_context(), HashMap::new());
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "traceparent",
        http::HeaderValue::from_static("00-11111111111111111111111111111111-2222222222222222-01"),
    );
    inject_trace_context(&mut headers);
    assert!(headers.is_empty(), "what the caller sent is not passed on as this process's: {headers:?}");
}

#[test]
fn spans_and_events_below_the_levels_kept_are_not_made() {
    install();
    // Logs at `warn`; spans at `info` and above are kept for trace context.
    assert_eq!(tracing::level_filters::LevelFilter::current(), tracing::level_filters::LevelFilter::INFO);
    assert!(tracing::span_enabled!(tracing::Level::INFO), "a call's span is made");
    // The HTTP/2 crates make trace-level spans and events on every frame.
    assert!(!tracing::span_enabled!(target: "h2::proto", tracing::Level::TRACE));
    assert!(!tracing::span_enabled!(target: "h2::proto", tracing::Level::DEBUG));
    assert!(!tracing::event_enabled!(target: "h2::proto", tracing::Level::INFO), "below the log filter");
    assert!(tracing::event_enabled!(tracing::Level::WARN));
}
