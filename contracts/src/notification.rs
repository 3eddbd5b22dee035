//! The request's own workflow: its input, what one run carries to the next, its outcome,
//! the progress query and the operator signals.

use fanout_domain::receipt::{Progress, RequestState};
use fanout_domain::request::{DeliveryPath, Priority, RecipientsQuery, RequestControls};
use fanout_domain::timing::LocalTime;
use fanout_domain::{Channel, RequestId, TemplateId, TenantId, UnixMillis, UserId};
use serde::{Deserialize, Serialize};
use temporalio_common::{QueryDefinition, SignalDefinition, UpdateDefinition};

use crate::{
    AudienceSnapshot, NOTIFICATION_WORKFLOW, PAUSE_SIGNAL, PROGRESS_QUERY, RESCHEDULE_UPDATE,
    RESUME_SIGNAL, SET_RATE_SIGNAL, SET_TEMPLATE_QUOTA_SIGNAL,
};

/// The input of [`NOTIFICATION_WORKFLOW`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationInput {
    /// The request (equal to the workflow id).
    pub request_id: RequestId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The template rendering every channel.
    pub template_id: TemplateId,
    /// The audience.
    pub recipients: RecipientsQuery,
    /// Channels to deliver over.
    pub channels: Vec<Channel>,
    /// Template variables (a JSON object).
    #[serde(default)]
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Urgency.
    #[serde(default)]
    pub priority: Priority,
    /// How long delivery stays worth attempting.
    #[serde(default)]
    pub ttl_seconds: Option<u32>,
    /// When the API accepted the request.
    pub accepted_at_ms: UnixMillis,
    /// State handed from one run to the next by continue-as-new; `None` on the first run.
    #[serde(default)]
    pub carry: Option<Carry>,
    /// Whether the request runs as a tree of child workflows or directly in its own workflow;
    /// inputs recorded before the direct path existed read as the tree.
    #[serde(default)]
    pub path: DeliveryPath,
    /// Who triggered the request; left out of a followers or segment audience when it is
    /// resolved (an explicit list has the actor removed by the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<UserId>,
    /// When to start, for a request sent with `send_at` or `delay_seconds`: the workflow waits
    /// on a durable timer until then (the `reschedule` update moves it). `None` runs at once,
    /// as every input recorded before scheduling existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at_ms: Option<UnixMillis>,
    /// For a `send_at_local` request: the wall-clock time each recipient gets it at in their
    /// own zone. Such a request always takes the tree: after resolution its snapshot is
    /// regrouped by release instant (`plan_release`) and each group waits on one timer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_time: Option<LocalTime>,
    /// Whether recipients' quiet hours defer this request's deliveries: set by the API for a
    /// request below `high` priority, whose template's category does not bypass them, of a
    /// tenant that uses quiet hours. Deferred deliveries wait as `deferred` receipts; the direct
    /// path sleeps until each release bucket, the tree releases them after its pages (see
    /// `plan_deferred`). `false` in every input recorded before quiet hours existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quiet_hours: bool,
}

/// Recipients of a local-time request who get it at the same instant: a run of snapshot pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseGroup {
    /// When they get it.
    pub at_ms: UnixMillis,
    /// The group's first page.
    pub first_page: u32,
    /// How many pages it spans.
    pub pages: u32,
    /// How many recipients it holds.
    pub recipients: u64,
}

impl ReleaseGroup {
    /// The page after the group's last.
    pub fn end(&self) -> u32 {
        self.first_page + self.pages
    }
}

/// Input of `plan_release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanReleaseInput {
    /// The request.
    pub request_id: RequestId,
    /// Its tenant (whose default zone applies to users without one).
    pub tenant_id: TenantId,
    /// The wall-clock time.
    pub local_time: LocalTime,
    /// When the request was accepted: times already past then, in a recipient's zone, are
    /// tomorrow's.
    pub accepted_at_ms: UnixMillis,
    /// The snapshot's pages as resolved.
    pub pages: u32,
}

/// Input of `plan_deferred`: a quiet-hours request whose pages have all run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDeferredInput {
    /// The request.
    pub request_id: RequestId,
    /// The snapshot's pages so far: the deferred recipients move to pages after these.
    pub pages: u32,
}

/// What `plan_release` returns: the regrouped snapshot's groups, earliest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasePlan {
    /// The groups, in release order, covering pages `0..pages`.
    pub groups: Vec<ReleaseGroup>,
    /// The snapshot's pages after regrouping.
    pub pages: u32,
}

/// Input (and answer) of [`RESCHEDULE_UPDATE`]: the request's new start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reschedule {
    /// When the request now starts; at or before the workflow's time, at once.
    pub run_at_ms: UnixMillis,
}

/// Input of `release_request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInput {
    /// The scheduled request whose time came.
    pub request_id: RequestId,
}

/// What a [`NOTIFICATION_WORKFLOW`] run hands to its continuation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carry {
    /// The audience snapshot, resolved once by the first run.
    pub snapshot: AudienceSnapshot,
    /// The first page not yet started.
    pub next_page: u32,
    /// Counts so far.
    pub progress: Progress,
    /// Pause and rate as last set.
    pub controls: RequestControls,
    /// Runs so far, this one included.
    pub runs: u32,
    /// A local-time request's release groups (empty for any other).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<ReleaseGroup>,
    /// Set once a quiet-hours request planned its deferred deliveries: `groups` are then
    /// theirs, and the request ends when they are done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub swept: bool,
}

/// Input of [`SET_RATE_SIGNAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Deliveries per second; `None` removes the cap.
    pub per_second: Option<u32>,
}

/// Input of [`SET_TEMPLATE_QUOTA_SIGNAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateQuota {
    /// Deliveries per second across every request of the template; `None` removes the quota.
    pub per_second: Option<u32>,
}

/// Input of `apply_template_quota`: a workflow writing its template's quota through to the
/// store, where every delivery of the template reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyTemplateQuotaInput {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The template.
    pub template_id: TemplateId,
    /// The quota; `None` removes it.
    pub per_second: Option<u32>,
}

/// What [`NOTIFICATION_WORKFLOW`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationOutcome {
    /// How the request ended.
    pub state: RequestState,
    /// Final counts.
    pub progress: Progress,
}

workflow_marker!(
    /// Marker for starting and addressing [`NOTIFICATION_WORKFLOW`].
    NotificationWorkflow,
    NOTIFICATION_WORKFLOW,
    NotificationInput => NotificationOutcome,
    client
);

/// Marker for [`PROGRESS_QUERY`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgressQuery;

impl QueryDefinition for ProgressQuery {
    type Workflow = NotificationWorkflow;
    type Input = ();
    type Output = Progress;

    fn name(&self) -> &str {
        PROGRESS_QUERY
    }
}

macro_rules! signal_marker {
    ($(#[$doc:meta])* $marker:ident, $name:expr, $input:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $marker;

        impl SignalDefinition for $marker {
            type Workflow = NotificationWorkflow;
            type Input = $input;

            fn name(&self) -> &str {
                $name
            }
        }
    };
}

signal_marker!(
    /// Marker for [`PAUSE_SIGNAL`].
    PauseSignal,
    PAUSE_SIGNAL,
    ()
);
signal_marker!(
    /// Marker for [`RESUME_SIGNAL`].
    ResumeSignal,
    RESUME_SIGNAL,
    ()
);
signal_marker!(
    /// Marker for [`SET_RATE_SIGNAL`].
    SetRateSignal,
    SET_RATE_SIGNAL,
    RateLimit
);
signal_marker!(
    /// Marker for [`SET_TEMPLATE_QUOTA_SIGNAL`].
    SetTemplateQuotaSignal,
    SET_TEMPLATE_QUOTA_SIGNAL,
    TemplateQuota
);

/// Marker for [`RESCHEDULE_UPDATE`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RescheduleUpdate;

impl UpdateDefinition for RescheduleUpdate {
    type Workflow = NotificationWorkflow;
    type Input = Reschedule;
    type Output = Reschedule;

    fn name(&self) -> &str {
        RESCHEDULE_UPDATE
    }
}
