//! Planning a local-time request's release: each recipient's instant from their zone (or the
//! tenant's default, or UTC), grouped, and the snapshot renumbered so each group is a run of
//! pages the workflow releases on one timer.

use std::collections::{BTreeMap, HashMap};

use fanout_contracts::{PlanReleaseInput, ReleaseGroup, ReleasePlan};
use fanout_domain::timing::{self, FALLBACK_TIMEZONE};
use fanout_domain::{UnixMillis, UserId};
use fanout_store::Store;
use fanout_store::progress::ResolvedChunk;
use jiff::tz::TimeZone;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::{heartbeat, store_error};

/// Pages renumbered between two heartbeats.
const REPAGE_BATCH: usize = 10;

/// Computes the groups and renumbers the snapshot. A retry computes the same groups from the
/// same zones (the snapshot's pages do not enter into it) and writes the same pages again.
pub async fn plan(
    store: &Store,
    ctx: &ActivityContext,
    input: &PlanReleaseInput,
    page_size: u32,
) -> Result<ReleasePlan, ActivityError> {
    let page_size = page_size.max(1) as usize;
    let default = store
        .default_timezone(&input.tenant_id)
        .await
        .map_err(store_error)?
        .as_deref()
        .and_then(timing::zone)
        .or_else(|| timing::zone(FALLBACK_TIMEZONE))
        .unwrap_or(TimeZone::UTC);
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
                input.local_time.release_at(&zone, input.accepted_at_ms)
            })
        })
        .collect();
    let mut by_instant: BTreeMap<UnixMillis, Vec<UserId>> = BTreeMap::new();
    for ((user, _), at) in members.into_iter().zip(timing::group_instants(&instants)) {
        by_instant.entry(at).or_default().push(user);
    }

    let mut plan = ReleasePlan::default();
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
            .repage_audience(&input.request_id, batch)
            .await
            .map_err(store_error)?;
        heartbeat(ctx, ((done + 1) * REPAGE_BATCH) as u64).await;
    }
    // Groups rarely fill their last page, so there are usually more pages than resolution
    // wrote: status counts them as one more chunk of the snapshot.
    if plan.pages > input.pages {
        store
            .record_resolved_chunk(
                &input.request_id,
                &ResolvedChunk {
                    first_page: input.pages,
                    pages: plan.pages - input.pages,
                    recipients: 0,
                    excluded: 0,
                    done: true,
                },
            )
            .await
            .map_err(store_error)?;
    }
    tracing::info!(
        request_id = %input.request_id,
        local_time = %input.local_time,
        groups = plan.groups.len(),
        pages = plan.pages,
        "local-time release planned"
    );
    Ok(plan)
}
