//! Planning releases: a local-time request's, each recipient's instant from their zone (or the
//! tenant's default, or UTC), and a quiet-hours request's deferred deliveries, each recipient's
//! release bucket. Either way the instants are grouped and the recipients moved to pages so
//! each group is a run of pages the workflow releases on one timer.

use std::collections::{BTreeMap, HashMap};

use fanout_contracts::{PlanDeferredInput, PlanReleaseInput, ReleaseGroup, ReleasePlan};
use fanout_domain::timing::{self, FALLBACK_TIMEZONE};
use fanout_domain::{RequestId, TenantId, UnixMillis, UserId};
use fanout_store::Store;
use fanout_store::progress::ResolvedChunk;
use jiff::tz::TimeZone;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::{DeliveryConfig, heartbeat, store_error};

/// Pages renumbered between two heartbeats.
const REPAGE_BATCH: usize = 10;

/// Computes the groups and renumbers the snapshot. A retry computes the same groups from the
/// same zones (the snapshot's pages do not enter into it) and writes the same pages again.
pub async fn plan(
    store: &Store,
    ctx: &ActivityContext,
    input: &PlanReleaseInput,
    config: &DeliveryConfig,
) -> Result<ReleasePlan, ActivityError> {
    let default = tenant_zone(store, &input.tenant_id).await?;
    let members = store
        .audience_zones(&input.tenant_id, &input.request_id)
        .await
        .map_err(store_error)?;
    heartbeat(ctx, 0u64).await;

    // One computation per distinct zone name: 100,000 recipients are a few dozen zones.
    let mut per_zone: HashMap<Option<&str>, UnixMillis> = HashMap::new();
    let instants: Vec<UnixMillis> = members
        .iter()
        .map(|(_, name)| {
            *per_zone.entry(name.as_deref()).or_insert_with(|| {
                // An unknown name (profiles are checked loosely) gets the default zone.
                let zone = name
                    .as_deref()
                    .and_then(timing::zone)
                    .unwrap_or_else(|| default.clone());
                let at = input.local_time.release_at(&zone, input.accepted_at_ms);
                let speedup = UnixMillis::from(config.local_time_speedup.max(1));
                input.accepted_at_ms + (at - input.accepted_at_ms) / speedup
            })
        })
        .collect();
    let users = members.into_iter().map(|(user, _)| user).collect();
    let plan = write_plan(
        store,
        ctx,
        &input.request_id,
        (0, input.pages),
        config.page_size,
        users,
        &instants,
    )
    .await?;
    tracing::info!(
        request_id = %input.request_id,
        local_time = %input.local_time,
        groups = plan.groups.len(),
        pages = plan.pages,
        "local-time release planned"
    );
    Ok(plan)
}

/// Moves a quiet-hours request's deferred recipients to pages after the snapshot's `pages`,
/// grouped by release bucket (coarsened as local-time groups are, should there be more than
/// [`timing::MAX_RELEASE_GROUPS`]). Called once every page has run, when nothing else writes
/// the request's receipts, so a retry reads the same recipients and writes the same pages.
pub async fn plan_deferred(
    store: &Store,
    ctx: &ActivityContext,
    input: &PlanDeferredInput,
    page_size: u32,
) -> Result<ReleasePlan, ActivityError> {
    let deferred = store
        .deferred_releases(&input.request_id)
        .await
        .map_err(store_error)?;
    if deferred.is_empty() {
        return Ok(ReleasePlan {
            groups: Vec::new(),
            pages: input.pages,
        });
    }
    heartbeat(ctx, 0u64).await;
    let (users, instants): (Vec<UserId>, Vec<UnixMillis>) = deferred.into_iter().unzip();
    let plan = write_plan(
        store,
        ctx,
        &input.request_id,
        (input.pages, input.pages),
        page_size,
        users,
        &instants,
    )
    .await?;
    tracing::info!(
        request_id = %input.request_id,
        groups = plan.groups.len(),
        pages = plan.pages - input.pages,
        "quiet-hours releases planned"
    );
    Ok(plan)
}

/// The zone of the tenant's users without one: its default, else UTC.
pub(crate) async fn tenant_zone(
    store: &Store,
    tenant_id: &TenantId,
) -> Result<TimeZone, ActivityError> {
    Ok(store
        .default_timezone(tenant_id)
        .await
        .map_err(store_error)?
        .as_deref()
        .and_then(timing::zone)
        .or_else(|| timing::zone(FALLBACK_TIMEZONE))
        .unwrap_or(TimeZone::UTC))
}

/// Groups `users` by their `instants` (side by side; see [`timing::group_instants`]) into runs
/// of pages from `first_page` on, moves each recipient to their page, and counts the pages
/// past the snapshot's `resolved` as one more chunk of it (status reads the snapshot's size
/// from the chunks).
async fn write_plan(
    store: &Store,
    ctx: &ActivityContext,
    request_id: &RequestId,
    (first_page, resolved): (u32, u32),
    page_size: u32,
    users: Vec<UserId>,
    instants: &[UnixMillis],
) -> Result<ReleasePlan, ActivityError> {
    let page_size = page_size.max(1) as usize;
    let mut by_instant: BTreeMap<UnixMillis, Vec<UserId>> = BTreeMap::new();
    for (user, at) in users.into_iter().zip(timing::group_instants(instants)) {
        by_instant.entry(at).or_default().push(user);
    }
    let mut plan = ReleasePlan {
        groups: Vec::new(),
        pages: first_page,
    };
    let mut pages: Vec<(u32, Vec<UserId>)> = Vec::new();
    for (at_ms, users) in by_instant {
        let first_page = plan.pages;
        for chunk in users.chunks(page_size) {
            pages.push((plan.pages, chunk.to_vec()));
            plan.pages += 1;
        }
        plan.groups.push(ReleaseGroup {
            at_ms,
            first_page,
            pages: plan.pages - first_page,
            recipients: users.len() as u64,
        });
    }
    // A batch of pages per heartbeat: a few seconds of writes on either backend.
    for (done, batch) in pages.chunks(REPAGE_BATCH).enumerate() {
        store
            .repage_audience(request_id, batch)
            .await
            .map_err(store_error)?;
        heartbeat(ctx, ((done + 1) * REPAGE_BATCH) as u64).await;
    }
    // Groups rarely fill their last page, so there are usually more pages than resolution
    // wrote: status counts them as one more chunk of the snapshot.
    if plan.pages > resolved {
        store
            .record_resolved_chunk(
                request_id,
                &ResolvedChunk {
                    first_page: resolved,
                    pages: plan.pages - resolved,
                    recipients: 0,
                    excluded: 0,
                    done: true,
                },
            )
            .await
            .map_err(store_error)?;
    }
    Ok(plan)
}
