//! The shared buckets as this worker spends them: tokens leased from the store a tenth of a
//! second at a time and spent locally, one lease in flight per bucket (see [`super::Limits`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fanout_store::Store;
use fanout_telemetry::metrics;

use super::{MAX_NAP, QUOTA_TTL};

/// This worker's leases of the shared buckets, by bucket key.
#[derive(Default)]
pub(super) struct Buckets {
    leases: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Local>>>>,
}

/// This worker's leased tokens of one bucket.
#[derive(Debug, Default)]
struct Local {
    tokens: u32,
    unlimited_until: Option<Instant>,
    rechecking: bool,
}

impl Buckets {
    /// Takes one token of bucket `key`, leasing more from the store when the local ones run
    /// out. Returns false if cancelled first.
    pub(super) async fn take(
        &self,
        store: &Store,
        key: &str,
        ceiling: Option<u32>,
        cancelled: &impl Fn() -> bool,
    ) -> bool {
        let bucket = {
            let mut buckets = self.leases.lock().unwrap_or_else(|e| e.into_inner());
            buckets.entry(key.to_owned()).or_default().clone()
        };
        loop {
            // One lease in flight per bucket: the other sends wait here and spend what it got.
            let mut local = bucket.lock().await;
            if local.tokens > 0 {
                local.tokens -= 1;
                return true;
            }
            let now = Instant::now();
            match local.unlimited_until {
                Some(until) if until > now => return true,
                // Another send is re-checking an unlimited bucket: it stays unlimited until
                // the answer comes, so no send waits on the store for a bucket with no quota.
                Some(_) if local.rechecking => return true,
                _ => {}
            }
            if cancelled() {
                return false;
            }
            let recheck = local.unlimited_until.is_some();
            let held = if recheck {
                local.rechecking = true;
                drop(local);
                None
            } else {
                Some(local)
            };
            let leased = store.lease_tokens(key, ceiling).await;
            let mut local = match held {
                Some(local) => local,
                None => {
                    let mut relocked = bucket.lock().await;
                    relocked.rechecking = false;
                    relocked
                }
            };
            count_lease(key, &leased);
            match leased {
                Ok(None) => {
                    local.unlimited_until = Some(now + QUOTA_TTL);
                    return true;
                }
                Ok(Some(grant)) if grant.granted > 0 => {
                    local.unlimited_until = None;
                    local.tokens += grant.granted - 1;
                    return true;
                }
                Ok(Some(grant)) => {
                    // Keep the bucket while waiting: the sends behind wait for this lease.
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
}

/// Counts a lease of bucket `key`'s tokens from the store, by the bucket's scope.
fn count_lease(key: &str, leased: &fanout_store::Result<Option<fanout_store::limits::Grant>>) {
    if !metrics::recording() {
        return;
    }
    let scope = metrics::bucket_scope(key);
    let result = match leased {
        Ok(None) => "unlimited",
        Ok(Some(grant)) if grant.granted > 0 => {
            metrics::BUCKET_TOKENS
                .with_label_values(&[scope])
                .inc_by(u64::from(grant.granted));
            "granted"
        }
        Ok(Some(_)) => "empty",
        Err(_) => "error",
    };
    metrics::BUCKET_LEASES
        .with_label_values(&[scope, result])
        .inc();
}
