//! What a page's delivery tells the metrics (`fanout_telemetry::metrics`): the receipts it
//! recorded, the provider calls it made, the round it is and that it runs.

use std::collections::HashMap;
use std::time::Duration;

use fanout_contracts::DeliverPageInput;
use fanout_domain::receipt::{DeliveryStatus, Receipt};
use fanout_domain::{Channel, InstanceId, UnixMillis};
use fanout_store::now_ms;
use fanout_telemetry::metrics;

use super::Batch;
use crate::limits::Provider;
use crate::outcome::SendOutcome;

/// Counts receipts just recorded (`fanout_deliveries_total`) and, for deliveries, the time
/// since the request was accepted (`fanout_trigger_to_delivered_seconds`).
pub(super) fn count_recorded(
    input: &DeliverPageInput,
    batch: &Batch,
    accepted_at: Option<UnixMillis>,
) {
    if !metrics::recording() {
        return;
    }
    let tenant = metrics::tenant(input.tenant_id.as_str());
    let channel = input.channel.as_str();
    let now = now_ms();
    // A batch is tens of receipts with a handful of label sets: count per set, then look each
    // up once (a lookup hashes the labels under a lock).
    let mut counts: Vec<((&str, &str), u64)> = Vec::new();
    let latency = accepted_at.map(|_| {
        metrics::TRIGGER_TO_DELIVERED.with_label_values(&[channel, input.priority.as_str()])
    });
    for (receipt, held) in batch.receipts.iter().zip(&batch.held) {
        let outcome = match receipt.status {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Suppressed => "suppressed",
            DeliveryStatus::Cancelled => "cancelled",
            DeliveryStatus::Pending if *held => "held",
            DeliveryStatus::Pending => "retrying",
            DeliveryStatus::Deferred => "deferred",
        };
        let code = receipt.error_code.as_deref().unwrap_or("");
        match counts
            .iter_mut()
            .find(|(labels, _)| *labels == (outcome, code))
        {
            Some((_, n)) => *n += 1,
            None => counts.push(((outcome, code), 1)),
        }
        if let (DeliveryStatus::Delivered, Some(at), Some(histogram)) =
            (receipt.status, accepted_at, &latency)
        {
            histogram.observe((now - at).max(0) as f64 / 1000.0);
        }
    }
    for ((outcome, code), n) in counts {
        metrics::DELIVERIES
            .with_label_values(&[tenant, channel, outcome, code])
            .inc_by(n);
    }
}

/// What became of a provider call, as metrics and spans name it: `ok`, `transient` or
/// `permanent`, with the receipt's code when it failed.
pub(super) fn call_result(send: &SendOutcome) -> (&'static str, Option<&str>) {
    match send {
        SendOutcome::Accepted { .. } => ("ok", None),
        SendOutcome::Transient { code, .. } => ("transient", Some(code)),
        SendOutcome::Permanent { code, .. } | SendOutcome::InvalidAddress { code, .. } => {
            ("permanent", Some(code))
        }
    }
}

/// Counts one call per provider it went through (`fanout_provider_calls_total`) and its time.
pub(super) fn count_call(providers: &[Provider], send: &SendOutcome, took: Duration) {
    let (result, _) = call_result(send);
    for provider in providers {
        metrics::provider_call(provider.as_str(), result, took);
    }
}

/// A delivery activity running, as `fanout_pages_in_flight` counts it.
pub(super) struct PageInFlight(Option<Channel>);

impl PageInFlight {
    pub(super) fn enter(channel: Channel) -> Self {
        if !metrics::recording() {
            return Self(None);
        }
        metrics::PAGES_IN_FLIGHT
            .with_label_values(&[channel.as_str()])
            .inc();
        Self(Some(channel))
    }
}

impl Drop for PageInFlight {
    fn drop(&mut self) {
        if let Some(channel) = self.0 {
            metrics::PAGES_IN_FLIGHT
                .with_label_values(&[channel.as_str()])
                .dec();
        }
    }
}

/// Counts a delivery round: `retry` when an earlier round left instances of the page pending
/// (and how long they waited since, the backoff), else `first`.
pub(super) fn count_round(input: &DeliverPageInput, earlier: &HashMap<InstanceId, Receipt>) {
    if !metrics::recording() {
        return;
    }
    let channel = input.channel.as_str();
    let left_pending = earlier
        .values()
        .filter(|r| r.status == DeliveryStatus::Pending)
        .map(|r| r.updated_at_ms)
        .max();
    let round = match left_pending {
        Some(at) => {
            metrics::ROUND_WAIT
                .with_label_values(&[channel])
                .observe((now_ms() - at).max(0) as f64 / 1000.0);
            "retry"
        }
        None => "first",
    };
    metrics::DELIVERY_ROUNDS
        .with_label_values(&[channel, round])
        .inc();
}
