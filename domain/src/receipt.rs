//! What happened to each delivery, and to a request as a whole.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Channel, InstanceId, RequestId, UnixMillis, UserId};

/// The error code of a receipt suppressed because its user has no profile: never created, or
/// erased while the request ran.
pub const UNKNOWN_USER: &str = "unknown_user";

/// The error code of a receipt suppressed because its user already had the most deliveries of
/// the template's category on the channel that the tenant's frequency cap allows in the
/// current window (see [`crate::frequency`]).
pub const FREQUENCY_CAPPED: &str = "frequency_capped";

/// The state of one delivery instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not attempted yet, or failed transiently and waiting for a retry.
    Pending,
    /// Accepted by the provider (or written to the inbox).
    Delivered,
    /// Rejected permanently, or out of retries.
    Failed,
    /// Not sent on purpose: no address for the channel, unknown user, opted out.
    Suppressed,
    /// The request was cancelled before this delivery happened.
    Cancelled,
    /// Waiting for its recipient's quiet hours to end: `release_at_ms` says when it goes out.
    /// Not final, like `pending`.
    Deferred,
}

impl DeliveryStatus {
    /// Returns the wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Suppressed => "suppressed",
            DeliveryStatus::Cancelled => "cancelled",
            DeliveryStatus::Deferred => "deferred",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
            DeliveryStatus::Suppressed,
            DeliveryStatus::Cancelled,
            DeliveryStatus::Deferred,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| format!("unknown delivery status '{s}'"))
    }
}

/// The receipt of one delivery instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Receipt {
    /// The delivery instance.
    pub instance_id: InstanceId,
    /// The request it belongs to.
    pub request_id: RequestId,
    /// The recipient.
    pub user_id: UserId,
    /// The channel.
    pub channel: Channel,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// The provider's id for the message (SMTP queue id, inbox row id), once delivered.
    pub provider_message_id: Option<String>,
    /// The provider that answered the last attempt: the SMTP relay's configured name (`smtp`,
    /// or a failover relay's), `apns`, `fcm` (both for a user with both, comma-separated) or
    /// `inbox`; `null` before any attempt.
    #[serde(default)]
    pub provider: Option<String>,
    /// Attempts made so far.
    pub attempts: u32,
    /// How long the successful provider call took.
    pub latency_ms: Option<u64>,
    /// A stable machine-readable reason for failure or suppression.
    pub error_code: Option<String>,
    /// The provider's own words, when it gave any.
    pub error_message: Option<String>,
    /// When this receipt last changed.
    #[schema(value_type = i64)]
    pub updated_at_ms: UnixMillis,
    /// When a `deferred` delivery goes out (the end of its recipient's quiet hours, rounded up
    /// to the release bucket); kept once it has.
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub release_at_ms: Option<UnixMillis>,
}

/// A delivery instance that failed for good: a permanent provider rejection, or transient
/// failures through every delivery round. Operators list these and re-drive them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// The delivery instance.
    pub instance_id: InstanceId,
    /// The request it belongs to.
    pub request_id: RequestId,
    /// The recipient.
    pub user_id: UserId,
    /// The channel.
    pub channel: Channel,
    /// The page of the request's audience snapshot holding the recipient.
    pub page: u32,
    /// The last error's stable code, e.g. `smtp_550`.
    #[schema(example = "smtp_550")]
    pub error_code: Option<String>,
    /// The provider's last words.
    pub error_message: Option<String>,
    /// Provider calls made.
    pub attempts: u32,
    /// When the instance failed.
    #[schema(value_type = i64)]
    pub failed_at_ms: UnixMillis,
    /// When it was last re-driven; `None` while it waits on the list.
    #[schema(value_type = Option<i64>)]
    pub redriven_at_ms: Option<UnixMillis>,
}

/// The lifecycle of a whole request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Accepted and being worked on.
    Running,
    /// Every instance reached a final status.
    Completed,
    /// Cancelled by the API or an operator.
    Cancelled,
    /// The workflow itself failed or was terminated.
    Failed,
    /// Accepted with a `send_at` or `delay_seconds` and waiting for it: nothing resolved or
    /// sent yet, and it can still be rescheduled or cancelled.
    Scheduled,
    /// A trigger of a digest template: folded into a digest (its status names it), which
    /// delivers in a request of its own.
    Digested,
}

impl RequestState {
    /// Returns the wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Running => "running",
            RequestState::Completed => "completed",
            RequestState::Cancelled => "cancelled",
            RequestState::Failed => "failed",
            RequestState::Scheduled => "scheduled",
            RequestState::Digested => "digested",
        }
    }

    /// Whether the request can still change.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RequestState::Running | RequestState::Scheduled)
    }
}

impl FromStr for RequestState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            RequestState::Running,
            RequestState::Completed,
            RequestState::Cancelled,
            RequestState::Failed,
            RequestState::Scheduled,
            RequestState::Digested,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| format!("unknown request state '{s}'"))
    }
}

/// Delivery counts for one channel. `pending` is what is neither final nor suppressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelCounts {
    /// Recipients addressed on this channel.
    pub total: u64,
    /// Delivered.
    pub delivered: u64,
    /// Failed permanently or out of retries.
    pub failed: u64,
    /// Skipped on purpose.
    pub suppressed: u64,
    /// Cancelled before delivery.
    #[serde(default)]
    pub cancelled: u64,
    /// Not final yet.
    pub pending: u64,
    /// Of `pending`, those waiting for their recipient's quiet hours to end.
    #[serde(default)]
    pub deferred: u64,
}

impl ChannelCounts {
    /// Adds a page's outcome, keeping `pending` consistent with the other counts.
    pub fn absorb(&mut self, delivered: u64, failed: u64, suppressed: u64, cancelled: u64) {
        self.delivered += delivered;
        self.failed += failed;
        self.suppressed += suppressed;
        self.cancelled += cancelled;
        self.recompute_pending();
    }

    /// Sets `pending` from the other counts.
    pub fn recompute_pending(&mut self) {
        let settled = self.delivered + self.failed + self.suppressed + self.cancelled;
        self.pending = self.total.saturating_sub(settled);
    }
}

/// A request's progress, as the workflow reports it and the status endpoint serves it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Audience pages resolved.
    pub pages_total: u32,
    /// Pages whose every channel has finished.
    pub pages_done: u32,
    /// Recipients in the audience snapshot (before per-channel suppression).
    pub recipients: u64,
    /// Audience members left out of the snapshot because their user no longer exists; each
    /// channel counts them as suppressed.
    #[serde(default)]
    pub excluded: u64,
    /// Per channel counts.
    pub channels: BTreeMap<Channel, ChannelCounts>,
    /// Whether an operator paused the request.
    #[serde(default)]
    pub paused: bool,
    /// The request's delivery rate cap, if one is set.
    #[serde(default)]
    pub rate_per_second: Option<u32>,
}

impl Progress {
    /// The counts of a request whose audience snapshot was just resolved: every recipient
    /// pending on every channel, members left out of the snapshot suppressed.
    pub fn for_snapshot(recipients: u64, excluded: u64, pages: u32, channels: &[Channel]) -> Self {
        let channels = channels
            .iter()
            .map(|channel| {
                let mut counts = ChannelCounts {
                    total: recipients + excluded,
                    suppressed: excluded,
                    ..ChannelCounts::default()
                };
                counts.recompute_pending();
                (*channel, counts)
            })
            .collect();
        Self {
            pages_total: pages,
            recipients,
            excluded,
            channels,
            ..Self::default()
        }
    }

    /// Whole-request completion in percent, for the Temporal UI search attribute.
    pub fn percent(&self) -> i64 {
        if self.pages_total == 0 {
            return 0;
        }
        i64::from(self.pages_done) * 100 / i64::from(self.pages_total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_follows_the_other_counts() {
        let mut c = ChannelCounts {
            total: 10,
            ..Default::default()
        };
        c.recompute_pending();
        assert_eq!(c.pending, 10);
        c.absorb(6, 1, 2, 0);
        assert_eq!(c.pending, 1);
        c.absorb(0, 0, 0, 1);
        assert_eq!(c.pending, 0);
    }

    #[test]
    fn statuses_round_trip() {
        for s in ["pending", "delivered", "failed", "suppressed", "cancelled"] {
            assert_eq!(s.parse::<DeliveryStatus>().unwrap().as_str(), s);
        }
        for s in ["running", "completed", "cancelled", "failed"] {
            assert_eq!(s.parse::<RequestState>().unwrap().as_str(), s);
        }
    }
}
