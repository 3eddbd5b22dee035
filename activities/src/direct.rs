//! The direct path: a small explicit audience resolved and delivered in one activity call,
//! which the request's workflow runs as a local activity (see `fanout_workflows::direct`).
//!
//! It is the tree's work without the tree: [`audience::resolve_chunk`] writes the same snapshot
//! pages, [`delivery::deliver_page`] delivers each page on each channel (channels concurrently,
//! pages one after another) with every guarantee it gives the tree (receipts per instance,
//! resumable after a crash, preferences, suppressions, limits, breakers, kill switches, pause
//! and cancel), and [`finalize::finalize`] records the outcome once nothing is pending, so a
//! request that succeeds first time needs no other activity.

use std::time::{Duration, Instant};

use fanout_contracts::{
    AudienceSnapshot, DeliverDirectInput, DeliverPageInput, DirectReport, FinalizeInput,
    ResolveChunkInput,
};
use fanout_domain::receipt::{Progress, RequestState};
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::delivery::quiet::earliest;
use crate::{FanoutActivities, audience, finalize};

/// How long a local run of the direct path keeps starting sends. A local activity cannot be
/// stopped from outside once it runs (its timeout only abandons it), so it stops itself: past
/// this, sends still waiting (paused, paced, held up by a slow provider) are left for the normal
/// activity the workflow starts next, and the ones already started finish first. Well inside
/// the 8 s after which the SDK would have to extend the open workflow task.
pub const LOCAL_SEND_WINDOW: Duration = Duration::from_secs(3);

/// Resolves the audience (first round only), delivers every page on every channel, and
/// records the outcome when nothing is left pending.
pub async fn deliver_direct(
    activities: &FanoutActivities,
    ctx: &ActivityContext,
    input: &DeliverDirectInput,
) -> Result<DirectReport, ActivityError> {
    let request = &input.request;
    let deadline = ctx
        .info()
        .is_local
        .then(|| Instant::now() + LOCAL_SEND_WINDOW);
    let snapshot = match input.snapshot {
        Some(snapshot) => snapshot,
        None => resolve(activities, ctx, input).await?,
    };
    let mut report = DirectReport {
        snapshot,
        progress: Progress::for_snapshot(
            snapshot.recipients,
            snapshot.excluded,
            snapshot.pages,
            &request.channels,
        ),
        pending: 0,
        held: 0,
        deferred: 0,
        settled_this_round: 0,
        retry_after_ms: None,
        finalized: None,
        quiet: 0,
        quiet_until_ms: None,
    };
    for page in 0..snapshot.pages {
        let deliveries = request.channels.iter().map(|channel| {
            let page_input = DeliverPageInput {
                request_id: request.request_id.clone(),
                tenant_id: request.tenant_id.clone(),
                template_id: request.template_id.clone(),
                channel: *channel,
                page,
                data: request.data.clone(),
                priority: request.priority,
                ttl_seconds: request.ttl_seconds,
                round: input.round,
                final_round: input.final_round,
                quiet_hours: request.quiet_hours,
                release_through_ms: input.release_through_ms,
                release_only: false,
            };
            async move { activities.deliver(ctx, &page_input, deadline).await }
        });
        let mut page_settled = true;
        for delivered in futures::future::join_all(deliveries).await {
            let page_report = delivered?;
            let counts = report
                .progress
                .channels
                .entry(page_report.channel)
                .or_default();
            counts.absorb(
                page_report.delivered,
                page_report.failed,
                page_report.suppressed,
                0,
            );
            // Still pending until they go out; this many of them wait for quiet hours to end.
            counts.deferred += page_report.quiet;
            report.pending += page_report.pending;
            report.held += page_report.held;
            report.deferred += page_report.deferred;
            report.settled_this_round += page_report.settled_this_round;
            report.retry_after_ms = report.retry_after_ms.max(page_report.retry_after_ms);
            report.quiet += page_report.quiet;
            report.quiet_until_ms = earliest(report.quiet_until_ms, page_report.quiet_until_ms);
            page_settled &= page_report.pending == 0 && page_report.quiet == 0;
        }
        if page_settled {
            report.progress.pages_done += 1;
        }
    }
    if report.pending == 0 && report.quiet == 0 {
        let finalize_input = FinalizeInput {
            request_id: request.request_id.clone(),
            state: RequestState::Completed,
            progress: report.progress.clone(),
            tenant_id: Some(request.tenant_id.clone()),
            channels: request.channels.clone(),
            settle_as: None,
            recount: false,
        };
        report.progress = finalize::finalize(&activities.store, ctx, &finalize_input).await?;
        activities.limiters.forget(&request.request_id);
        report.finalized = Some(RequestState::Completed);
    }
    Ok(report)
}

/// Writes the whole audience snapshot (it is small by construction: the API only sends
/// explicit lists of a few hundred users down this path).
async fn resolve(
    activities: &FanoutActivities,
    ctx: &ActivityContext,
    input: &DeliverDirectInput,
) -> Result<AudienceSnapshot, ActivityError> {
    let request = &input.request;
    let chunk = audience::resolve_chunk(
        &activities.store,
        ctx,
        &ResolveChunkInput {
            request_id: request.request_id.clone(),
            tenant_id: request.tenant_id.clone(),
            recipients: request.recipients.clone(),
            after: None,
            first_page: 0,
            max_pages: u32::MAX,
            actor_id: request.actor_id.clone(),
        },
        activities.config.page_size,
    )
    .await?;
    Ok(AudienceSnapshot {
        recipients: chunk.recipients,
        pages: chunk.pages,
        excluded: chunk.excluded,
    })
}
