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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fanout_domain::{TemplateId, TenantId};
use fanout_store::Store;
use fanout_store::limits::{GLOBAL_KEY, provider_key, template_key, tenant_key};
use serde::{Deserialize, Serialize};

use crate::breaker::{Admission, Breaker, BreakerConfig, Health};
use crate::outcome::SendOutcome;

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
                || ["TooManyRequests", "QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED", "_429"]
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

/// What the breakers said about one send: the admissions to report back.
#[derive(Debug, Default)]
pub struct Passes(Vec<(Provider, Admission)>);

/// What [`Limits::admit`] decided.
#[derive(Debug)]
pub enum Verdict {
    /// Send, then [`Limits::report`] the outcome with these passes.
    Go(Passes),
    /// A provider's breaker is open: do not send, retry after this long.
    Held(Duration),
    /// Cancelled while waiting for tokens.
    Cancelled,
}

/// The worker's limits: local leases of the shared buckets, and the breakers.
pub struct Limits {
    store: Store,
    config: LimitsConfig,
    buckets: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Local>>>>,
    breakers: Mutex<HashMap<Provider, Breaker>>,
}

/// This worker's leased tokens of one bucket.
#[derive(Debug, Default)]
struct Local {
    tokens: u32,
    unlimited_until: Option<Instant>,
}

impl Limits {
    /// Limits backed by `store`.
    pub fn new(store: Store, config: LimitsConfig) -> Self {
        Self {
            store,
            config,
            buckets: Mutex::default(),
            breakers: Mutex::default(),
        }
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
    ) -> Verdict {
        let passes = match self.pass_breakers(providers) {
            Ok(passes) => passes,
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
            if !self.take(&key, ceiling, &cancelled).await {
                self.give_back(passes);
                return Verdict::Cancelled;
            }
        }
        Verdict::Go(passes)
    }

    fn pass_breakers(&self, providers: &[Provider]) -> Result<Passes, Duration> {
        if !self.config.breaker.enabled {
            // No admissions to report: the outcomes only feed the rate feedback.
            return Ok(Passes(
                providers.iter().map(|p| (*p, Admission::Pass)).collect(),
            ));
        }
        let now = Instant::now();
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        let mut passes = Vec::with_capacity(providers.len());
        for provider in providers {
            let breaker = breakers
                .entry(*provider)
                .or_insert_with(|| Breaker::new(self.config.breaker.clone(), now));
            match breaker.admit(now) {
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
        Ok(Passes(passes))
    }

    fn give_back(&self, passes: Passes) {
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        for (provider, admission) in passes.0 {
            if let Some(b) = breakers.get_mut(&provider) {
                b.release(admission);
            }
        }
    }

    /// Takes one token of bucket `key`, leasing more from the store when the local ones run
    /// out. Returns false if cancelled first.
    async fn take(&self, key: &str, ceiling: Option<u32>, cancelled: &impl Fn() -> bool) -> bool {
        let bucket = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            buckets.entry(key.to_owned()).or_default().clone()
        };
        // One lease in flight per bucket: the other sends wait here and spend what it got.
        let mut local = bucket.lock().await;
        loop {
            if local.tokens > 0 {
                local.tokens -= 1;
                return true;
            }
            let now = Instant::now();
            if local.unlimited_until.is_some_and(|until| until > now) {
                return true;
            }
            if cancelled() {
                return false;
            }
            match self.store.lease_tokens(key, ceiling).await {
                Ok(None) => {
                    local.unlimited_until = Some(now + QUOTA_TTL);
                    return true;
                }
                Ok(Some(grant)) if grant.granted > 0 => {
                    local.unlimited_until = None;
                    local.tokens = grant.granted - 1;
                    return true;
                }
                Ok(Some(grant)) => {
                    local.unlimited_until = None;
                    tokio::time::sleep(grant.wait.min(MAX_NAP)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, bucket = key, "leasing rate-limit tokens failed");
                    tokio::time::sleep(MAX_NAP).await;
                }
            }
        }
    }

    /// Feeds a send's outcome to the breakers it passed, and lowers the provider's shared rate
    /// when it throttled or failed.
    pub async fn report(&self, passes: Passes, outcome: &SendOutcome) {
        let health = health(outcome);
        {
            let now = Instant::now();
            let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
            for (provider, admission) in &passes.0 {
                if let Some(b) = breakers.get_mut(provider) {
                    b.record(*admission, health, now);
                }
            }
        }
        if health == Health::Up {
            return;
        }
        for (provider, _) in &passes.0 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_classified_for_breaker_and_feedback() {
        let accepted = SendOutcome::Accepted {
            provider_message_id: "x".into(),
        };
        assert_eq!(health(&accepted), Health::Up);
        assert_eq!(health(&SendOutcome::permanent("smtp_550", "no")), Health::Up);
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
