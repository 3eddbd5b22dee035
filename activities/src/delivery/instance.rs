//! One instance of the page: the checks that suppress or hold its send, the render, the
//! provider call and the receipt it all comes to (see the module's header for what holds a
//! send and what stays pending).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fanout_contracts::DeliverPageInput;
use fanout_domain::inbox::InboxMessage;
use fanout_domain::receipt::{DeliveryStatus, FREQUENCY_CAPPED, Receipt, UNKNOWN_USER};
use fanout_domain::render::{RenderError, RenderFailure};
use fanout_domain::user::{Device, User};
use fanout_domain::{Channel, InstanceId};
use fanout_store::audience::PageMember;
use fanout_store::{Store, now_ms};
use fanout_telemetry::metrics;
use fanout_telemetry::traces::{self, CallSpan};
use temporalio_sdk::activities::ActivityContext;

use super::count::{call_result, count_call};
use super::frequency::PageSlots;
use super::providers::{providers, push_span_name};
use super::screen::{Erased, Screen};
use super::switch::ChannelGate;
use super::{CHANNEL_DISABLED, HELD_RETRY_AFTER};
use crate::control::{Gate, Pacer};
use crate::digest::PageDigest;
use crate::email::EmailSender;
use crate::in_app;
use crate::limits::{Limits, Verdict};
use crate::outcome::SendOutcome;
use crate::push::{self, PushSenders};
use crate::templates::LoadedTemplate;

/// Error code of a receipt held back by an open circuit breaker.
const CIRCUIT_OPEN: &str = "circuit_open";

/// What every instance of the page shares.
pub(super) struct Job<'a> {
    pub(super) email: &'a EmailSender,
    pub(super) input: &'a DeliverPageInput,
    pub(super) compiled: Option<&'a Arc<LoadedTemplate>>,
    pub(super) last_attempt: bool,
    pub(super) pacer: &'a Pacer<'a>,
    pub(super) switch: &'a ChannelGate<'a>,
    pub(super) limits: &'a Limits,
    pub(super) erased: &'a Erased,
    pub(super) screen: &'a Screen,
    /// The page's frequency-cap slots (empty without a cap on the category).
    pub(super) slots: PageSlots,
    pub(super) push: &'a PushSenders,
    pub(super) store: &'a Store,
    pub(super) ctx: &'a ActivityContext,
    pub(super) deadline: Option<Instant>,
    /// Provider calls started so far, for the budget of calls traced per delivery.
    pub(super) calls: AtomicU32,
    /// The page's recipients' items, when the request is a digest's.
    pub(super) digest: &'a PageDigest,
}

impl<'a> Job<'a> {
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
    pub(super) async fn attempt(
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
            provider: None,
            attempts,
            latency_ms: None,
            error_code: None,
            error_message: None,
            updated_at_ms: 0,
            release_at_ms: None,
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
                provider,
                started,
                inbox,
            } => {
                message = inbox.map(|m| *m);
                receipt.attempts += 1;
                receipt.provider = provider;
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

    /// What the screen makes of a member before anything is asked of a limit or a provider:
    /// the profile, the template and the devices to send to, or why it is suppressed. Pure, so
    /// the page can tell which instances need a frequency-cap slot before sending any.
    pub(super) fn screened<'m>(
        &self,
        member: &'m PageMember,
    ) -> Result<(&'m User, &'a Arc<LoadedTemplate>, Vec<&'m Device>), &'static str> {
        let Some(user) = &member.profile else {
            return Err(UNKNOWN_USER);
        };
        let Some(compiled) = self.compiled else {
            return Err("channel_not_in_template");
        };
        let channel = self.input.channel;
        if channel == Channel::Email && user.email.is_none() {
            return Err("no_email_address");
        }
        if channel == Channel::Push && user.devices.is_empty() {
            return Err("no_device");
        }
        if let Some(reason) = self.screen.verdict(user, channel) {
            return Err(reason);
        }
        let devices: Vec<&Device> = self
            .screen
            .live_devices(user)
            .into_iter()
            .filter(|d| self.push.reaches(d.platform))
            .collect();
        if channel == Channel::Push && devices.is_empty() {
            return Err("push_not_configured");
        }
        Ok((user, compiled, devices))
    }

    async fn send(&self, id: &InstanceId, member: &PageMember) -> Outcome {
        let (user, compiled, devices) = match self.screened(member) {
            Ok(screened) => screened,
            Err(reason) => return Outcome::Suppressed(reason),
        };
        let input = self.input;
        // After the screen, before any send: the page claimed its slots up front.
        if self.slots.denied(id) {
            return Outcome::Suppressed(FREQUENCY_CAPPED);
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
            return Outcome::Suppressed(UNKNOWN_USER);
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
        let vars = self.digest.context(&input.data, user, &input.request_id);
        let started = Instant::now();
        let outcome = match input.channel {
            Channel::Email => {
                let Some(address) = &user.email else {
                    return Outcome::Suppressed("no_email_address");
                };
                let (send, provider) = match compiled.render(move |c| c.render_email(&vars)).await {
                    Ok(rendered) => {
                        let call = Instant::now();
                        let span = self.call_span("smtp send", id);
                        let sent = self.email.send_via(id, address, &rendered).await;
                        let (result, code) = call_result(&sent.outcome);
                        span.end(result, code);
                        count_call(&providers, &sent.outcome, call.elapsed());
                        (sent.outcome, sent.relay)
                    }
                    Err(e) => (render_failure(&e), None),
                };
                Outcome::Sent {
                    send,
                    provider,
                    started,
                    inbox: None,
                }
            }
            Channel::Push => {
                let (send, provider) = match compiled.render(move |c| c.render_push(&vars)).await {
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
                        let names: Vec<&str> = providers.iter().map(|p| p.as_str()).collect();
                        (sent.outcome, Some(names.join(",")))
                    }
                    Err(e) => (render_failure(&e), None),
                };
                Outcome::Sent {
                    send,
                    provider,
                    started,
                    inbox: None,
                }
            }
            Channel::InApp => match compiled.render(move |c| c.render_in_app(&vars)).await {
                Ok(rendered) => Outcome::Sent {
                    send: SendOutcome::Accepted {
                        provider_message_id: id.to_string(),
                    },
                    provider: Some("inbox".into()),
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
                    provider: None,
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
pub(super) struct Attempted {
    pub(super) receipt: Option<Receipt>,
    pub(super) message: Option<InboxMessage>,
    pub(super) retry_after: Option<Duration>,
    pub(super) held: bool,
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
        /// The provider that answered (see `Receipt::provider`); `None` when none was called.
        provider: Option<String>,
        started: Instant,
        inbox: Option<Box<InboxMessage>>,
    },
}
