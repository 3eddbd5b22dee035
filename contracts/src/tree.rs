//! The tree path's children and their activities: audience resolution into stored pages,
//! one child per page, and the delivery of one page over one channel.

use std::time::Duration;

use fanout_domain::receipt::{DeliveryStatus, Progress, RequestState};
use fanout_domain::request::{Priority, RecipientsQuery, RequestControls};
use fanout_domain::retry::RoundOutcome;
use fanout_domain::{Channel, RequestId, TemplateId, TenantId, UnixMillis, UserId};
use serde::{Deserialize, Serialize};

use crate::{FANOUT_PAGE_WORKFLOW, RESOLVE_AUDIENCE_WORKFLOW};

/// Input of [`RESOLVE_AUDIENCE_WORKFLOW`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveAudienceInput {
    /// The request whose audience is materialised.
    pub request_id: RequestId,
    /// The tenant owning the users.
    pub tenant_id: TenantId,
    /// Who to resolve.
    pub recipients: RecipientsQuery,
    /// Where a previous run (before continue-as-new) stopped.
    #[serde(default)]
    pub resume: Option<ResolveChunk>,
    /// A user left out of the audience (the request's actor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<UserId>,
}

/// The audience snapshot, by reference: the user ids stay in the store so workflow history
/// grows per page, not per recipient.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceSnapshot {
    /// Recipients in the snapshot.
    pub recipients: u64,
    /// Pages, numbered `0..pages`.
    pub pages: u32,
    /// Audience members left out because their user no longer exists (counted as suppressed).
    #[serde(default)]
    pub excluded: u64,
}

/// Input of `resolve_audience_chunk`: resolve up to `max_pages` pages after `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveChunkInput {
    /// The request.
    pub request_id: RequestId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// Who to resolve.
    pub recipients: RecipientsQuery,
    /// The keyset cursor: the last user id already in the snapshot.
    pub after: Option<UserId>,
    /// The number the first page written gets.
    pub first_page: u32,
    /// Pages to write at most in this call.
    pub max_pages: u32,
    /// A user left out of the audience (the request's actor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<UserId>,
}

/// Where resolution stands after a chunk: totals so far and the cursor to go on from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveChunk {
    /// Pages written so far.
    pub pages: u32,
    /// Recipients in those pages.
    pub recipients: u64,
    /// Members left out so far.
    pub excluded: u64,
    /// The last user id written; resolution goes on after it.
    pub after: Option<UserId>,
    /// Whether the audience is exhausted.
    pub done: bool,
}

/// Input of [`FANOUT_PAGE_WORKFLOW`]: one page of the snapshot over every channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutPageInput {
    /// The request.
    pub request_id: RequestId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The template.
    pub template_id: TemplateId,
    /// Channels to deliver over.
    pub channels: Vec<Channel>,
    /// The page of the audience snapshot.
    pub page: u32,
    /// Template variables.
    #[serde(default)]
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Urgency.
    #[serde(default)]
    pub priority: Priority,
    /// How long delivery stays worth attempting.
    #[serde(default)]
    pub ttl_seconds: Option<u32>,
    /// Whether recipients' quiet hours defer deliveries (see `NotificationInput::quiet_hours`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quiet_hours: bool,
    /// Deferred deliveries released at or before this instant go out now: set on the pages of
    /// a release group to the group's instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_through_ms: Option<UnixMillis>,
}

/// What [`FANOUT_PAGE_WORKFLOW`] returns: one report per channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageOutcome {
    /// The page.
    pub page: u32,
    /// Per-channel counts.
    pub reports: Vec<PageReport>,
}

workflow_marker!(
    /// Marker for starting [`RESOLVE_AUDIENCE_WORKFLOW`] as a child.
    ResolveAudienceWorkflow,
    RESOLVE_AUDIENCE_WORKFLOW,
    ResolveAudienceInput => AudienceSnapshot
);

workflow_marker!(
    /// Marker for starting [`FANOUT_PAGE_WORKFLOW`] as a child.
    FanoutPageWorkflow,
    FANOUT_PAGE_WORKFLOW,
    FanoutPageInput => PageOutcome
);

/// Input of `apply_controls`: the workflow writing its controls through to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyControlsInput {
    /// The request.
    pub request_id: RequestId,
    /// The controls now in force.
    pub controls: RequestControls,
}

/// Input of `deliver_page`: one page of the audience over one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliverPageInput {
    /// The request.
    pub request_id: RequestId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The template.
    pub template_id: TemplateId,
    /// The channel to deliver over.
    pub channel: Channel,
    /// The page of the audience snapshot.
    pub page: u32,
    /// Template variables.
    #[serde(default)]
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Urgency.
    #[serde(default)]
    pub priority: Priority,
    /// How long delivery stays worth attempting.
    #[serde(default)]
    pub ttl_seconds: Option<u32>,
    /// Which delivery round of the page this is (0 first); see [`fanout_domain::retry`].
    #[serde(default)]
    pub round: u32,
    /// The page's last round: what still fails transiently is recorded as failed (and goes to
    /// the dead-letter list) instead of being left pending.
    #[serde(default)]
    pub final_round: bool,
    /// Whether recipients' quiet hours defer deliveries (see `NotificationInput::quiet_hours`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quiet_hours: bool,
    /// Deferred deliveries released at or before this instant go out now: set on the pages of
    /// a release group to the group's instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_through_ms: Option<UnixMillis>,
    /// A release page of the tree: only deliveries deferred by quiet hours are its business.
    /// Its other instances were settled and counted by the page the recipient was first on,
    /// so they are neither sent nor counted again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub release_only: bool,
}

/// The outcome of one page on one channel. Counts cover the whole page, including instances a
/// previous attempt already delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageReport {
    /// The channel.
    pub channel: Channel,
    /// The page.
    pub page: u32,
    /// Recipients on the page.
    pub total: u64,
    /// Delivered.
    pub delivered: u64,
    /// Failed permanently.
    pub failed: u64,
    /// Suppressed (no address, unknown user, opted out).
    pub suppressed: u64,
    /// Still waiting for a retry after a transient failure.
    #[serde(default)]
    pub pending: u64,
    /// Instances that reached a final status in this round.
    #[serde(default)]
    pub settled_this_round: u64,
    /// The longest `Retry-After` a provider asked for in this round, in milliseconds.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    /// Pending instances not attempted because their provider's circuit breaker was open;
    /// `retry_after_ms` then says when it will let probes through.
    #[serde(default)]
    pub held: u64,
    /// Pending instances not attempted because the activity's deadline for starting sends
    /// passed (the direct path's local activity handing over to a normal one).
    #[serde(default)]
    pub deferred: u64,
    /// Instances waiting for their recipients' quiet hours to end (not counted in `pending`:
    /// the page is done with them, the request releases them later).
    #[serde(default)]
    pub quiet: u64,
    /// The earliest release among them.
    #[serde(default)]
    pub quiet_until_ms: Option<UnixMillis>,
}

impl PageReport {
    /// Whether this round leaves nothing more to do for the page's channel: nothing pending,
    /// or the last round ran with no send held by a breaker or a switch. The page workflow
    /// stops its rounds on this, and the activity records the page as finished on it.
    pub fn finishes_channel(&self, final_round: bool) -> bool {
        self.pending == 0 || (final_round && self.held == 0)
    }

    /// The round as the retry backoff weighs it.
    pub fn round(&self) -> RoundOutcome {
        RoundOutcome {
            settled: self.settled_this_round,
            pending: self.pending,
            retry_after: self.retry_after_ms.map(Duration::from_millis),
        }
    }
}

/// Input of `finalize_request`: the request's last word, written to the store so status is
/// served without the workflow once it has closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalizeInput {
    /// The request.
    pub request_id: RequestId,
    /// How it ended.
    pub state: RequestState,
    /// Final counts as the workflow saw them.
    pub progress: Progress,
    /// The tenant (needed to settle receipts of a cancelled request).
    #[serde(default)]
    pub tenant_id: Option<TenantId>,
    /// The channels delivered over.
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// Record every instance not yet final with this status (after a cancel or a failed page);
    /// `None` when every page reported.
    #[serde(default)]
    pub settle_as: Option<DeliveryStatus>,
    /// Recount the channels from the receipts even without settling (after a re-drive).
    #[serde(default)]
    pub recount: bool,
}
