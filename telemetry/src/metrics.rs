//! Every metric Fanout exports, in one place: the names here are the contract that dashboards,
//! alerts and the README's metrics table refer to.
//!
//! Label values are bounded: routes are templates (`/v1/status/{request_id}`), never paths;
//! channels, outcomes, providers and priorities are fixed sets; error codes are the platform's
//! stable receipt codes. A user id or request id is never a label. The tenant is a label only
//! behind a switch ([`configure`], `FANOUT_METRICS__TENANT_LABEL`), for deployments with
//! few tenants; otherwise its value is `all`.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The registry every Fanout metric is registered in; [`render`] encodes it.
static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// Whether the tenant is a label value (see the module docs).
static TENANT_LABELS: AtomicBool = AtomicBool::new(false);

/// Whether this process records metrics (`FANOUT_METRICS__ENABLED`, on by default).
static RECORDING: AtomicBool = AtomicBool::new(true);

/// Latency buckets of calls: HTTP requests and provider calls, in seconds. 0.3 is the accept
/// objective's threshold (`deploy/prometheus`).
const CALL_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets of trigger-to-delivered latency, in seconds, dense around the 1.5 s objective.
const DELIVERY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

fn register<C: prometheus::core::Collector + Clone + 'static>(collector: C) -> C {
    REGISTRY
        .register(Box::new(collector.clone()))
        .unwrap_or_else(|e| panic!("metric registered twice: {e}"));
    collector
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter"))
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid gauge"))
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(HistogramVec::new(opts, labels).expect("a valid histogram"))
}

/// API: requests by route template, method and status.
pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "fanout_http_requests_total",
        "HTTP requests the API answered, by route template, method and status",
        &["route", "method", "status"],
    )
});

/// API: request latency by route template and method.
pub static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        "fanout_http_request_duration_seconds",
        "Time the API took to answer, by route template and method (streams: until the upgrade or first byte)",
        &["route", "method"],
        CALL_BUCKETS,
    )
});

/// API: notify calls by outcome ([`NotifyOutcome`]).
pub static NOTIFY: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "fanout_notify_total",
        "POST /v1/notify by outcome: accepted, duplicate, or refused_{quota,blast_radius,disabled,invalid,other}",
        &["tenant", "outcome"],
    )
});

/// API: open inbox streams (SSE and WebSocket) on this process.
pub static INBOX_STREAMS: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "fanout_inbox_streams_open",
            "Inbox streams (SSE and WebSocket) open on this API process",
        )
        .expect("a valid gauge"),
    )
});

/// Worker: settled and held deliveries by channel, outcome and receipt code.
pub static DELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "fanout_deliveries_total",
        "Delivery attempts as recorded in receipts, by channel, outcome (delivered, failed, suppressed, cancelled, held, retrying) and receipt code (empty when delivered)",
        &["tenant", "channel", "outcome", "code"],
    )
});

/// Worker: calls to providers by provider and result.
pub static PROVIDER_CALLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "fanout_provider_calls_total",
        "Calls to a provider (smtp, apns, fcm, inbox) by result: ok, transient (retried), permanent",
        &["provider", "result"],
    )
});

/// Worker: provider call latency.
pub static PROVIDER_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        "fanout_provider_call_duration_seconds",
        "Time one provider call took (an SMTP transaction, an APNs or FCM HTTP call, an inbox write batch), by provider",
        &["provider"],
        CALL_BUCKETS,
    )
});

/// Worker: from the API accepting a request to a delivery's receipt: the latency objective.
pub static TRIGGER_TO_DELIVERED: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        "fanout_trigger_to_delivered_seconds",
        "From the API accepting a request to a recipient's delivery being recorded, by channel and priority",
        &["channel", "priority"],
        DELIVERY_BUCKETS,
    )
});

/// The providers the provider gauges are labelled with.
pub const PROVIDERS: [&str; 3] = ["smtp", "apns", "fcm"];

/// The scopes of the shared rate-limit buckets.
pub const BUCKET_SCOPES: [&str; 4] = ["global", "provider", "tenant", "template"];

/// Worker: sends in flight to a provider from this worker now.
pub static PROVIDER_IN_FLIGHT: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "fanout_provider_in_flight",
        "Sends in flight from this worker to a provider now",
        &["provider"],
    )
});

/// Worker: the adaptive window: the most sends this worker lets be in flight to a provider.
pub static PROVIDER_WINDOW: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "fanout_provider_window",
        "The adaptive window: the most sends this worker lets be in flight to a provider (it narrows when the provider slows down or pushes back)",
        &["provider"],
    )
});

/// Worker: 1 while a provider's circuit breaker holds sends (open or probing), else 0.
pub static BREAKER_OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "fanout_breaker_open",
        "1 while this worker's circuit breaker for a provider holds sends (open, or half-open and probing), else 0",
        &["provider"],
    )
});

/// One provider's gauges, looked up once: a label lookup hashes the labels under a lock, and
/// these are set on every send (inside the worker's window lock).
pub struct ProviderGauges {
    /// Its `fanout_provider_in_flight`.
    pub in_flight: IntGauge,
    /// Its `fanout_provider_window`.
    pub window: IntGauge,
    /// Its `fanout_breaker_open`.
    pub breaker_open: IntGauge,
}

/// The gauges of `provider` (one of [`PROVIDERS`]; any other name shares `smtp`'s).
pub fn provider_gauges(provider: &str) -> &'static ProviderGauges {
    static GAUGES: LazyLock<[ProviderGauges; 3]> = LazyLock::new(|| {
        PROVIDERS.map(|p| ProviderGauges {
            in_flight: PROVIDER_IN_FLIGHT.with_label_values(&[p]),
            window: PROVIDER_WINDOW.with_label_values(&[p]),
            breaker_open: BREAKER_OPEN.with_label_values(&[p]),
        })
    });
    let index = PROVIDERS.iter().position(|p| *p == provider).unwrap_or(0);
    &GAUGES[index]
}

/// Worker: leases of tokens from the shared rate-limit buckets, by scope and result.
pub static BUCKET_LEASES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "fanout_bucket_leases_total",
        "Leases of tokens from the shared rate-limit buckets in the store, by scope (global, provider, tenant, template) and result: granted, empty (wait), unlimited (no quota set), error",
        &["scope", "result"],
    )
});

/// Worker: tokens leased from the shared buckets, by scope.
pub static BUCKET_TOKENS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "fanout_bucket_tokens_leased_total",
        "Tokens this worker leased from the shared rate-limit buckets, by scope",
        &["scope"],
    )
});

/// Worker: delivery activities (a page's channel, or a direct request) running now.
pub static PAGES_IN_FLIGHT: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "fanout_pages_in_flight",
        "Delivery activities running on this worker now (one page over one channel, or a direct request's channel), by channel",
        &["channel"],
    )
});

/// Worker: delivery rounds started, by channel and kind (`first` or `retry`).
pub static DELIVERY_ROUNDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "fanout_delivery_rounds_total",
        "Delivery rounds started, by channel and round: first, or retry (after a backoff, for what a provider failed transiently or a breaker held)",
        &["channel", "round"],
    )
});

/// Worker: how long a retry round's instances waited since the round before (the backoff).
pub static ROUND_WAIT: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        "fanout_delivery_round_wait_seconds",
        "Backoff waits: from a round leaving instances pending to the next round starting, by channel",
        &["channel"],
        DELIVERY_BUCKETS,
    )
});

/// Worker: renders that failed, by kind: `template` (the data does not fit) or `limit` (fuel,
/// output size or time).
pub static RENDER_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "fanout_render_failures_total",
        "Template renders that failed a recipient, by kind: template (the data does not fit) or limit (fuel, output or time)",
        &["kind"],
    )
});

/// What became of a `POST /v1/notify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// Accepted (202) and started.
    Accepted,
    /// A repeat of an accepted request (same dedupe key): answered with the first one.
    Duplicate,
    /// Over the tenant's ingest quota (429).
    RefusedQuota,
    /// Over the blast-radius guard (409).
    RefusedBlastRadius,
    /// A kill switch holds the template or every channel.
    RefusedDisabled,
    /// The request is malformed or names what does not exist (4xx).
    RefusedInvalid,
    /// Anything else (a store or Temporal failure).
    RefusedOther,
}

impl NotifyOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::RefusedQuota => "refused_quota",
            Self::RefusedBlastRadius => "refused_blast_radius",
            Self::RefusedDisabled => "refused_disabled",
            Self::RefusedInvalid => "refused_invalid",
            Self::RefusedOther => "refused_other",
        }
    }
}

/// Applies the process's metrics settings: tenant labels on or off, recording on or off.
pub fn configure(config: &MetricsConfig) {
    TENANT_LABELS.store(config.tenant_label, Ordering::Relaxed);
    RECORDING.store(config.enabled, Ordering::Relaxed);
}

/// Whether this process records metrics: with `FANOUT_METRICS__ENABLED=false` nothing is
/// counted or timed (the families are still served, at zero), which is how the benchmark
/// measures what metrics cost.
pub fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// The `tenant` label value for `tenant_id`: itself when tenant labels are on, else `all`.
pub fn tenant(tenant_id: &str) -> &str {
    if TENANT_LABELS.load(Ordering::Relaxed) {
        tenant_id
    } else {
        "all"
    }
}

/// Counts a notify's outcome.
pub fn notify(tenant_id: &str, outcome: NotifyOutcome) {
    if !recording() {
        return;
    }
    NOTIFY
        .with_label_values(&[tenant(tenant_id), outcome.as_str()])
        .inc();
}

/// Records one provider call.
pub fn provider_call(provider: &str, result: &str, took: Duration) {
    if !recording() {
        return;
    }
    PROVIDER_CALLS.with_label_values(&[provider, result]).inc();
    PROVIDER_DURATION
        .with_label_values(&[provider])
        .observe(took.as_secs_f64());
}

/// Settings of the metrics (`FANOUT_METRICS__*`), shared by the API and the worker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Label deliveries and notifies with the tenant id (off by default: the number of tenants
    /// is unbounded).
    pub tenant_label: bool,
    /// Record metrics at all (on by default; see [`recording`]).
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            tenant_label: false,
            enabled: true,
        }
    }
}

/// Registers every metric family, so a scrape lists each one from the start: the statics
/// register on first use, and the label sets that say "nothing happened" start at zero.
fn register_all() {
    LazyLock::force(&HTTP_REQUESTS);
    LazyLock::force(&HTTP_DURATION);
    LazyLock::force(&NOTIFY);
    LazyLock::force(&INBOX_STREAMS);
    LazyLock::force(&DELIVERIES);
    LazyLock::force(&PROVIDER_CALLS);
    LazyLock::force(&PROVIDER_DURATION);
    LazyLock::force(&TRIGGER_TO_DELIVERED);
    for kind in ["template", "limit"] {
        RENDER_FAILURES.with_label_values(&[kind]);
    }
    for provider in PROVIDERS {
        PROVIDER_IN_FLIGHT.with_label_values(&[provider]);
        PROVIDER_WINDOW.with_label_values(&[provider]);
        BREAKER_OPEN.with_label_values(&[provider]);
    }
    for scope in BUCKET_SCOPES {
        BUCKET_TOKENS.with_label_values(&[scope]);
        for result in ["granted", "empty", "unlimited", "error"] {
            BUCKET_LEASES.with_label_values(&[scope, result]);
        }
    }
    for channel in ["email", "in_app", "push"] {
        PAGES_IN_FLIGHT.with_label_values(&[channel]);
        ROUND_WAIT.with_label_values(&[channel]);
        for round in ["first", "retry"] {
            DELIVERY_ROUNDS.with_label_values(&[channel, round]);
        }
    }
}

/// The scope of a shared bucket's key (`global`, `provider:smtp`, `tenant:…`, `template:…`):
/// its kind, never the tenant or template it names.
pub fn bucket_scope(key: &str) -> &'static str {
    match key.split_once(':').map_or(key, |(scope, _)| scope) {
        "provider" => "provider",
        "tenant" => "tenant",
        "template" => "template",
        _ => "global",
    }
}

/// Every registered metric in Prometheus's text format (version 0.0.4).
pub fn render() -> String {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(register_all);
    let mut out = Vec::new();
    let families = REGISTRY.gather();
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        tracing::warn!(error = %e, "metrics could not be encoded");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_metrics_render_in_the_text_format() {
        notify("acme", NotifyOutcome::Accepted);
        provider_call("smtp", "ok", Duration::from_millis(12));
        let text = render();
        assert!(
            text.contains("fanout_notify_total{outcome=\"accepted\",tenant=\"all\"} ")
                || text.contains("fanout_notify_total{tenant=\"all\",outcome=\"accepted\"} "),
            "{text}"
        );
        assert!(text.contains("# TYPE fanout_provider_call_duration_seconds histogram"));
        assert!(text.contains(
            "fanout_provider_call_duration_seconds_bucket{provider=\"smtp\",le=\"0.025\"} 1"
        ));
    }
}
