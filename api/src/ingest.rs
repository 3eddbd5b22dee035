//! The per-tenant ingest quota on `POST /v1/notify`.
//!
//! Each tenant has a token bucket: `per_second` tokens flow in, at most `burst` are kept, and
//! every notify request takes one. The [`Admitted`] extractor takes the token before the
//! handler runs, so a refused request has recorded and started nothing, and the caller can
//! retry it as it was (same dedupe key) once `Retry-After` has passed.
//!
//! The buckets live in this process: N API replicas admit up to N times a tenant's rate. That
//! keeps a store write off every trigger's path (SQLite has one writer, and the delivery side
//! already competes for it); a shared limiter (Redis, or a row per tenant in PostgreSQL) is the
//! way to an exact global rate if replicas multiply. A tenant's settings are read from the
//! store at most once per [`IngestConfig::settings_ttl_ms`], so an operator's change applies
//! within that time without a read per request (at once when the change is made through this
//! process, which forgets its cached copy). The handler gets the same read through
//! [`Admitted::settings`] (the start's fairness weight is one of them), and other routes
//! through [`IngestLimiter::settings`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fanout_domain::TenantId;
use fanout_store::Store;
use fanout_store::tenants::TenantSettings;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
pub use crate::bucket::Quota;
use crate::bucket::{Buckets, retry_after_seconds};
use crate::cache::TtlCache;
use crate::error::{ApiError, ErrorCode};

/// The platform's default quota, which a tenant's settings override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestConfig {
    /// Sustained notify requests per second per tenant (and API process).
    pub per_second: u32,
    /// Notify requests a tenant may send at once before the sustained rate applies.
    pub burst: u32,
    /// How long a tenant's settings are reused before being read again.
    pub settings_ttl_ms: u64,
    /// Workflow starts one tenant may have waiting on Temporal at once, per API process; more
    /// wait their turn here (0: no limit). Temporal's priority and fairness order queued
    /// *tasks*; the start itself is first come, first served at the server, so without this a
    /// tenant's burst queues every other tenant's start behind all of its own.
    pub starts_in_flight: usize,
    /// Sustained dry runs (`?dry_run=true`) per second per tenant, a quota of their own.
    pub dry_run_per_second: u32,
    /// Dry runs a tenant may send at once.
    pub dry_run_burst: u32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            per_second: 50,
            burst: 100,
            settings_ttl_ms: 1_000,
            starts_in_flight: 16,
            dry_run_per_second: 2,
            dry_run_burst: 10,
        }
    }
}

impl IngestConfig {
    /// The quota for a tenant with these settings.
    pub fn quota(&self, settings: &TenantSettings) -> Quota {
        Quota {
            per_second: settings.ingest_per_second.unwrap_or(self.per_second).max(1),
            burst: settings.ingest_burst.unwrap_or(self.burst).max(1),
        }
    }
}

/// The most tenants whose settings are cached at once (see [`TtlCache`]).
const SETTINGS_CAPACITY: usize = 10_000;

/// The process's ingest buckets, one per tenant, and its cache of tenants' settings. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct IngestLimiter {
    store: Store,
    config: IngestConfig,
    settings: TtlCache<TenantId, TenantSettings>,
    buckets: Buckets<(TenantId, Lane)>,
    starts: Arc<Mutex<HashMap<TenantId, Arc<Semaphore>>>>,
}

/// A notify request refused by the quota: 429 with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    /// The quota that refused it.
    pub quota: Quota,
    /// Which of the tenant's quotas.
    pub lane: Lane,
    /// Whole seconds until a retry can succeed (at least 1).
    pub retry_after_seconds: u64,
}

impl IngestLimiter {
    /// Buckets with `config`'s defaults, reading tenant overrides from `store`.
    pub fn new(store: Store, config: IngestConfig) -> Self {
        Self {
            settings: TtlCache::new(
                Duration::from_millis(config.settings_ttl_ms),
                SETTINGS_CAPACITY,
            ),
            store,
            config,
            buckets: Buckets::default(),
            starts: Arc::default(),
        }
    }

    /// The platform defaults.
    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// The tenant's settings, at most [`IngestConfig::settings_ttl_ms`] old.
    pub async fn settings(&self, tenant: &TenantId) -> Result<TenantSettings, ApiError> {
        Ok(self
            .settings
            .get_or_load(tenant, || self.store.tenant_settings(tenant))
            .await?)
    }

    /// Waits for the tenant's turn to start a workflow (see [`IngestConfig::starts_in_flight`]);
    /// the start may go ahead while the permit is held. `None` when there is no limit.
    pub async fn start_turn(&self, tenant: &TenantId) -> Option<OwnedSemaphorePermit> {
        let limit = self.config.starts_in_flight;
        if limit == 0 {
            return None;
        }
        let turns = {
            let mut starts = self.starts.lock().unwrap_or_else(PoisonError::into_inner);
            // Forget tenants with nothing in flight, so the map holds only the busy ones.
            if starts.len() > 1_000 {
                starts.retain(|_, s| s.available_permits() < limit);
            }
            starts
                .entry(tenant.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(limit)))
                .clone()
        };
        // The semaphore is never closed.
        turns.acquire_owned().await.ok()
    }

    /// Drops the tenant's cached settings: they were just changed.
    pub fn forget_settings(&self, tenant: &TenantId) {
        self.settings.invalidate(tenant);
    }

    /// Takes one token from the tenant's bucket for `lane`; on success, returns the settings
    /// the quota came from.
    pub async fn admit(
        &self,
        tenant: &TenantId,
        lane: Lane,
    ) -> Result<Result<TenantSettings, Throttled>, ApiError> {
        let settings = self.settings(tenant).await?;
        let quota = match lane {
            Lane::Notify => self.config.quota(&settings),
            Lane::DryRun => Quota {
                per_second: self.config.dry_run_per_second.max(1),
                burst: self.config.dry_run_burst.max(1),
            },
        };
        Ok(self
            .buckets
            .take(&(tenant.clone(), lane), quota)
            .map(|()| settings)
            .map_err(|wait| Throttled {
                quota,
                lane,
                retry_after_seconds: retry_after_seconds(wait),
            }))
    }
}

/// Which of a tenant's buckets a notify takes from: dry runs cost full-audience aggregates
/// and start nothing, so they have their own, lower quota instead of sharing the real one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// `POST /v1/notify`.
    Notify,
    /// `POST /v1/notify?dry_run=true`.
    DryRun,
}

/// `?dry_run=` as the quota reads it, before the handler parses the query.
#[derive(Deserialize)]
struct DryRunQuery {
    #[serde(default)]
    dry_run: bool,
}

/// Whether a notify's URI asks for a dry run (read before the handler parses the query: by
/// the quota, which gives dry runs a lane of their own, and by the notify metrics).
pub fn is_dry_run(uri: &axum::http::Uri) -> bool {
    Query::<DryRunQuery>::try_from_uri(uri).is_ok_and(|q| q.dry_run)
}

/// Proof that the caller's notify request is within its tenant's quota. Take it after
/// [`Caller`] and before the body, so nothing is recorded for a refused request.
#[derive(Debug)]
pub struct Admitted {
    settings: TenantSettings,
}

impl Admitted {
    /// The tenant's settings as the quota read them (at most
    /// [`IngestConfig::settings_ttl_ms`] old), so the handler needs no read of its own.
    pub fn settings(&self) -> &TenantSettings {
        &self.settings
    }
}

/// Why a request was not admitted.
#[derive(Debug)]
pub enum NotAdmitted {
    /// Over quota.
    Throttled(Throttled),
    /// Not authenticated, or the quota could not be read.
    Error(ApiError),
}

impl From<ApiError> for NotAdmitted {
    fn from(e: ApiError) -> Self {
        Self::Error(e)
    }
}

impl FromRequestParts<AppState> for Admitted {
    type Rejection = NotAdmitted;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, NotAdmitted> {
        let Caller(tenant) = Caller::from_request_parts(parts, state).await?;
        let lane = if is_dry_run(&parts.uri) {
            Lane::DryRun
        } else {
            Lane::Notify
        };
        match state.ingest.admit(&tenant, lane).await? {
            Ok(settings) => Ok(Admitted { settings }),
            Err(throttled) => {
                // Debug, not info: a flooding tenant would otherwise flood the log too.
                tracing::debug!(
                    tenant_id = %tenant,
                    retry_after_seconds = throttled.retry_after_seconds,
                    "notify over ingest quota"
                );
                Err(NotAdmitted::Throttled(throttled))
            }
        }
    }
}

/// The body of a notify refused by the quota (429, with `Retry-After`).
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimited {
    /// What was refused and when to retry.
    pub error: RateLimitedDetail,
}

/// The inside of a [`RateLimited`].
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitedDetail {
    /// `rate_limited`.
    pub code: ErrorCode,
    /// The quota and when to retry, in words.
    pub message: String,
    /// The sustained rate of the quota, per second.
    pub rate_per_second: u32,
    /// Requests the quota admits at once.
    pub burst: u32,
    /// Whole seconds until a retry can be admitted (as `Retry-After`).
    #[schema(minimum = 1)]
    pub retry_after_seconds: u64,
}

impl IntoResponse for NotAdmitted {
    fn into_response(self) -> Response {
        let t = match self {
            NotAdmitted::Error(e) => return e.into_response(),
            NotAdmitted::Throttled(t) => t,
        };
        let body = RateLimited {
            error: RateLimitedDetail {
                code: ErrorCode::RateLimited,
                message: format!(
                    "over this tenant's {} of {} per second (burst {}); nothing was accepted: retry in {} s",
                    match t.lane {
                        Lane::Notify => "ingest quota of notify requests",
                        Lane::DryRun => "dry-run quota (dry runs have their own)",
                    },
                    t.quota.per_second,
                    t.quota.burst,
                    t.retry_after_seconds
                ),
                rate_per_second: t.quota.per_second,
                burst: t.quota.burst,
                retry_after_seconds: t.retry_after_seconds,
            },
        };
        let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(t.retry_after_seconds),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(per_second: u32, burst: u32) -> Quota {
        Quota { per_second, burst }
    }

    async fn with_starts(starts_in_flight: usize) -> IngestLimiter {
        let dir = std::env::temp_dir().join(format!("fanout-ingest-{}", uuid::Uuid::new_v4()));
        let store = Store::connect(&fanout_domain::config::StoreConfig {
            url: format!("sqlite://{}/db.sqlite?mode=rwc", dir.display()),
            max_connections: Some(1),
        })
        .await
        .unwrap();
        IngestLimiter::new(
            store,
            IngestConfig {
                starts_in_flight,
                ..IngestConfig::default()
            },
        )
    }

    #[tokio::test]
    async fn a_tenant_with_its_starts_in_flight_waits_and_others_do_not() {
        use futures::FutureExt;
        let limiter = with_starts(2).await;
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        let first = limiter.start_turn(&a).await;
        let second = limiter.start_turn(&a).await;
        assert!(first.is_some() && second.is_some());
        // A's third start waits for one of its own to finish; B's goes ahead.
        let mut third = Box::pin(limiter.start_turn(&a));
        assert!((&mut third).now_or_never().is_none());
        assert!(limiter.start_turn(&b).now_or_never().flatten().is_some());
        drop(first);
        assert!(third.now_or_never().flatten().is_some());
        // 0 is no limit.
        assert!(with_starts(0).await.start_turn(&a).await.is_none());
    }

    #[test]
    fn settings_override_the_defaults_and_never_reach_zero() {
        let config = IngestConfig::default();
        assert_eq!(config.quota(&TenantSettings::default()), quota(50, 100));
        let own = TenantSettings {
            ingest_per_second: Some(0),
            ingest_burst: Some(7),
            ..TenantSettings::default()
        };
        assert_eq!(config.quota(&own), quota(1, 7));
    }
}
