//! Frequency caps as one page's delivery obeys them (the rule is
//! `fanout_domain::frequency`, the counters `fanout_store::frequency_caps`).
//!
//! A page whose template category has a cap claims, in one store transaction, a slot for every
//! instance that passed the screen (preferences, suppressions, addresses), before any of them
//! is sent. An instance without a slot is suppressed with [`FREQUENCY_CAPPED`]. A slot counts
//! a delivery, so an instance that holds one but ends failed or suppressed (a permanent
//! provider answer, a render failure, an erasure mid-page) gives it back when its receipt is
//! written. One that stays pending (held, deferred, transient) keeps it: the next round finds
//! its claim and is granted again without counting twice.
//!
//! The caps themselves are read through [`CapCache`], one per worker: a category without a
//! cap costs one store read per [`CAP_TTL`] and tenant-category, not one per page.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fanout_contracts::DeliverPageInput;
use fanout_domain::frequency::FrequencyCap;
use fanout_domain::receipt::{DeliveryStatus, FREQUENCY_CAPPED, Receipt};
use fanout_domain::{InstanceId, TenantId, UserId};
use fanout_store::frequency_caps::SlotRequest;
use fanout_store::{Store, StoreError, now_ms};

/// How long a worker takes a category's cap (or its absence) as read: a changed cap reaches
/// running deliveries within this.
pub const CAP_TTL: Duration = Duration::from_secs(2);

/// The most (tenant, category) entries [`CapCache`] keeps; past it the cache starts over.
const MAX_CACHED_CAPS: usize = 10_000;

type Key = (TenantId, String);

/// The worker's cached view of the tenants' caps.
#[derive(Debug, Default)]
pub struct CapCache {
    entries: Mutex<HashMap<Key, (Instant, Option<FrequencyCap>)>>,
}

impl CapCache {
    /// The cap on `category` for `tenant_id`, read from the store at most once per
    /// [`CAP_TTL`].
    pub async fn get(
        &self,
        store: &Store,
        tenant_id: &TenantId,
        category: &str,
    ) -> Result<Option<FrequencyCap>, StoreError> {
        let key = (tenant_id.clone(), category.to_owned());
        if let Some((at, cap)) = self.lock().get(&key)
            && at.elapsed() < CAP_TTL
        {
            return Ok(*cap);
        }
        let cap = store
            .frequency_cap(tenant_id, category)
            .await?
            .map(|stored| stored.cap);
        let mut entries = self.lock();
        if entries.len() >= MAX_CACHED_CAPS {
            entries.clear();
        }
        entries.insert(key, (Instant::now(), cap));
        Ok(cap)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (Instant, Option<FrequencyCap>)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The slots of one page: which instances hold one and which were refused. Empty when the
/// category has no cap.
#[derive(Debug, Default)]
pub(super) struct PageSlots {
    granted: HashSet<InstanceId>,
    denied: HashSet<InstanceId>,
}

impl PageSlots {
    /// Claims a slot under `cap` for each of `eligible` (the instances the screen lets
    /// through), in one store transaction.
    pub(super) async fn claim(
        store: &Store,
        input: &DeliverPageInput,
        category: &str,
        cap: FrequencyCap,
        eligible: Vec<(InstanceId, UserId)>,
    ) -> Result<Self, StoreError> {
        if eligible.is_empty() {
            return Ok(Self::default());
        }
        let request = SlotRequest {
            tenant_id: &input.tenant_id,
            category,
            channel: input.channel,
            cap,
            now_ms: now_ms(),
        };
        let claimed = store.claim_frequency_slots(request, &eligible).await?;
        if !claimed.denied.is_empty() {
            tracing::info!(
                request_id = %input.request_id,
                channel = %input.channel,
                page = input.page,
                category,
                denied = claimed.denied.len(),
                granted = claimed.granted.len(),
                "frequency cap reached for some recipients"
            );
        }
        Ok(Self {
            granted: claimed.granted,
            denied: claimed.denied,
        })
    }

    /// Whether the instance was refused a slot.
    pub(super) fn denied(&self, id: &InstanceId) -> bool {
        self.denied.contains(id)
    }

    /// Gives back the slots of the instances in `receipts` that hold one but did not deliver
    /// (failed, or suppressed after the claim). A failure is logged, not fatal: the slot then
    /// stays used until its window ends, erring towards fewer messages.
    pub(super) async fn release_undelivered(&self, store: &Store, receipts: &[Receipt]) {
        if self.granted.is_empty() {
            return;
        }
        let undelivered: Vec<InstanceId> = receipts
            .iter()
            .filter(|r| {
                matches!(
                    r.status,
                    DeliveryStatus::Failed | DeliveryStatus::Suppressed
                )
            })
            .filter(|r| r.error_code.as_deref() != Some(FREQUENCY_CAPPED))
            .filter(|r| self.granted.contains(&r.instance_id))
            .map(|r| r.instance_id.clone())
            .collect();
        if undelivered.is_empty() {
            return;
        }
        if let Err(e) = store.release_frequency_slots(&undelivered).await {
            tracing::warn!(error = %e, instances = undelivered.len(), "releasing frequency-cap slots failed");
        }
    }
}
