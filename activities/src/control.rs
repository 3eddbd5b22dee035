//! Operator controls as delivery sees them: pause, a per-request rate, and cancellation.
//!
//! The workflow writes a request's controls to the store; [`Pacer::admit`] reads them (cached
//! for [`CONTROL_TTL`]) before every send. Rates are enforced by one token bucket per request
//! shared by every activity of that request in this worker process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fanout_contracts::RequestControls;
use fanout_domain::RequestId;
use fanout_store::Store;
use temporalio_sdk::activities::ActivityContext;

/// How stale a send's view of the controls may be.
pub const CONTROL_TTL: Duration = Duration::from_millis(100);

/// What a send may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Send now.
    Go,
    /// The request (or this activity) was cancelled: send nothing more.
    Cancelled,
    /// The activity's deadline for starting sends passed while it waited (paused or paced):
    /// leave the send to the activity that takes over.
    Deferred,
}

/// The token buckets of the requests this worker is delivering, by request.
#[derive(Default)]
pub struct RateLimiters {
    buckets: Mutex<HashMap<RequestId, Arc<TokenBucket>>>,
}

impl RateLimiters {
    /// The request's bucket, created on first use.
    pub fn bucket(&self, request_id: &RequestId) -> Arc<TokenBucket> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.entry(request_id.clone()).or_default().clone()
    }

    /// Forgets a finished request's bucket.
    pub fn forget(&self, request_id: &RequestId) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.remove(request_id);
    }
}

/// A token bucket whose rate is given at each acquisition, so a rate change applies at once.
/// It holds at most a tenth of a second of tokens, so a new cap is not undone by a burst.
#[derive(Debug)]
pub struct TokenBucket {
    state: Mutex<(f64, Instant)>,
}

impl Default for TokenBucket {
    fn default() -> Self {
        Self {
            state: Mutex::new((1.0, Instant::now())),
        }
    }
}

impl TokenBucket {
    /// Takes a token if one is available at `rate` per second; otherwise says how long to wait.
    pub fn try_take(&self, rate: u32, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(rate.max(1));
        let capacity = (rate / 10.0).max(1.0);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = *state;
        let refilled =
            (tokens + now.saturating_duration_since(last).as_secs_f64() * rate).min(capacity);
        if refilled >= 1.0 {
            *state = (refilled - 1.0, now);
            Ok(())
        } else {
            *state = (refilled, now);
            Err(Duration::from_secs_f64((1.0 - refilled) / rate))
        }
    }
}

/// One activity's view of its request's controls.
pub struct Pacer<'a> {
    store: &'a Store,
    request_id: &'a RequestId,
    bucket: Arc<TokenBucket>,
    cached: tokio::sync::Mutex<Option<(Instant, RequestControls)>>,
}

impl<'a> Pacer<'a> {
    /// A pacer for `request_id`, sharing the request's bucket from `limiters`.
    pub fn new(store: &'a Store, limiters: &RateLimiters, request_id: &'a RequestId) -> Self {
        Self {
            store,
            request_id,
            bucket: limiters.bucket(request_id),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The controls, at most [`CONTROL_TTL`] old. If the store cannot be read the last known
    /// controls stand (or the defaults, before any read).
    pub async fn controls(&self) -> RequestControls {
        let mut cached = self.cached.lock().await;
        if let Some((at, controls)) = *cached
            && at.elapsed() < CONTROL_TTL
        {
            return controls;
        }
        let fresh = match self.store.get_controls(self.request_id).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, request_id = %self.request_id, "reading controls failed");
                cached.map(|(_, c)| c).unwrap_or_default()
            }
        };
        *cached = Some((Instant::now(), fresh));
        fresh
    }

    /// Waits until one send may go: not paused, within the rate. Returns
    /// [`Gate::Cancelled`] as soon as the request or the activity is cancelled, and
    /// [`Gate::Deferred`] once `deadline` has passed.
    pub async fn admit(&self, ctx: &ActivityContext, deadline: Option<Instant>) -> Gate {
        loop {
            if ctx.is_cancelled() {
                return Gate::Cancelled;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Gate::Deferred;
            }
            let controls = self.controls().await;
            if controls.cancelled {
                return Gate::Cancelled;
            }
            if controls.paused {
                tokio::time::sleep(CONTROL_TTL).await;
                continue;
            }
            let Some(rate) = controls.rate_per_second else {
                return Gate::Go;
            };
            match self.bucket.try_take(rate, Instant::now()) {
                Ok(()) => return Gate::Go,
                Err(wait) => tokio::time::sleep(wait.min(CONTROL_TTL)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_paces_to_the_rate() {
        let bucket = TokenBucket::default();
        let start = Instant::now();
        // At 10/s the bucket holds one token: the first take succeeds, the next waits 100 ms.
        assert!(bucket.try_take(10, start).is_ok());
        let wait = bucket.try_take(10, start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert!(
            bucket
                .try_take(10, start + Duration::from_millis(100))
                .is_ok()
        );
        // Over one simulated second at 50/s exactly 50 (+ the capacity) tokens are handed out.
        let bucket = TokenBucket::default();
        let taken = (0..=1000)
            .filter(|ms| {
                bucket
                    .try_take(50, start + Duration::from_millis(*ms))
                    .is_ok()
            })
            .count();
        assert!((50..=56).contains(&taken), "{taken}");
    }
}
