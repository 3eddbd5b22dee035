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

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fanout_contracts::{DeliverPageInput, PageReport};
use fanout_domain::inbox::InboxMessage;
use fanout_domain::receipt::{DeliveryStatus, Receipt};
use fanout_domain::render::{RenderError, RenderFailure};
use fanout_domain::user::{Device, User};
use fanout_domain::{Channel, InstanceId, UnixMillis};
use fanout_store::audience::PageMember;
use fanout_store::{Store, now_ms};
use fanout_telemetry::metrics;
use fanout_telemetry::traces::{self, CallSpan};
use futures::StreamExt;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::control::{Gate, Pacer, RateLimiters};
use crate::email::EmailSender;
use crate::limits::{Limits, Verdict};
use crate::outcome::SendOutcome;
use crate::push::{self, PushSenders};
use crate::templates::{LoadedTemplate, TemplateCache, TemplateLoadError};
use crate::{DeliveryConfig, heartbeat, in_app, permanent, store_error};

mod count;
mod providers;
mod screen;
mod switch;

use count::{PageInFlight, call_result, count_call, count_recorded, count_round};
use providers::{providers, push_span_name};
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

/// Error code of a receipt held back by an open circuit breaker.
const CIRCUIT_OPEN: &str = "circuit_open";

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
    };
    let mut todo = Vec::new();
    for member in members {
        let id = InstanceId::derive(&input.request_id, &member.user_id, input.channel);
        let previous = earlier.get(&id);
        match previous.map(|r| r.status) {
            Some(
                status @ (DeliveryStatus::Delivered
                | DeliveryStatus::Failed
                | DeliveryStatus::Suppressed),
            ) => count(&mut report, status),
            _ => todo.push((id, member, previous.map_or(0, |r| r.attempts))),
        }
    }

    let screen = Screen::load(store, input, &template.template.category, &todo).await?;
    let last_attempt = input.final_round || is_last_attempt(ctx);
    let pacer = Pacer::new(store, limiters, &input.request_id);
    let switch = ChannelGate::new(store, input, config);
    let erased = Erased::default();
    let job = Job {
        email,
        input,
        compiled,
        last_attempt,
        pacer: &pacer,
        switch: &switch,
        limits,
        erased: &erased,
        screen: &screen,
        push,
        store,
        ctx,
        deadline,
        calls: AtomicU32::new(0),
    };
    let mut results = futures::stream::iter(todo)
        .map(|(id, member, attempts)| job.attempt(id, member, attempts))
        .buffer_unordered(config.concurrency.max(1));

    let mut batch = Batch::default();
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
                    flush(store, input, &mut batch, (&erased, loaded_at, accepted_at), &mut report).await?;
                }
            }
            _ = ticker.tick() => {
                // In-app messages wait in the batch: show them within a tick, not a page.
                flush(store, input, &mut batch, (&erased, loaded_at, accepted_at), &mut report).await?;
                heartbeat(ctx, done).await;
                erased.refresh(store, input, loaded_at).await;
            }
        }
    }
    flush(
        store,
        input,
        &mut batch,
        (&erased, loaded_at, accepted_at),
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
        DeliveryStatus::Pending => {}
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

impl Batch {
    /// Drops the messages of erased users; their receipts say `unknown_user`, as a send to
    /// them after the erasure would have.
    fn drop_erased(&mut self, erased: &Erased, report: &mut PageReport) {
        let dropped: std::collections::HashSet<InstanceId> = self
            .inbox
            .iter()
            .filter(|m| erased.contains(&m.user_id))
            .map(|m| m.id.clone())
            .collect();
        if dropped.is_empty() {
            return;
        }
        self.inbox.retain(|m| !dropped.contains(&m.id));
        for receipt in &mut self.receipts {
            if dropped.contains(&receipt.instance_id) && receipt.status == DeliveryStatus::Delivered
            {
                receipt.status = DeliveryStatus::Suppressed;
                receipt.error_code = Some("unknown_user".into());
                receipt.provider_message_id = None;
                report.delivered = report.delivered.saturating_sub(1);
                report.suppressed += 1;
            }
        }
    }
}

async fn flush(
    store: &Store,
    input: &DeliverPageInput,
    batch: &mut Batch,
    (erased, loaded_at, accepted_at): (&Erased, UnixMillis, Option<UnixMillis>),
    report: &mut PageReport,
) -> Result<(), ActivityError> {
    if batch.receipts.is_empty() {
        return Ok(());
    }
    if !batch.inbox.is_empty() {
        // A message made before this page saw its user's erasure must not be written after the
        // erasure emptied the user's inbox: erasures are read again just before the write.
        erased.refresh(store, input, loaded_at).await;
        batch.drop_erased(erased, report);
    }
    store
        .record_page_deliveries(&input.tenant_id, input.page, &batch.receipts, &batch.inbox)
        .await
        .map_err(store_error)?;
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

/// What every instance of the page shares.
struct Job<'a> {
    email: &'a EmailSender,
    input: &'a DeliverPageInput,
    compiled: Option<&'a Arc<LoadedTemplate>>,
    last_attempt: bool,
    pacer: &'a Pacer<'a>,
    switch: &'a ChannelGate<'a>,
    limits: &'a Limits,
    erased: &'a Erased,
    screen: &'a Screen,
    push: &'a PushSenders,
    store: &'a Store,
    ctx: &'a ActivityContext,
    deadline: Option<Instant>,
    /// Provider calls started so far, for the budget of calls traced per delivery.
    calls: AtomicU32,
}

impl Job<'_> {
    /// Starts the span of one provider call (`smtp send`, `apns send`, ...) while the
    /// delivery's budget of traced calls lasts (see `fanout_telemetry::traces`).
    fn call_span(&self, name: &'static str, id: &InstanceId) -> CallSpan {
        let traced = traces::enabled()
            && self.calls.fetch_add(1, Ordering::Relaxed) < traces::TRACED_CALLS_PER_DELIVERY;
        CallSpan::start(name, traced, vec![("fanout.instance_id", id.to_string())])
    }

    /// Delivers to one member and returns the receipt describing the result (with the in-app
    /// message to write beside it), or `None` if the request was cancelled before this send
    /// could start.
    async fn attempt(
        &self,
        id: InstanceId,
        member: PageMember,
        attempts: u32,
    ) -> Option<Attempted> {
        let mut receipt = Receipt {
            instance_id: id,
            request_id: self.input.request_id.clone(),
            user_id: member.user_id.clone(),
            channel: self.input.channel,
            status: DeliveryStatus::Pending,
            provider_message_id: None,
            attempts,
            latency_ms: None,
            error_code: None,
            error_message: None,
            updated_at_ms: 0,
        };
        let mut message = None;
        let mut retry_after = None;
        let mut held = false;
        let outcome = self.send(&receipt.instance_id, &member).await;
        match outcome {
            Outcome::Stopped => return None,
            Outcome::Deferred => {
                return Some(Attempted {
                    receipt: None,
                    message: None,
                    retry_after: None,
                    held: false,
                });
            }
            Outcome::Held {
                wait,
                code,
                message,
            } => {
                // Not attempted: pending even in the last round, so an outage or a switched-off
                // channel never fails it.
                held = true;
                retry_after = Some(wait);
                receipt.error_code = Some(code.into());
                receipt.error_message = Some(message.into());
            }
            Outcome::Suppressed(code) => {
                receipt.status = DeliveryStatus::Suppressed;
                receipt.error_code = Some(code.into());
            }
            Outcome::Sent {
                send,
                started,
                inbox,
            } => {
                message = inbox.map(|m| *m);
                receipt.attempts += 1;
                match send {
                    SendOutcome::Accepted {
                        provider_message_id,
                    } => {
                        receipt.status = DeliveryStatus::Delivered;
                        receipt.provider_message_id = Some(provider_message_id);
                        receipt.latency_ms = Some(started.elapsed().as_millis() as u64);
                    }
                    SendOutcome::Permanent { code, message }
                    | SendOutcome::InvalidAddress { code, message } => {
                        receipt.status = DeliveryStatus::Failed;
                        receipt.error_code = Some(code);
                        receipt.error_message = Some(message);
                    }
                    SendOutcome::Transient {
                        code,
                        message,
                        retry_after: asked,
                    } => {
                        retry_after = asked;
                        receipt.status = if self.last_attempt {
                            DeliveryStatus::Failed
                        } else {
                            DeliveryStatus::Pending
                        };
                        receipt.error_code = Some(code);
                        receipt.error_message = Some(message);
                    }
                }
            }
        }
        receipt.updated_at_ms = now_ms();
        Some(Attempted {
            receipt: Some(receipt),
            message,
            retry_after,
            held,
        })
    }

    async fn send(&self, id: &InstanceId, member: &PageMember) -> Outcome {
        let Some(user) = &member.profile else {
            return Outcome::Suppressed("unknown_user");
        };
        let Some(compiled) = self.compiled else {
            return Outcome::Suppressed("channel_not_in_template");
        };
        let input = self.input;
        if input.channel == Channel::Email && user.email.is_none() {
            return Outcome::Suppressed("no_email_address");
        }
        if input.channel == Channel::Push && user.devices.is_empty() {
            return Outcome::Suppressed("no_device");
        }
        if let Some(reason) = self.screen.verdict(user, input.channel) {
            return Outcome::Suppressed(reason);
        }
        let devices: Vec<&Device> = self
            .screen
            .live_devices(user)
            .into_iter()
            .filter(|d| self.push.reaches(d.platform))
            .collect();
        if input.channel == Channel::Push && devices.is_empty() {
            return Outcome::Suppressed("push_not_configured");
        }
        // Switches, pause, rate and cancellation apply to real sends only, not to suppressions.
        if self.switch.disabled().await {
            return Outcome::Held {
                wait: HELD_RETRY_AFTER,
                code: CHANNEL_DISABLED,
                message: "the channel is switched off; delivery held",
            };
        }
        match self.pacer.admit(self.ctx, self.deadline).await {
            Gate::Go => {}
            Gate::Cancelled => return Outcome::Stopped,
            Gate::Deferred => return Outcome::Deferred,
        }
        if self.erased.contains(&user.user_id) {
            return Outcome::Suppressed("unknown_user");
        }
        let providers = providers(input.channel, &devices);
        let passes = match self
            .limits
            .admit(&input.tenant_id, &input.template_id, &providers, || {
                self.ctx.is_cancelled() || self.past_deadline()
            })
            .await
        {
            Verdict::Go(passes) => passes,
            Verdict::Cancelled if !self.ctx.is_cancelled() => return Outcome::Deferred,
            Verdict::Held(wait) => {
                return Outcome::Held {
                    wait,
                    code: CIRCUIT_OPEN,
                    message: "provider circuit open: send held",
                };
            }
            Verdict::Cancelled => return Outcome::Stopped,
        };
        let vars = fanout_domain::render::context(&input.data, user, &input.request_id);
        let started = Instant::now();
        let outcome = match input.channel {
            Channel::Email => {
                let Some(address) = &user.email else {
                    return Outcome::Suppressed("no_email_address");
                };
                let send = match compiled.render(move |c| c.render_email(&vars)).await {
                    Ok(rendered) => {
                        let call = Instant::now();
                        let span = self.call_span("smtp send", id);
                        let sent = self.email.send(id, address, &rendered).await;
                        let (result, code) = call_result(&sent);
                        span.end(result, code);
                        count_call(&providers, &sent, call.elapsed());
                        sent
                    }
                    Err(e) => render_failure(&e),
                };
                Outcome::Sent {
                    send,
                    started,
                    inbox: None,
                }
            }
            Channel::Push => {
                let send = match compiled.render(move |c| c.render_push(&vars)).await {
                    Ok(rendered) => {
                        let message = push::message(id, rendered, input);
                        let call = Instant::now();
                        let span = self.call_span(push_span_name(&providers), id);
                        let sent = self.push.send(&devices, &message).await;
                        let (result, code) = call_result(&sent.outcome);
                        span.end(result, code);
                        count_call(&providers, &sent.outcome, call.elapsed());
                        for (device, code) in &sent.dead {
                            self.retire(user, device, code).await;
                        }
                        sent.outcome
                    }
                    Err(e) => render_failure(&e),
                };
                Outcome::Sent {
                    send,
                    started,
                    inbox: None,
                }
            }
            Channel::InApp => match compiled.render(move |c| c.render_in_app(&vars)).await {
                Ok(rendered) => Outcome::Sent {
                    send: SendOutcome::Accepted {
                        provider_message_id: id.to_string(),
                    },
                    started,
                    inbox: Some(Box::new(in_app::message(
                        id,
                        &input.request_id,
                        &user.user_id,
                        rendered,
                    ))),
                },
                Err(e) => Outcome::Sent {
                    send: render_failure(&e),
                    started,
                    inbox: None,
                },
            },
        };
        if let Outcome::Sent { send, started, .. } = &outcome {
            self.limits.report(passes, send, started.elapsed()).await;
        }
        outcome
    }
}

impl Job<'_> {
    /// Retires a token the provider declared dead; failing to is logged, as the next send to
    /// it will be declared dead again.
    async fn retire(&self, user: &User, device: &Device, code: &str) {
        let retired = self
            .store
            .invalidate_device(
                &self.input.tenant_id,
                &user.user_id,
                device.token.as_str(),
                code,
            )
            .await;
        match retired {
            Ok(()) => tracing::info!(user_id = %user.user_id, code, "push token retired"),
            Err(e) => tracing::warn!(error = %e, code, "retiring a push token failed"),
        }
    }
}

/// A render that failed: `template_render` when the template does not render with this
/// request's data, `template_limit` when it ran past its budget. Either is permanent for this
/// recipient; the page goes on with the others.
fn render_failure(e: &RenderError) -> SendOutcome {
    let (code, kind) = match e.failure {
        RenderFailure::Template => ("template_render", "template"),
        RenderFailure::Limit => ("template_limit", "limit"),
    };
    if metrics::recording() {
        metrics::RENDER_FAILURES.with_label_values(&[kind]).inc();
    }
    SendOutcome::Permanent {
        code: code.into(),
        message: e.to_string(),
    }
}

impl Job<'_> {
    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// One instance's result: its receipt (none when deferred past the deadline), the in-app
/// message to write beside it, and how long the provider asked to wait before a retry.
struct Attempted {
    receipt: Option<Receipt>,
    message: Option<InboxMessage>,
    retry_after: Option<Duration>,
    held: bool,
}

enum Outcome {
    Stopped,
    Deferred,
    Held {
        wait: Duration,
        code: &'static str,
        message: &'static str,
    },
    Suppressed(&'static str),
    Sent {
        send: SendOutcome,
        started: Instant,
        inbox: Option<Box<InboxMessage>>,
    },
}
