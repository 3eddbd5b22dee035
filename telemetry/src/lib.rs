//! What Fanout's processes tell an operator: structured logs ([`logs`]), Prometheus metrics
//! ([`metrics`], every metric the platform exports, defined in one place), OpenTelemetry
//! traces ([`traces`]), and the worker's small HTTP listener ([`listener`]: `/metrics`,
//! `/healthz`, `/readyz`). [`init`] sets up logs and traces for a binary.
//!
//! Metrics use the `prometheus` crate. Temporal's core already builds it (its own exporter),
//! so it costs no new dependency; its static, registered metric families let any crate record
//! without a handle being threaded through, and its text encoder is the reference format.

pub mod listener;
pub mod logs;
pub mod metrics;
pub mod traces;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// What [`init`] set up; dropping it flushes the spans not yet exported.
#[must_use = "keep it until the process ends: dropping it flushes and stops trace export"]
pub struct Telemetry {
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("flushing traces: {e}");
        }
    }
}

/// Installs the process's log subscriber (see [`logs::layer`]) and, when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, trace export as `service`, its spans carrying context
/// as `propagation` says (see [`traces`]).
pub fn init(service: &'static str, propagation: traces::Propagation) -> anyhow::Result<Telemetry> {
    let traces = traces::install(service)?;
    tracing_subscriber::registry()
        .with(logs::layer())
        .with(traces.as_ref().map(|p| traces::layer(p, propagation)))
        .init();
    if traces.is_some() {
        tracing::info!(service, "exporting traces over OTLP");
    }
    Ok(Telemetry { traces })
}
