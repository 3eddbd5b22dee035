//! One page of the audience over one channel: render, send with bounded concurrency, record a
//! receipt per instance, heartbeat as it goes.
//!
//! The activity is resumable: it starts by reading the page's receipts and skips every
//! instance already delivered, failed or suppressed, so a retry (after a crash) or the next
//! delivery round (after transient provider errors) only sends what is still pending.
//!
//! Transient provider failures do not fail the activity: their receipts stay `pending` and the
//! report says how many, with the longest `Retry-After` seen, so the page workflow can back off
//! and run another round. On the final round they are recorded as failed instead, and every
//! failed instance goes to the dead-letter list with its receipt.
//!
//! A send that must wait is held, not attempted: its receipt stays `pending` whatever the round,
//! with the reason as its code, and the report counts it as `held`, so the page workflow waits
//! (without spending one of its delivery rounds) and tries again. Two things hold sends: a
//! channel turned off by a kill switch ([`CHANNEL_DISABLED`], checked again every
//! [`HELD_RETRY_AFTER`]), and the rate limits and circuit breakers of [`crate::limits`], which
//! gate every real send after the request's own controls (`circuit_open` while a provider's
//! breaker is open).
//!
//! A tenant's frequency cap on the template's category is claimed for the whole page after the
//! screen and before the first send (see `frequency`): an instance refused a slot is
//! suppressed with `frequency_capped`, and one that holds a slot but does not deliver gives it
//! back when its receipt is written.

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use fanout_contracts::{DeliverPageInput, PageReport};
use fanout_domain::inbox::InboxMessage;
use fanout_domain::receipt::{DeliveryStatus, Receipt};
use fanout_domain::{InstanceId, UnixMillis};
use fanout_store::{Store, now_ms};
use futures::StreamExt;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::control::{Pacer, RateLimiters};
use crate::digest::PageDigest;
use crate::email::EmailSender;
use crate::limits::Limits;
use crate::push::PushSenders;
use crate::templates::{TemplateCache, TemplateLoadError};
use crate::{DeliveryConfig, heartbeat, permanent, store_error};

mod count;
mod frequency;
mod instance;
mod providers;
pub(crate) mod quiet;
mod screen;
mod switch;

use count::{PageInFlight, count_recorded, count_round};
use frequency::PageSlots;
pub use frequency::{CAP_TTL, CapCache};
use instance::{Attempted, Job};
use quiet::{QuietScreen, count_quiet};
use screen::{Erased, Screen};
use switch::ChannelGate;

/// Receipts are written after this many deliveries, bounding what a crash can make us resend.
/// On SQLite every flush is a turn at the one write lock, so the flush size sets the commits a
/// fan-out needs: 64 halves them against 32 (and is what the bench's direct loop writes).
pub const FLUSH_EVERY: usize = 64;

/// How often the activity heartbeats (and so learns of a cancellation), whatever it is doing.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);

/// How long a delivery stopped by a cancelled request waits for Temporal's cancellation to
/// reach it before failing instead.
const CANCEL_GRACE: Duration = Duration::from_secs(15);

/// Failure type when the store says cancelled but Temporal never cancelled the activity.
const ERR_REQUEST_CANCELLED: &str = "RequestCancelled";

/// The receipt `error_code` of a delivery held because its channel is switched off.
pub const CHANNEL_DISABLED: &str = "channel_disabled";

/// How long a round that was held by a channel switch asks the page workflow to wait.
pub const HELD_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Delivers one page over one channel and reports the page's counts. No send starts after
/// `deadline` (the direct path's local activity hands the rest to a normal one): those are left
/// pending and counted as `deferred`.
#[allow(clippy::too_many_arguments)] // the activity's shared handles, passed as borrowed
pub async fn deliver_page(
    store: &Store,
    email: &EmailSender,
    push: &PushSenders,
    limiters: &RateLimiters,
    limits: &Limits,
    caps: &CapCache,
    config: &DeliveryConfig,
    ctx: &ActivityContext,
    input: &DeliverPageInput,
    deadline: Option<Instant>,
) -> Result<PageReport, ActivityError> {
    let began = Instant::now();
    // The version active when the request was accepted, compiled once per worker.
    let template = TemplateCache::shared()
        .for_request(
            store,
            &input.tenant_id,
            &input.template_id,
            &input.request_id,
        )
        .await
        .map_err(TemplateLoadError::into_activity_error)?;
    let compiled = Some(&template).filter(|t| t.compiled.supports(input.channel));

    // Erasures from this moment on are picked up on every tick (see `Erased`).
    let loaded_at = now_ms();
    let members = store
        .load_page(&input.tenant_id, &input.request_id, input.page)
        .await
        .map_err(store_error)?;
    let user_ids: Vec<_> = members.iter().map(|m| m.user_id.clone()).collect();
    let digest = PageDigest::load(store, input, &user_ids).await?;
    // For the trigger-to-delivered latency; a request recorded before this page must exist,
    // and without it only that histogram goes without.
    let accepted_at = store
        .request_accepted_at(&input.request_id)
        .await
        .unwrap_or_default();
    let earlier = store
        .get_receipts(&input.request_id, input.channel, &user_ids)
        .await
        .map_err(store_error)?;
    let _running = PageInFlight::enter(input.channel);
    count_round(input, &earlier);

    let mut report = PageReport {
        channel: input.channel,
        page: input.page,
        total: members.len() as u64,
        delivered: 0,
        failed: 0,
        suppressed: 0,
        pending: 0,
        settled_this_round: 0,
        retry_after_ms: None,
        held: 0,
        deferred: 0,
        quiet: 0,
        quiet_until_ms: None,
    };
    let quiet = QuietScreen::load(store, input, config.quiet_bucket_ms, loaded_at).await?;
    let mut batch = Batch::default();
    let mut todo = Vec::new();
    for member in members {
        let id = InstanceId::derive(&input.request_id, &member.user_id, input.channel);
        let previous = earlier.get(&id);
        if input.release_only && previous.is_none_or(|r| r.release_at_ms.is_none()) {
            // Never deferred: its own page settled and counted it.
            continue;
        }
        match previous.map(|r| (r.status, r.release_at_ms.unwrap_or_default())) {
            Some((
                status @ (DeliveryStatus::Delivered
                | DeliveryStatus::Failed
                | DeliveryStatus::Suppressed),
                _,
            )) => count(&mut report, status),
            // Waiting for quiet hours to end, and this round is not its release.
            Some((DeliveryStatus::Deferred, at))
                if input.release_through_ms.is_none_or(|through| at > through) =>
            {
                count_quiet(&mut report, at);
            }
            None => match (&quiet, &member.profile) {
                (Some(quiet), Some(user)) if let Some(at) = quiet.release_at(user) => {
                    batch.receipts.push(quiet.deferred(input, id, user, at));
                    batch.held.push(false);
                    count_quiet(&mut report, at);
                }
                _ => todo.push((id, member, 0)),
            },
            _ => todo.push((id, member, previous.map_or(0, |r| r.attempts))),
        }
    }

    let screen = Screen::load(store, input, &template.template.category, &todo).await?;
    let last_attempt = input.final_round || is_last_attempt(ctx);
    let pacer = Pacer::new(store, limiters, &input.request_id);
    let switch = ChannelGate::new(store, input, config);
    let erased = Erased::default();
    let mut job = Job {
        email,
        input,
        compiled,
        last_attempt,
        pacer: &pacer,
        switch: &switch,
        limits,
        erased: &erased,
        screen: &screen,
        slots: PageSlots::default(),
        push,
        store,
        ctx,
        deadline,
        calls: AtomicU32::new(0),
        digest: &digest,
    };
    // Every slot the page needs, claimed in one transaction before the first send; without a
    // cap on the category, the cached lookup is all this costs.
    let category = &template.template.category;
    let cap = caps
        .get(store, &input.tenant_id, category)
        .await
        .map_err(store_error)?;
    if let Some(cap) = cap {
        let eligible = todo
            .iter()
            .filter(|(_, member, _)| job.screened(member).is_ok())
            .map(|(id, member, _)| (id.clone(), member.user_id.clone()))
            .collect();
        job.slots = PageSlots::claim(store, input, category, cap, eligible)
            .await
            .map_err(store_error)?;
    }
    let job = job;
    let mut results = futures::stream::iter(todo)
        .map(|(id, member, attempts)| job.attempt(id, member, attempts))
        .buffer_unordered(config.concurrency.max(1));

    let mut stopped = false;
    let mut done = 0u64;
    let mut ticker = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            next = results.next() => {
                let Some(delivered) = next else { break };
                let Some(Attempted { receipt, message, retry_after, held }) = delivered else {
                    stopped = true;
                    continue;
                };
                let Some(receipt) = receipt else {
                    // Deferred past the deadline: untouched, for the activity taking over.
                    report.pending += 1;
                    report.deferred += 1;
                    continue;
                };
                match receipt.status {
                    DeliveryStatus::Pending => {
                        report.pending += 1;
                        report.held += u64::from(held);
                        let asked = retry_after.map(|d| d.as_millis() as u64);
                        report.retry_after_ms = report.retry_after_ms.max(asked);
                    }
                    status => {
                        count(&mut report, status);
                        report.settled_this_round += 1;
                    }
                }
                batch.receipts.push(receipt);
                batch.held.push(held);
                batch.inbox.extend(message);
                done += 1;
                if batch.receipts.len() >= FLUSH_EVERY {
                    flush(store, input, &job.slots, &mut batch, accepted_at, &mut report).await?;
                }
            }
            _ = ticker.tick() => {
                // In-app messages wait in the batch: show them within a tick, not a page.
                flush(store, input, &job.slots, &mut batch, accepted_at, &mut report).await?;
                heartbeat(ctx, done).await;
                erased.refresh(store, input, loaded_at).await;
            }
        }
    }
    flush(
        store,
        input,
        &job.slots,
        &mut batch,
        accepted_at,
        &mut report,
    )
    .await?;
    if stopped {
        return Err(stop_cancelled(ctx, input).await);
    }

    tracing::info!(
        request_id = %input.request_id,
        channel = %input.channel,
        page = input.page,
        delivered = report.delivered,
        failed = report.failed,
        suppressed = report.suppressed,
        pending = report.pending,
        round = input.round,
        elapsed_ms = began.elapsed().as_millis() as u64,
        "page delivery round done"
    );
    Ok(report)
}

fn count(report: &mut PageReport, status: DeliveryStatus) {
    match status {
        DeliveryStatus::Delivered => report.delivered += 1,
        DeliveryStatus::Failed | DeliveryStatus::Cancelled => report.failed += 1,
        DeliveryStatus::Suppressed => report.suppressed += 1,
        DeliveryStatus::Pending | DeliveryStatus::Deferred => {}
    }
}

/// Whether this is the retry policy's final attempt, after which transient failures become
/// final failures instead of failing the activity again.
fn is_last_attempt(ctx: &ActivityContext) -> bool {
    let info = ctx.info();
    info.retry_policy
        .as_ref()
        .map(|p| p.maximum_attempts())
        .filter(|max| *max > 0)
        .is_some_and(|max| info.attempt >= max)
}

/// Receipts and in-app messages not yet written.
#[derive(Default)]
struct Batch {
    receipts: Vec<Receipt>,
    /// Whether each receipt's send was held (a switch, a breaker), beside `receipts`.
    held: Vec<bool>,
    inbox: Vec<InboxMessage>,
}

async fn flush(
    store: &Store,
    input: &DeliverPageInput,
    slots: &PageSlots,
    batch: &mut Batch,
    accepted_at: Option<UnixMillis>,
    report: &mut PageReport,
) -> Result<(), ActivityError> {
    if batch.receipts.is_empty() {
        return Ok(());
    }
    // A message made before this page saw its user's erasure is not written after the erasure
    // emptied the user's inbox: the store checks the profiles in the write's own transaction,
    // and turns those receipts to suppressed, as a send after the erasure would have.
    let suppressed = store
        .record_page_deliveries(
            &input.tenant_id,
            input.page,
            &mut batch.receipts,
            &mut batch.inbox,
        )
        .await
        .map_err(store_error)?;
    report.delivered = report.delivered.saturating_sub(u64::from(suppressed));
    report.suppressed += u64::from(suppressed);
    // After the receipts: a crash in between keeps the slot used (fewer messages, never more).
    slots.release_undelivered(store, &batch.receipts).await;
    count_recorded(input, batch, accepted_at);
    batch.receipts.clear();
    batch.held.clear();
    batch.inbox.clear();
    Ok(())
}

/// Ends a delivery stopped by cancellation: as cancelled once Temporal says so (it will, for a
/// cancelled workflow), or as a permanent failure if the cancellation never arrives.
async fn stop_cancelled(ctx: &ActivityContext, input: &DeliverPageInput) -> ActivityError {
    let deadline = Instant::now() + CANCEL_GRACE;
    while !ctx.is_cancelled() && Instant::now() < deadline {
        heartbeat(ctx, 0u64).await;
        tokio::time::sleep(HEARTBEAT_EVERY).await;
    }
    if ctx.is_cancelled() {
        tracing::info!(request_id = %input.request_id, page = input.page, "delivery cancelled");
        return ActivityError::cancelled();
    }
    permanent(
        ERR_REQUEST_CANCELLED,
        format!("request {} was cancelled", input.request_id),
    )
}
