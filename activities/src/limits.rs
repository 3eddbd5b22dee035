//! Delivery rate limits as each send obeys them: token buckets per template, per tenant,
//! global and per provider, shared by every worker through the store
//! (`fanout_store::limits`), plus a circuit breaker per provider ([`crate::breaker`]) and the
//! provider's feedback on the rate.
//!
//! Before a real send, [`Limits::admit`] asks each provider's breaker (an open one holds the
//! send: the instance stays pending) and then takes one token from each bucket that applies.
//! Tokens are leased from the store a tenth of a second at a time and spent locally, one lease
//! in flight per bucket per worker. Tenant and template quotas come from the API; a bucket
//! without a row means no quota, remembered for [`QUOTA_TTL`], so a new or changed quota
//! reaches every running delivery within a second. After the send, [`Limits::report`] feeds
//! the outcome to the breaker and, on throttling or provider failure, lowers the provider's
//! shared rate (see `Store::throttle_bucket`).
//!
//! Adaptive batching: the sends in flight to each provider from this worker (across all its
//! pages) are capped by a window ([`Window`]) that halves when the provider throttles or fails,
//! shrinks by a tenth when its latency climbs well above its usual, and grows back by about one
//! per window's worth of good answers, up to [`AdaptiveConfig::max_in_flight`]. Unthrottled,
//! it sits above what the pages send at once and changes nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fanout_domain::{TemplateId, TenantId};
use fanout_store::Store;
use fanout_store::limits::{GLOBAL_KEY, provider_key, template_key, tenant_key};
use fanout_telemetry::metrics;
use serde::{Deserialize, Serialize};

use crate::breaker::{Admission, Breaker, BreakerConfig, Health};
use crate::outcome::SendOutcome;

mod bucket;
mod window;

use bucket::Buckets;

pub use window::{AdaptiveConfig, Window};

/// How long a bucket found without a quota is taken to have none.
pub const QUOTA_TTL: Duration = Duration::from_millis(500);

/// The longest a waiting send sleeps before it looks at cancellation (and the store) again.
const MAX_NAP: Duration = Duration::from_millis(100);

/// The providers a send can go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// The SMTP relay.
    Smtp,
    /// Apple Push Notification service.
    Apns,
    /// Firebase Cloud Messaging.
    Fcm,
}

impl Provider {
    /// The provider's name in bucket keys, logs and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Smtp => "smtp",
            Self::Apns => "apns",
            Self::Fcm => "fcm",
        }
    }
}

/// Rates across every worker, per provider (tokens per second; `None`: no limit and no
/// provider feedback, which needs a ceiling to return to).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderRates {
    /// SMTP relay.
    pub smtp: Option<u32>,
    /// APNs.
    pub apns: Option<u32>,
    /// FCM.
    pub fcm: Option<u32>,
}

/// The worker's share of rate limiting (`FANOUT_LIMITS__...`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Deliveries per second across every worker and tenant; `None`: no global limit.
    pub global_per_second: Option<u32>,
    /// Per-provider rates across every worker.
    pub providers: ProviderRates,
    /// The providers' circuit breakers.
    pub breaker: BreakerConfig,
    /// Adaptive concurrency per provider.
    pub adaptive: AdaptiveConfig,
}

impl LimitsConfig {
    /// The same limits with the circuit breakers switched off: every send is attempted.
    pub fn without_breaker(mut self) -> Self {
        self.breaker.enabled = false;
        self
    }

    fn provider_rate(&self, provider: Provider) -> Option<u32> {
        match provider {
            Provider::Smtp => self.providers.smtp,
            Provider::Apns => self.providers.apns,
            Provider::Fcm => self.providers.fcm,
        }
    }
}

/// Classifies an outcome for the breaker and the rate feedback.
pub fn health(outcome: &SendOutcome) -> Health {
    match outcome {
        SendOutcome::Accepted { .. }
        | SendOutcome::Permanent { .. }
        | SendOutcome::InvalidAddress { .. } => Health::Up,
        SendOutcome::Transient {
            code, retry_after, ..
        } => {
            let throttled = retry_after.is_some()
                || [
                    "TooManyRequests",
                    "QUOTA_EXCEEDED",
                    "RESOURCE_EXHAUSTED",
                    "_429",
                ]
                .iter()
                .any(|marker| code.ends_with(marker));
            if throttled {
                Health::Throttled
            } else {
                Health::Down
            }
        }
    }
}

/// One admitted send: what the breakers said (the admissions to report back) and whether it
/// holds slots in the providers' windows. Dropped without [`Limits::report`] (the send was
/// abandoned), it gives its probes and slots back.
pub struct Passes<'a> {
    limits: &'a Limits,
    admissions: Vec<(Provider, Admission)>,
    slots: bool,
    settled: bool,
}

impl Drop for Passes<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.limits.leave_windows(self, None);
            self.limits.release_probes(&self.admissions);
        }
    }
}

/// What [`Limits::admit`] decided.
pub enum Verdict<'a> {
    /// Send, then [`Limits::report`] the outcome with these passes.
    Go(Passes<'a>),
    /// A provider's breaker is open: do not send, retry after this long.
    Held(Duration),
    /// Cancelled while waiting for tokens.
    Cancelled,
}

/// The worker's limits: local leases of the shared buckets, and the breakers.
pub struct Limits {
    store: Store,
    config: LimitsConfig,
    buckets: Buckets,
    breakers: Mutex<HashMap<Provider, Breaker>>,
    windows: Mutex<HashMap<Provider, Window>>,
    window_freed: tokio::sync::Notify,
}

impl Limits {
    /// Limits backed by `store`.
    pub fn new(store: Store, config: LimitsConfig) -> Self {
        Self {
            store,
            config,
            buckets: Buckets::default(),
            breakers: Mutex::default(),
            windows: Mutex::default(),
            window_freed: tokio::sync::Notify::new(),
        }
    }

    /// The window of sends in flight to `provider` now, if any send went to it yet.
    pub fn window_limit(&self, provider: Provider) -> Option<u32> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.get(&provider).map(Window::limit)
    }

    /// Whether `provider`'s breaker is holding sends.
    pub fn is_open(&self, provider: Provider) -> bool {
        let breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        breakers.get(&provider).is_some_and(Breaker::is_open)
    }

    /// Waits until one send through `providers` for this tenant's template may go: every
    /// breaker lets it through and every bucket gave a token. `cancelled` is polled while
    /// waiting.
    pub async fn admit(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        providers: &[Provider],
        cancelled: impl Fn() -> bool,
    ) -> Verdict<'_> {
        let mut passes = match self.pass_breakers(providers) {
            Ok(admissions) => Passes {
                limits: self,
                admissions,
                slots: false,
                settled: false,
            },
            Err(wait) => return Verdict::Held(wait),
        };
        let mut buckets = vec![
            (template_key(tenant_id, template_id), None),
            (tenant_key(tenant_id), None),
        ];
        if let Some(rate) = self.config.global_per_second {
            buckets.push((GLOBAL_KEY.to_owned(), Some(rate)));
        }
        for provider in providers {
            if let Some(rate) = self.config.provider_rate(*provider) {
                buckets.push((provider_key(provider.as_str()), Some(rate)));
            }
        }
        for (key, ceiling) in buckets {
            if !self
                .buckets
                .take(&self.store, &key, ceiling, &cancelled)
                .await
            {
                return Verdict::Cancelled;
            }
        }
        if self.config.adaptive.enabled && !providers.is_empty() {
            if !self.enter_windows(providers, &cancelled).await {
                return Verdict::Cancelled;
            }
            passes.slots = true;
        }
        Verdict::Go(passes)
    }

    /// Waits for a free slot in every provider's window and takes them together.
    async fn enter_windows(&self, providers: &[Provider], cancelled: &impl Fn() -> bool) -> bool {
        loop {
            let freed = self.window_freed.notified();
            {
                let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
                let all_free = providers.iter().all(|p| {
                    let window = windows
                        .entry(*p)
                        .or_insert_with(|| Window::new(&self.config.adaptive));
                    window.has_room()
                });
                if all_free {
                    for p in providers {
                        if let Some(w) = windows.get_mut(p) {
                            w.try_enter();
                            publish_window(*p, w);
                        }
                    }
                    return true;
                }
            }
            if cancelled() {
                return false;
            }
            // Woken when a slot frees; the timeout covers a wake-up that raced the check.
            let _ = tokio::time::timeout(MAX_NAP, freed).await;
        }
    }

    /// Frees the window slots of a send, adapting the windows to its answer if there was one.
    fn leave_windows(&self, passes: &Passes<'_>, answer: Option<(Health, Duration)>) {
        if !passes.slots {
            return;
        }
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        for (provider, _) in &passes.admissions {
            if let Some(w) = windows.get_mut(provider) {
                w.leave();
                if let Some((health, latency)) = answer {
                    w.observe(health, latency, now);
                }
                publish_window(*provider, w);
            }
        }
        drop(windows);
        self.window_freed.notify_waiters();
    }

    fn pass_breakers(
        &self,
        providers: &[Provider],
    ) -> Result<Vec<(Provider, Admission)>, Duration> {
        if !self.config.breaker.enabled {
            // Nothing to report to a breaker; the outcomes still feed rates and windows.
            return Ok(providers.iter().map(|p| (*p, Admission::Pass)).collect());
        }
        let now = Instant::now();
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        let mut passes = Vec::with_capacity(providers.len());
        for provider in providers {
            let breaker = breakers
                .entry(*provider)
                .or_insert_with(|| Breaker::new(self.config.breaker.clone(), now));
            let admission = breaker.admit(now);
            publish_breaker(*provider, breaker);
            match admission {
                Admission::Held(wait) => {
                    for (p, admission) in passes {
                        if let Some(b) = breakers.get_mut(&p) {
                            b.release(admission);
                        }
                    }
                    return Err(wait);
                }
                admission => passes.push((*provider, admission)),
            }
        }
        Ok(passes)
    }

    fn release_probes(&self, admissions: &[(Provider, Admission)]) {
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        for (provider, admission) in admissions {
            if let Some(b) = breakers.get_mut(provider) {
                b.release(*admission);
            }
        }
    }

    /// Feeds a send's outcome (which took `latency`) to the breakers and windows it passed,
    /// and lowers the provider's shared rate when it throttled or failed.
    pub async fn report(&self, mut passes: Passes<'_>, outcome: &SendOutcome, latency: Duration) {
        passes.settled = true;
        let health = health(outcome);
        self.leave_windows(&passes, Some((health, latency)));
        {
            let now = Instant::now();
            let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
            for (provider, admission) in &passes.admissions {
                if let Some(b) = breakers.get_mut(provider) {
                    b.record(*admission, health, now);
                    publish_breaker(*provider, b);
                }
            }
        }
        if health == Health::Up {
            return;
        }
        for (provider, _) in &passes.admissions {
            if self.config.provider_rate(*provider).is_none() {
                continue;
            }
            match self
                .store
                .throttle_bucket(&provider_key(provider.as_str()))
                .await
            {
                Ok(Some(rate)) => tracing::info!(
                    provider = provider.as_str(),
                    rate_per_second = rate,
                    "provider pushed back, rate lowered"
                ),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "lowering a provider rate failed"),
            }
        }
    }
}

/// Shows a provider's window and sends in flight in the metrics.
fn publish_window(provider: Provider, window: &Window) {
    if metrics::recording() {
        let gauges = metrics::provider_gauges(provider.as_str());
        gauges.in_flight.set(i64::from(window.in_flight()));
        gauges.window.set(i64::from(window.limit()));
    }
}

/// Shows whether a provider's breaker holds sends in the metrics.
fn publish_breaker(provider: Provider, breaker: &Breaker) {
    if metrics::recording() {
        metrics::provider_gauges(provider.as_str())
            .breaker_open
            .set(i64::from(breaker.is_open()));
    }
}
#[cfg(test)]
mod tests {
    use fanout_domain::config::StoreConfig;

    use super::*;

    async fn store() -> Store {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("fanout-limits-test-{}-{nanos}", std::process::id()));
        Store::connect(&StoreConfig {
            url: format!("sqlite://{}/db.sqlite?mode=rwc", dir.display()),
            max_connections: Some(4),
        })
        .await
        .unwrap()
    }

    fn ids() -> (TenantId, TemplateId) {
        (
            TenantId::parse("t").unwrap(),
            TemplateId::parse("welcome").unwrap(),
        )
    }

    fn accepted() -> SendOutcome {
        SendOutcome::Accepted {
            provider_message_id: "x".into(),
        }
    }

    #[tokio::test]
    async fn provider_push_back_lowers_the_shared_rate_and_an_open_breaker_holds() {
        let store = store().await;
        let config = LimitsConfig {
            providers: ProviderRates {
                smtp: Some(100),
                ..ProviderRates::default()
            },
            breaker: BreakerConfig {
                min_requests: 2,
                ..BreakerConfig::default()
            },
            ..LimitsConfig::default()
        };
        let limits = Limits::new(store.clone(), config);
        let (tenant, template) = ids();
        let key = provider_key("smtp");

        let Verdict::Go(passes) = limits
            .admit(&tenant, &template, &[Provider::Smtp], || false)
            .await
        else {
            panic!("a fresh provider admits");
        };
        let throttled = SendOutcome::Transient {
            code: "smtp_451".into(),
            message: "later".into(),
            retry_after: None,
        };
        limits
            .report(passes, &throttled, Duration::from_millis(5))
            .await;
        let bucket = store.bucket(&key).await.unwrap().unwrap();
        assert_eq!(bucket.rate_milli, 50_000, "the shared rate halved");
        assert_eq!(limits.window_limit(Provider::Smtp), Some(256));

        let Verdict::Go(passes) = limits
            .admit(&tenant, &template, &[Provider::Smtp], || false)
            .await
        else {
            panic!("one failure does not open the breaker");
        };
        limits
            .report(passes, &throttled, Duration::from_millis(5))
            .await;
        assert!(limits.is_open(Provider::Smtp));
        assert!(matches!(
            limits
                .admit(&tenant, &template, &[Provider::Smtp], || false)
                .await,
            Verdict::Held(_)
        ));
        // In-app sends go through no provider and are not held.
        assert!(matches!(
            limits.admit(&tenant, &template, &[], || false).await,
            Verdict::Go(_)
        ));
    }

    #[tokio::test]
    async fn quotas_pace_sends_and_abandoned_sends_give_their_slots_back() {
        let store = store().await;
        let (tenant, template) = ids();
        store
            .set_quota(
                &tenant,
                &fanout_store::limits::template_key(&tenant, &template),
                20,
            )
            .await
            .unwrap();
        let limits = Limits::new(
            store,
            LimitsConfig {
                adaptive: AdaptiveConfig {
                    max_in_flight: 1,
                    ..AdaptiveConfig::default()
                },
                ..LimitsConfig::default()
            },
        );
        // 20/s with two tokens on hand: ten sends take about 0.4 s.
        let started = Instant::now();
        for _ in 0..10 {
            let Verdict::Go(passes) = limits
                .admit(&tenant, &template, &[Provider::Fcm], || false)
                .await
            else {
                panic!("admitted");
            };
            limits
                .report(passes, &accepted(), Duration::from_millis(1))
                .await;
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(350) && took < Duration::from_secs(2),
            "{took:?}"
        );
        // A send dropped mid-flight frees its slot (the window holds one).
        let Verdict::Go(passes) = limits
            .admit(&tenant, &template, &[Provider::Fcm], || false)
            .await
        else {
            panic!("admitted");
        };
        drop(passes);
        let again = tokio::time::timeout(
            Duration::from_secs(1),
            limits.admit(&tenant, &template, &[Provider::Fcm], || false),
        )
        .await
        .expect("the slot was given back");
        assert!(matches!(again, Verdict::Go(_)));
        // Waiting for a slot stops when the send is cancelled.
        let blocked = limits
            .admit(&tenant, &template, &[Provider::Fcm], || true)
            .await;
        assert!(matches!(blocked, Verdict::Cancelled));
    }

    #[test]
    fn outcomes_are_classified_for_breaker_and_feedback() {
        let accepted = SendOutcome::Accepted {
            provider_message_id: "x".into(),
        };
        assert_eq!(health(&accepted), Health::Up);
        assert_eq!(
            health(&SendOutcome::permanent("smtp_550", "no")),
            Health::Up
        );
        assert_eq!(
            health(&SendOutcome::transient("smtp_451", "later")),
            Health::Down
        );
        assert_eq!(
            health(&SendOutcome::transient("fcm_UNAVAILABLE", "503")),
            Health::Down
        );
        assert_eq!(
            health(&SendOutcome::transient("apns_TooManyRequests", "429")),
            Health::Throttled
        );
        let asked = SendOutcome::Transient {
            code: "fcm_QUOTA_EXCEEDED".into(),
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(1)),
        };
        assert_eq!(health(&asked), Health::Throttled);
    }
}
