//! The Fanout worker: polls Fanout's Temporal task queue and runs the workflows
//! (`fanout-workflows`) and activities (`fanout-activities`), and empties the webhook outbox
//! (`fanout-webhooks`).
//!
//! [`run`] is the whole process behind a shutdown future, so tests start a worker in-process;
//! `main.rs` only loads [`Config`] and waits for a signal.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use fanout_activities::apns::{ApnsClient, ApnsConfig};
use fanout_activities::fcm::{FcmClient, FcmConfig};
use fanout_activities::{
    DeliveryConfig, EmailSender, FanoutActivities, LimitsConfig, PushSenders, SmtpConfig,
    SmtpFailoverConfig,
};
use fanout_domain::config::{StoreConfig, TemporalConfig};
use fanout_store::Store;
use fanout_telemetry::listener::{self, ExtraMetrics, ReadyCheck};
use fanout_workflows::{
    DigestWorkflow, FanoutPageWorkflow, NotificationWorkflow, RedriveWorkflow,
    ResolveAudienceWorkflow,
};
use serde::{Deserialize, Serialize};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, Url};
use temporalio_common::telemetry::metrics::CoreMeter;
use temporalio_common::telemetry::{
    PrometheusExporterOptions, TelemetryOptions, start_prometheus_metric_exporter,
};
use temporalio_sdk::runtime::{PollerBehavior, RuntimeOptions};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

/// The worker's configuration (see `fanout_runtime::config::load` for the layering).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Temporal frontend, namespace and task queue.
    pub temporal: TemporalConfig,
    /// The store.
    pub store: StoreConfig,
    /// The SMTP relay.
    pub smtp: SmtpConfig,
    /// The relays email fails over to when `smtp` fails transiently, in order.
    pub smtp_failover: SmtpFailoverConfig,
    /// Paging and concurrency of deliveries.
    pub delivery: DeliveryConfig,
    /// Apple Push Notification service (push to `apns` devices).
    pub apns: ApnsConfig,
    /// Firebase Cloud Messaging (push to `fcm` devices).
    pub fcm: FcmConfig,
    /// Rate limits shared with every other worker, and the providers' circuit breakers.
    pub limits: LimitsConfig,
    /// How many task polls the worker keeps open.
    pub pollers: PollersConfig,
    /// Where the worker serves `/metrics`, `/healthz` and `/readyz` (`FANOUT_METRICS_ADDR`,
    /// e.g. `127.0.0.1:9464`); unset, it serves nothing.
    pub metrics_addr: Option<String>,
    /// Metrics labels (`FANOUT_METRICS__TENANT_LABEL`).
    pub metrics: fanout_telemetry::metrics::MetricsConfig,
    /// Outbound webhooks: whether this worker delivers them, batching, retries, destinations
    /// (`FANOUT_WEBHOOKS__*`).
    pub webhooks: fanout_domain::webhook::WebhooksConfig,
}

/// Concurrent task polls (`FANOUT_POLLERS__WORKFLOW_TASKS`, ..). Every request's first workflow
/// task comes from the shared queue (later ones from the worker's sticky queue), and a direct
/// request has only that one: the SDK's default (5 polls, a fifth of them on the shared queue)
/// leaves one poll taking new requests. Measured on `make up` (release, 600 one-recipient
/// requests, 32 in flight): 54 completed/s with the SDK's default, 78/s with 16 polls half on
/// the shared queue, 80/s with 32 polls three quarters shared (the server is the limit there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PollersConfig {
    /// Workflow task polls, sticky and shared together (at least 2).
    pub workflow_tasks: usize,
    /// The percentage of `workflow_tasks` polling the shared queue (1-100).
    pub shared_percent: u8,
    /// Activity task polls.
    pub activity_tasks: usize,
}

impl Default for PollersConfig {
    fn default() -> Self {
        Self {
            workflow_tasks: 16,
            shared_percent: 50,
            activity_tasks: 8,
        }
    }
}

/// How long start-up keeps retrying a Temporal frontend that is not reachable yet.
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// Runs the worker until `shutdown` resolves, then drains in-flight tasks and returns.
///
/// The SDK's worker future is not `Send`: drive this from `main` or a dedicated runtime thread.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    fanout_telemetry::metrics::configure(&config.metrics);
    let store_config = StoreConfig {
        max_connections: Some(config.store.pool_size(StoreConfig::WORKER_POOL)),
        ..config.store.clone()
    };
    let store = Store::connect(&store_config)
        .await
        .context("connecting to the store")?;
    let polling = Arc::new(AtomicBool::new(false));
    // With a metrics listener, the Temporal SDK's own metrics (task slots, polls, sticky cache,
    // workflow task latency) join Fanout's on it: core serves them on a loopback port of its
    // own, which the listener reads and appends.
    let (core_meter, listener, core_exporter) = match &config.metrics_addr {
        Some(addr) => {
            let core = start_prometheus_metric_exporter(core_metrics_options())
                .context("starting temporal's metrics exporter")?;
            let listener =
                serve_metrics(addr, store.clone(), polling.clone(), core.bound_addr).await?;
            let meter: Arc<dyn CoreMeter> = core.meter;
            (Some(meter), Some(listener), Some(core.abort_handle))
        }
        None => (None, None, None),
    };
    let _listener = AbortOnDrop(listener);
    let _core_exporter = AbortOnDrop(core_exporter);
    let email = EmailSender::with_failover(&config.smtp, &config.smtp_failover)?;
    let push = PushSenders {
        apns: config
            .apns
            .enabled
            .then(|| ApnsClient::new(&config.apns))
            .transpose()
            .context("configuring apns")?,
        fcm: config
            .fcm
            .enabled
            .then(|| FcmClient::new(&config.fcm))
            .transpose()
            .context("configuring fcm")?,
    };
    tracing::info!(
        apns = push.apns.is_some(),
        fcm = push.fcm.is_some(),
        "push providers configured"
    );
    let webhooks = fanout_webhooks::spawn(store.clone(), config.webhooks.clone())
        .context("starting the webhook dispatcher")?;
    let _webhooks = AbortOnDrop(webhooks.map(|task| task.abort_handle()));
    let activities = FanoutActivities::new(store, email, push, config.delivery.clone())
        .with_limits(config.limits.clone());

    let telemetry = TelemetryOptions::builder()
        .maybe_metrics(core_meter)
        .build();
    let runtime_options = RuntimeOptions::builder()
        .telemetry_options(telemetry)
        .build()
        .map_err(|e| anyhow::anyhow!("temporal runtime options: {e}"))?;
    let runtime = Runtime::from_current_tokio(runtime_options)
        .map_err(|e| anyhow::anyhow!("creating the temporal runtime: {e}"))?;
    let client = connect(&config.temporal).await?;
    let options = WorkerOptions::new(config.temporal.task_queue.clone())
        .register_workflow::<NotificationWorkflow>()?
        .register_workflow::<ResolveAudienceWorkflow>()?
        .register_workflow::<FanoutPageWorkflow>()?
        .register_workflow::<RedriveWorkflow>()?
        .register_workflow::<DigestWorkflow>()?
        .register_activities(activities)
        .workflow_task_poller_behavior(PollerBehavior::SimpleMaximum(
            config.pollers.workflow_tasks.max(2),
        ))
        .nonsticky_to_sticky_poll_ratio(
            f32::from(config.pollers.shared_percent.clamp(1, 100)) / 100.0,
        )
        .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(
            config.pollers.activity_tasks.max(1),
        ))
        .build();
    let mut worker = Worker::new(&runtime, client, options)?;
    let stop = worker.shutdown_handle();
    polling.store(true, Ordering::Relaxed);
    tracing::info!(
        task_queue = %config.temporal.task_queue,
        temporal = %config.temporal.address,
        "worker started"
    );

    let running = worker.run();
    tokio::pin!(running);
    tokio::pin!(shutdown);
    tokio::select! {
        result = &mut running => return result.context("worker stopped unexpectedly"),
        () = &mut shutdown => {
            tracing::info!("shutting down worker");
            stop();
        }
    }
    running.await.context("worker shutdown")?;
    Ok(())
}

/// Aborts a background task (the metrics listener, core's exporter) when the worker returns,
/// however it returns.
struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// The Temporal SDK's Prometheus exporter: on a loopback port of its own, with Prometheus's
/// conventions (`_total` counters, durations in seconds, units in names).
fn core_metrics_options() -> PrometheusExporterOptions {
    PrometheusExporterOptions::builder()
        .socket_addr(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .counters_total_suffix(true)
        .use_seconds_for_durations(true)
        .unit_suffix(true)
        .build()
}

/// Binds `addr` and serves the worker's metrics (Fanout's, then the Temporal SDK's from
/// `core_metrics`) and health there: ready once the store answers and the worker polls
/// Temporal.
async fn serve_metrics(
    addr: &str,
    store: Store,
    polling: Arc<AtomicBool>,
    core_metrics: std::net::SocketAddr,
) -> anyhow::Result<tokio::task::AbortHandle> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding metrics_addr {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "worker metrics listening");
    let ready: ReadyCheck = Arc::new(move || {
        let store = store.clone();
        let polling = polling.load(Ordering::Relaxed);
        Box::pin(async move {
            store
                .ping()
                .await
                .map_err(|e| format!("store unreachable: {e}"))?;
            if polling {
                Ok(())
            } else {
                Err("not polling temporal yet".to_owned())
            }
        })
    });
    let http = reqwest::Client::new();
    let url = format!("http://{core_metrics}/metrics");
    let core: ExtraMetrics = Arc::new(move || {
        let (http, url) = (http.clone(), url.clone());
        Box::pin(async move {
            let text = match http.get(&url).send().await {
                Ok(response) => response.text().await,
                Err(e) => Err(e),
            };
            text.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "temporal's metrics could not be read");
                String::new()
            })
        })
    });
    let task = tokio::spawn(async move {
        if let Err(e) = listener::serve(listener, ready, Some(core), std::future::pending()).await {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(task.abort_handle())
}

/// Connects to the Temporal frontend, retrying while it starts.
async fn connect(config: &TemporalConfig) -> anyhow::Result<Client> {
    let url = Url::from_str(&config.address)
        .with_context(|| format!("temporal.address '{}' is not a URL", config.address))?;
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    loop {
        let options = ConnectionOptions::new(url.clone())
            .identity(format!("fanout-worker@{}", std::process::id()))
            .build();
        match Connection::connect(options).await {
            Ok(connection) => {
                // With traces on, the SDK's plugin goes to the worker too (Worker::new takes the
                // client's plugins): spans of workflow and activity runs, context from headers.
                let client_options = ClientOptions::new(config.namespace.clone())
                    .plugins(fanout_telemetry::traces::temporal_plugins())
                    .build();
                return Ok(Client::new(connection, client_options)?);
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "temporal not reachable yet, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).context("connecting to temporal"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use temporalio_common::WorkflowDefinition;

    use super::*;

    /// The API starts workflows, and the workflows schedule activities, by the names in
    /// `fanout-contracts`; the worker registers the implementations below under the names their
    /// macros give them. A mismatch would leave every request unstarted (or every activity
    /// unscheduled), and the names are in every recorded history.
    #[test]
    fn every_registered_workflow_and_activity_is_named_as_its_contract() {
        let notification = NotificationWorkflow::default();
        let workflows = [
            notification.name(),
            ResolveAudienceWorkflow.name(),
            FanoutPageWorkflow.name(),
            RedriveWorkflow.name(),
            DigestWorkflow.name(),
        ];
        assert_eq!(workflows, fanout_contracts::WORKFLOW_NAMES);
        let activities = [
            FanoutActivities::resolve_audience_chunk.name(),
            FanoutActivities::begin_redrive.name(),
            FanoutActivities::deliver_page.name(),
            FanoutActivities::deliver_direct.name(),
            FanoutActivities::finalize_request.name(),
            FanoutActivities::apply_controls.name(),
            FanoutActivities::apply_template_quota.name(),
            FanoutActivities::release_request.name(),
            FanoutActivities::plan_release.name(),
            FanoutActivities::plan_deferred.name(),
            FanoutActivities::close_digest.name(),
        ];
        assert_eq!(activities, fanout_contracts::ACTIVITY_NAMES);
    }

    #[test]
    fn limits_come_from_the_environment_and_default_to_none() {
        let defaults: Config = fanout_runtime::config::load(None, &HashMap::new()).unwrap();
        assert_eq!(defaults.limits, LimitsConfig::default());
        assert_eq!(defaults.limits.global_per_second, None);
        assert!(defaults.limits.breaker.enabled);

        let env: HashMap<String, String> = [
            ("FANOUT_LIMITS__GLOBAL_PER_SECOND", "500"),
            ("FANOUT_LIMITS__PROVIDERS__SMTP", "20"),
            ("FANOUT_LIMITS__BREAKER__OPEN_MS", "2000"),
            ("FANOUT_LIMITS__ADAPTIVE__ENABLED", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config: Config = fanout_runtime::config::load(None, &env).unwrap();
        assert_eq!(config.limits.global_per_second, Some(500));
        assert_eq!(config.limits.providers.smtp, Some(20));
        assert_eq!(config.limits.providers.apns, None);
        assert_eq!(config.limits.breaker.open_ms, 2_000);
        assert!(!config.limits.adaptive.enabled);
    }
}
