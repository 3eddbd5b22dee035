//! OpenTelemetry traces, exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set
//! (off otherwise, at no cost but a flag read).
//!
//! One notification is one trace:
//!
//! - the API's span of the HTTP call (`POST /v1/notify`, with `http.route`, `tenant` and the
//!   notification's `request_id`);
//! - the Temporal SDK's own spans for the workflow start, every workflow run, every activity
//!   and child workflow started from it and every activity run: its tracing plugin
//!   ([`temporalio_sdk::opentelemetry`]) carries the context in the `_tracer-data` header of
//!   each start, and gives workflow spans replay-safe ids, so a replay exports nothing twice;
//! - Fanout's span of each delivery activity (`deliver email page 3`, with `request_id`,
//!   `tenant_id`, `channel` and `page`) and, inside it, one span per provider call (SMTP
//!   transaction, APNs or FCM HTTP call) for the first [`TRACED_CALLS_PER_DELIVERY`] calls of
//!   each delivery activity: a 100,000-recipient fan-out exports about 10,000 spans rather
//!   than 200,000, and a one-recipient request every one.
//!
//! Only spans of Fanout's own crates go to the exporter (the SDK's internal `tracing` spans do
//! not), whatever `RUST_LOG` says. The exporter is the OTLP/HTTP one: protobuf unless
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (or `..._TRACES_PROTOCOL`) says `http/json`; the usual
//! `OTEL_*` variables (endpoint, headers, timeout, `OTEL_BSP_*`) apply.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, bail};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use temporalio_sdk::opentelemetry::{
    OpenTelemetryPlugin, WorkflowIdGenerator, WorkflowSpanProcessor,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// Provider calls that get a span of their own, per delivery activity (see the module docs).
pub const TRACED_CALLS_PER_DELIVERY: u32 = 100;

/// The instrumentation scope of Fanout's own spans.
const SCOPE: &str = "fanout";

/// Whether this process exports traces.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces (`OTEL_EXPORTER_OTLP_ENDPOINT` was set at start-up).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The endpoint traces go to, if any: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, when not empty.
fn endpoint() -> Option<String> {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .into_iter()
    .filter_map(|name| std::env::var(name).ok())
    .find(|v| !v.trim().is_empty())
}

/// The OTLP protocol `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` names: `http/protobuf` (the
/// default) or `http/json`. gRPC is not built in.
fn protocol() -> anyhow::Result<Protocol> {
    let named = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .into_iter()
    .filter_map(|name| std::env::var(name).ok())
    .find(|v| !v.trim().is_empty());
    match named.as_deref().map(str::trim) {
        None | Some("http/protobuf") => Ok(Protocol::HttpBinary),
        Some("http/json") => Ok(Protocol::HttpJson),
        Some(other) => bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL is {other:?}: Fanout exports traces over OTLP/HTTP; use http/protobuf or http/json (for gRPC-only collectors, put an OpenTelemetry Collector in front)"
        ),
    }
}

/// The process's tracer provider, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: OTLP/HTTP
/// through a batch processor, replay-safe ids for workflow spans, `service.name` as given
/// (or `OTEL_SERVICE_NAME`). Installed as the global provider with the W3C propagator.
pub fn install(service: &'static str) -> anyhow::Result<Option<SdkTracerProvider>> {
    if endpoint().is_none() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol()?)
        .build()
        .context("building the OTLP trace exporter")?;
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| service.to_owned());
    let provider = SdkTracerProvider::builder()
        .with_id_generator(WorkflowIdGenerator::default())
        .with_span_processor(WorkflowSpanProcessor::new(
            BatchSpanProcessor::builder(exporter).build(),
        ))
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    global::set_tracer_provider(provider.clone());
    global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some(provider))
}

/// How a process's spans carry trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// The process starts Temporal work from inside its own spans (the API): entering a span
    /// makes its context current, which the SDK's client plugin reads for each start.
    FromSpans,
    /// The process gets its context from Temporal headers (the worker): spans are not made
    /// current on entering, which saves a context switch on every poll of a delivery (a page's
    /// future is polled once per send completion), and their busy/idle time is not tracked.
    FromHeaders,
}

/// The layer that turns Fanout's `tracing` spans (its crates' only) into OpenTelemetry spans.
pub fn layer<S>(provider: &SdkTracerProvider, propagation: Propagation) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    use opentelemetry::trace::TracerProvider as _;
    let ours = Targets::new()
        .with_target("fanout_api", tracing::Level::INFO)
        .with_target("fanout_activities", tracing::Level::INFO)
        .with_target("fanout_worker", tracing::Level::INFO)
        .with_target("fanout_workflows", tracing::Level::INFO);
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SCOPE))
        .with_context_activation(propagation == Propagation::FromSpans)
        .with_tracked_inactivity(false)
        .with_filter(ours)
}

/// The Temporal SDK's tracing plugin, for a client (and, through it, a worker), when traces are
/// on: spans of starts, workflow and activity runs, and the context in Temporal headers.
pub fn temporal_plugins() -> Vec<temporalio_sdk::SimplePlugin> {
    if enabled() {
        vec![OpenTelemetryPlugin::builder().build()]
    } else {
        Vec::new()
    }
}

/// Makes `span` (not yet entered) continue the trace a W3C `traceparent` names, as an
/// incoming HTTP call from an instrumented client asks. Does nothing with traces off or without
/// a valid `traceparent`.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    struct One<'a>(&'a str);
    impl opentelemetry::propagation::Extractor for One<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            (key == "traceparent").then_some(self.0)
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent"]
        }
    }
    let (true, Some(traceparent)) = (enabled(), traceparent) else {
        return;
    };
    let parent = global::get_text_map_propagator(|p| p.extract(&One(traceparent)));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Renames `span` in its trace (`tracing`'s `otel.name` only names a span before its trace
/// context exists). Does nothing with traces off, without building the name.
pub fn rename(span: &tracing::Span, name: impl FnOnce() -> String) {
    if enabled() {
        span.context().span().update_name(name());
    }
}

/// Records the current trace's id on `span` as its `trace_id` field (declared
/// `tracing::field::Empty`), so the span's log lines carry it. Does nothing with traces off.
pub fn record_trace_id(span: &tracing::Span) {
    if !enabled() {
        return;
    }
    let context = span.context();
    let trace_id = context.span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// A span around one provider call, child of the current `tracing` span: started by
/// [`CallSpan::start`], ended by [`CallSpan::end`]. Empty with traces off.
#[must_use = "end the span with CallSpan::end"]
pub struct CallSpan(Option<global::BoxedSpan>);

impl CallSpan {
    /// Starts a client span named `name` (`smtp send`, `apns send`, `fcm send`) with these
    /// attributes, if traces are on and `traced` (the caller's budget) allows.
    pub fn start(
        name: &'static str,
        traced: bool,
        attributes: Vec<(&'static str, String)>,
    ) -> Self {
        if !traced || !enabled() {
            return Self(None);
        }
        let parent: Context = tracing::Span::current().context();
        let tracer = global::tracer(SCOPE);
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes.into_iter().map(|(k, v)| KeyValue::new(k, v)))
            .start_with_context(&tracer, &parent);
        Self(Some(span))
    }

    /// Ends the span with the call's result (`ok`, `transient`, `permanent`), as an error
    /// with the receipt's code when it failed.
    pub fn end(self, result: &str, error: Option<&str>) {
        if let Some(mut span) = self.0 {
            span.set_attribute(KeyValue::new("fanout.result", result.to_owned()));
            if let Some(error) = error {
                span.set_status(Status::error(error.to_owned()));
            }
            span.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_built_or_recorded_without_an_endpoint() {
        // The test process sets no OTEL_* variables.
        assert!(endpoint().is_none());
        assert!(install("test").unwrap().is_none());
        assert!(!enabled());
        assert!(temporal_plugins().is_empty());
        CallSpan::start("smtp send", true, Vec::new()).end("ok", None);
    }
}
