//! The dispatcher: empties the store's outbox into the endpoints, one call per batch.
//!
//! Every `poll_ms` it asks the store which endpoints have events waiting. An endpoint's batch
//! goes once it is full (`batch_size` events) or has been quiet: no event added for
//! `batch_wait_ms`, or its oldest event has waited ten times that. A fan-out's events, arriving
//! steadily, so travel in full batches, and the last few follow within `batch_wait_ms`.
//!
//! A call is a `POST` of `{"events": [...]}`, signed ([`crate::sign`]), through a client that
//! follows no redirect, resolves only to allowed addresses ([`crate::destination`]) and gives
//! up after `timeout_ms`. A 2xx answer takes the batch. Anything else hands it back, and the
//! endpoint waits a random time up to `min(max_backoff, 1 s × 2^failures)` (full jitter), so a
//! recovering receiver is not met by every dispatcher at once; failing for
//! `disable_after_seconds` disables it. Each endpoint has one call in flight per process at a
//! time; several workers may run dispatchers, and the store's claims keep their batches apart.

use std::collections::HashSet;
use std::error::Error as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fanout_domain::TenantId;
use fanout_domain::webhook::WebhooksConfig;
use fanout_store::Store;
use fanout_store::webhooks::outbox::{Batch, DueEndpoint};
use rand::Rng;
use tokio::task::JoinHandle;

use crate::destination::{GuardedResolver, check_url};
use crate::sign::{message_id, signature_header};

/// How many endpoints one pass looks at.
const ENDPOINTS_PER_PASS: u32 = 200;

/// How much of a failing answer's body is kept in the endpoint's errors.
const KEPT_BODY_BYTES: usize = 200;

/// The `user-agent` of every call.
const USER_AGENT: &str = concat!("fanout-webhooks/", env!("CARGO_PKG_VERSION"));

/// Starts the dispatcher; abort the handle to stop it. `None` when this process does not
/// deliver webhooks (`webhooks.deliver = false`); an error when its HTTP client cannot be built.
pub fn spawn(
    store: Store,
    config: WebhooksConfig,
) -> Result<Option<JoinHandle<()>>, reqwest::Error> {
    if !config.deliver {
        return Ok(None);
    }
    let dispatcher = Arc::new(Dispatcher::new(store, config)?);
    Ok(Some(tokio::spawn(async move { dispatcher.run().await })))
}

struct Dispatcher {
    store: Store,
    config: WebhooksConfig,
    http: reqwest::Client,
    /// Endpoints with a call in flight from this process.
    busy: Mutex<HashSet<(TenantId, String)>>,
}

impl Dispatcher {
    fn new(store: Store, config: WebhooksConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(config.timeout_ms.max(1)))
            .dns_resolver(Arc::new(GuardedResolver::new(&config)))
            .user_agent(USER_AGENT)
            .build()?;
        Ok(Self {
            store,
            config,
            http,
            busy: Mutex::new(HashSet::new()),
        })
    }

    async fn run(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(Duration::from_millis(self.config.poll_ms.max(10)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = fanout_store::now_ms();
            let due = match self
                .store
                .due_webhook_endpoints(now, ENDPOINTS_PER_PASS)
                .await
            {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the webhook outbox failed");
                    continue;
                }
            };
            for endpoint in due.into_iter().filter(|e| self.ready(e, now)) {
                let key = (endpoint.tenant_id.clone(), endpoint.endpoint_id.clone());
                if !self.lock_busy().insert(key.clone()) {
                    continue;
                }
                let this = Arc::clone(&self);
                tokio::spawn(async move {
                    this.send(&key.0, &key.1).await;
                    this.lock_busy().remove(&key);
                });
            }
        }
    }

    /// Whether the endpoint's waiting events make a batch to send now.
    fn ready(&self, endpoint: &DueEndpoint, now: i64) -> bool {
        let wait = i64::try_from(self.config.batch_wait_ms).unwrap_or(i64::MAX);
        endpoint.waiting >= u64::from(self.batch_size())
            || now - endpoint.newest_ms >= wait
            || now - endpoint.oldest_ms >= wait.saturating_mul(10)
    }

    fn batch_size(&self) -> u32 {
        self.config.batch_size.clamp(1, WebhooksConfig::MAX_BATCH)
    }

    fn lock_busy(&self) -> std::sync::MutexGuard<'_, HashSet<(TenantId, String)>> {
        self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims and sends one batch of the endpoint's, and records how it went.
    async fn send(&self, tenant_id: &TenantId, endpoint_id: &str) {
        let now = fanout_store::now_ms();
        // Held past the call's own time limit, so no other dispatcher sends it meanwhile.
        let lease = i64::try_from(self.config.timeout_ms).unwrap_or(i64::MAX / 2) + 30_000;
        let batch = match self
            .store
            .claim_webhook_batch(tenant_id, endpoint_id, now, lease, self.batch_size())
            .await
        {
            Ok(Some(batch)) => batch,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, endpoint_id, "claiming webhook events failed");
                return;
            }
        };
        let outcome = self.call(&batch).await;
        let recorded = match &outcome {
            Ok(()) => {
                self.store
                    .webhook_batch_taken(tenant_id, endpoint_id, &batch.event_ids)
                    .await
            }
            Err(error) => {
                tracing::info!(%tenant_id, endpoint_id, error, "a webhook call failed");
                let max = i64::try_from(self.config.max_backoff_seconds)
                    .unwrap_or(i64::MAX / 1000)
                    .saturating_mul(1000);
                let disable_after = i64::try_from(self.config.disable_after_seconds)
                    .unwrap_or(i64::MAX / 1000)
                    .saturating_mul(1000);
                self.store
                    .webhook_batch_failed(
                        tenant_id,
                        endpoint_id,
                        &batch.event_ids,
                        error,
                        |failures| full_jitter(failures, max),
                        disable_after,
                    )
                    .await
                    .map(|disabled| {
                        if disabled {
                            tracing::warn!(%tenant_id, endpoint_id, "webhook endpoint disabled");
                        }
                    })
            }
        };
        if let Err(e) = recorded {
            // The claim expires and the events go again: at least once either way.
            tracing::warn!(error = %e, endpoint_id, "recording a webhook call failed");
        }
    }

    /// One signed `POST` of the batch; `Err` says what went wrong, for the endpoint's errors.
    async fn call(&self, batch: &Batch) -> Result<(), String> {
        let url = check_url(&batch.url, &self.config)
            .await
            .map_err(|e| e.to_string())?;
        let body = format!("{{\"events\":[{}]}}", batch.payloads.join(","));
        let id = message_id(&batch.event_ids);
        let timestamp = fanout_store::now_ms() / 1000;
        let signature = signature_header(&batch.secrets, &id, timestamp, body.as_bytes())
            .map_err(|e| e.to_string())?;
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_redirection() {
            let to = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .unwrap_or("nowhere")
                .to_owned();
            return Err(format!(
                "answered {status} redirecting to {to}: webhooks follow no redirects; register the final URL"
            ));
        }
        let text = response.text().await.unwrap_or_default();
        let mut end = text.len().min(KEPT_BODY_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Err(format!("answered {status}: {}", &text[..end]))
    }
}

/// A transport failure in a few words: the timeout, or the chain of causes.
fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A random wait in `0..=min(max_ms, 1 s × 2^failures)` milliseconds.
fn full_jitter(failures: u32, max_ms: i64) -> i64 {
    let ceiling = 1_000i64
        .saturating_mul(1i64 << failures.min(40))
        .min(max_ms.max(0));
    rand::rng().random_range(0..=ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_full_jitter() {
        for _ in 0..200 {
            assert!((0..=2_000).contains(&full_jitter(1, 3_600_000)));
            assert!((0..=5_000).contains(&full_jitter(30, 5_000)));
            assert_eq!(full_jitter(3, 0), 0);
        }
        let waits: HashSet<i64> = (0..50).map(|_| full_jitter(10, 3_600_000)).collect();
        assert!(waits.len() > 10, "full jitter spreads the waits: {waits:?}");
    }
}
