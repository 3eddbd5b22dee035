//! The contracts between the API, the workflows and the activities: names and payload types.
//!
//! The API starts and queries workflows through the marker types here, and the workflows call
//! activities through [`delivery_activities`], so neither needs the crate that implements the
//! other side. Payloads are a stored schema (they live in Temporal histories): change them only
//! additively, with `#[serde(default)]` on new fields.

use serde::{Deserialize, Serialize};
use temporalio_common::search_attributes::SearchAttributeKey;
use temporalio_common::{
    ActivityError, HasWorkflowDefinition, QueryDefinition, SignalDefinition, WorkflowDefinition,
};
use temporalio_macros::activity_definitions;

mod direct;

pub use direct::{DeliverDirectInput, DirectReport};

use fanout_domain::receipt::{DeliveryStatus, Progress, RequestState};
pub use fanout_domain::request::RequestControls;
use fanout_domain::request::{DeliveryPath, Priority, RecipientsQuery};
use fanout_domain::{Channel, InstanceId, RequestId, TemplateId, TenantId, UnixMillis, UserId};

/// The Temporal workflow type that runs one notification request.
pub const NOTIFICATION_WORKFLOW: &str = "NotificationWorkflow";
/// The child workflow that materialises a request's audience snapshot.
pub const RESOLVE_AUDIENCE_WORKFLOW: &str = "ResolveAudienceWorkflow";
/// The workflow that delivers a request's dead letters again.
pub const REDRIVE_WORKFLOW: &str = "RedriveWorkflow";
/// The child workflow that delivers one page of the audience over every channel.
pub const FANOUT_PAGE_WORKFLOW: &str = "FanoutPageWorkflow";
/// Every workflow type, in the order the worker registers them.
pub const WORKFLOW_NAMES: [&str; 4] = [
    NOTIFICATION_WORKFLOW,
    RESOLVE_AUDIENCE_WORKFLOW,
    FANOUT_PAGE_WORKFLOW,
    REDRIVE_WORKFLOW,
];
/// Every activity type of [`DeliveryActivities`], in declaration order. These names are in
/// every recorded history: renaming one breaks the replay of running requests.
pub const ACTIVITY_NAMES: [&str; 7] = [
    "resolve_audience_chunk",
    "begin_redrive",
    "deliver_page",
    "deliver_direct",
    "finalize_request",
    "apply_controls",
    "apply_template_quota",
];
/// The query that returns a running request's [`Progress`].
pub const PROGRESS_QUERY: &str = "progress";
/// Signal: stop starting pages and hold in-flight deliveries.
pub const PAUSE_SIGNAL: &str = "pause";
/// Signal: undo [`PAUSE_SIGNAL`].
pub const RESUME_SIGNAL: &str = "resume";
/// Signal: cap the request's deliveries per second ([`RateLimit`]).
pub const SET_RATE_SIGNAL: &str = "set_rate";
/// Signal: the request's template got a new quota ([`TemplateQuota`]), sent by the API to
/// every running request of the template.
pub const SET_TEMPLATE_QUOTA_SIGNAL: &str = "set_template_quota";

/// Search attribute: the request's tenant.
pub const SA_TENANT_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("TenantId");
/// Search attribute: the request's template.
pub const SA_TEMPLATE_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("TemplateId");
/// Search attribute: the request id (equal to the workflow id, kept for uniform filtering).
pub const SA_REQUEST_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("RequestId");
/// Search attribute: completion in percent, upserted as pages finish.
pub const SA_PROGRESS_PERCENT: SearchAttributeKey<i64> = SearchAttributeKey::int("ProgressPercent");

/// Every custom search attribute with its Temporal type name, for registration at start-up
/// (`temporal operator search-attribute create --name N --type T`).
pub const SEARCH_ATTRIBUTES: [(&str, &str); 4] = [
    ("TenantId", "Keyword"),
    ("TemplateId", "Keyword"),
    ("RequestId", "Keyword"),
    ("ProgressPercent", "Int"),
];

/// The dynamic config every Temporal server Fanout runs on needs (`temporal server start-dev
/// --dynamic-config-value KEY=VALUE`; `dynamicConfig` in a self-hosted deployment; a namespace
/// setting in Temporal Cloud). Fairness dispatches queued tasks across tenants (the fairness
/// key of every start) in proportion to their weights, within each priority level; it implies
/// the priority matcher. One partition per task queue keeps that order exact on one server:
/// priority and fairness are enforced per partition, and the dev server gains nothing from four.
/// `scripts/lib.sh` keeps the same list for `make up`.
pub const DEV_SERVER_DYNAMIC_CONFIG: [(&str, &str); 3] = [
    ("matching.enableFairness", "true"),
    ("matching.numTaskqueueReadPartitions", "1"),
    ("matching.numTaskqueueWritePartitions", "1"),
];

/// Non-retryable activity failure type: the template does not exist (any more).
pub const ERR_TEMPLATE_MISSING: &str = "TemplateMissing";
/// Non-retryable activity failure type: the template failed to render.
pub const ERR_TEMPLATE_RENDER: &str = "TemplateRender";
/// Non-retryable activity failure type: the input cannot be processed.
pub const ERR_INVALID_INPUT: &str = "InvalidInput";

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

/// Marker for starting and addressing [`NOTIFICATION_WORKFLOW`] without depending on the
/// workflow implementation.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotificationWorkflow;

impl WorkflowDefinition for NotificationWorkflow {
    type Input = NotificationInput;
    type Output = NotificationOutcome;

    fn name(&self) -> &str {
        NOTIFICATION_WORKFLOW
    }
}

impl HasWorkflowDefinition for NotificationWorkflow {
    type Run = Self;
}

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
}

/// What [`FANOUT_PAGE_WORKFLOW`] returns: one report per channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageOutcome {
    /// The page.
    pub page: u32,
    /// Per-channel counts.
    pub reports: Vec<PageReport>,
}

/// Marker for starting [`RESOLVE_AUDIENCE_WORKFLOW`] as a child.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResolveAudienceWorkflow;

impl WorkflowDefinition for ResolveAudienceWorkflow {
    type Input = ResolveAudienceInput;
    type Output = AudienceSnapshot;

    fn name(&self) -> &str {
        RESOLVE_AUDIENCE_WORKFLOW
    }
}

/// Marker for starting [`FANOUT_PAGE_WORKFLOW`] as a child.
#[derive(Debug, Clone, Copy, Default)]
pub struct FanoutPageWorkflow;

impl WorkflowDefinition for FanoutPageWorkflow {
    type Input = FanoutPageInput;
    type Output = PageOutcome;

    fn name(&self) -> &str {
        FANOUT_PAGE_WORKFLOW
    }
}

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
}

impl PageReport {
    /// Whether this round leaves nothing more to do for the page's channel: nothing pending,
    /// or the last round ran with no send held by a breaker or a switch. The page workflow
    /// stops its rounds on this, and the activity records the page as finished on it.
    pub fn finishes_channel(&self, final_round: bool) -> bool {
        self.pending == 0 || (final_round && self.held == 0)
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

/// Input of [`REDRIVE_WORKFLOW`]: which dead letters of a request to deliver again, with the
/// request's own content. The workflow takes them off the list first (an activity, so an API
/// failure before the start changes nothing), then delivers their pages and recounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedriveInput {
    /// The request whose dead letters are re-driven, as it was started.
    pub request: NotificationInput,
    /// Identifies this re-drive (its pages run as `{redrive_id}/page-{n}` children).
    pub redrive_id: String,
    /// Only this channel's dead letters.
    #[serde(default)]
    pub channel: Option<Channel>,
    /// Only these instances.
    #[serde(default)]
    pub instance_ids: Option<Vec<InstanceId>>,
    /// The request's counts before the re-drive, recounted per channel at the end.
    pub progress: Progress,
}

/// Input of `begin_redrive`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeginRedriveInput {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The request.
    pub request_id: RequestId,
    /// Only this channel's dead letters.
    #[serde(default)]
    pub channel: Option<Channel>,
    /// Only these instances.
    #[serde(default)]
    pub instance_ids: Option<Vec<InstanceId>>,
}

/// One page of a re-drive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedrivePage {
    /// The page of the audience snapshot.
    pub page: u32,
    /// The channels with re-driven instances on it.
    pub channels: Vec<Channel>,
}

/// Marker for starting [`REDRIVE_WORKFLOW`] from a client.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedriveWorkflow;

impl WorkflowDefinition for RedriveWorkflow {
    type Input = RedriveInput;
    type Output = Progress;

    fn name(&self) -> &str {
        REDRIVE_WORKFLOW
    }
}

impl HasWorkflowDefinition for RedriveWorkflow {
    type Run = Self;
}

/// Markers naming each activity, for `#[activity(definition = ...)]` on the implementation.
pub use delivery_activities::{
    ApplyControls, ApplyTemplateQuota, BeginRedrive, DeliverDirect, DeliverPage, FinalizeRequest,
    ResolveAudienceChunk,
};

/// The activities the workflows call, declared here and implemented in `fanout-activities`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryActivities;

#[activity_definitions]
impl DeliveryActivities {
    /// Writes the next pages of the audience snapshot into the store.
    #[activity(name = "resolve_audience_chunk")]
    pub fn resolve_audience_chunk(input: ResolveChunkInput) -> Result<ResolveChunk, ActivityError> {
        unimplemented!()
    }

    /// Takes a request's matching dead letters off the list, puts their receipts back to
    /// pending and returns the pages to deliver again.
    #[activity(name = "begin_redrive")]
    pub fn begin_redrive(input: BeginRedriveInput) -> Result<Vec<RedrivePage>, ActivityError> {
        unimplemented!()
    }

    /// Renders and delivers one page over one channel, recording a receipt per instance.
    #[activity(name = "deliver_page")]
    pub fn deliver_page(input: DeliverPageInput) -> Result<PageReport, ActivityError> {
        unimplemented!()
    }

    /// Resolves a small audience and delivers it over every channel in one call, recording the
    /// request's outcome when nothing is left pending (the direct path).
    #[activity(name = "deliver_direct")]
    pub fn deliver_direct(input: DeliverDirectInput) -> Result<DirectReport, ActivityError> {
        unimplemented!()
    }

    /// Records the request's final state and counts; for a cancelled request it first records
    /// every unsettled instance as cancelled and returns the recounted progress.
    #[activity(name = "finalize_request")]
    pub fn finalize_request(input: FinalizeInput) -> Result<Progress, ActivityError> {
        unimplemented!()
    }

    /// Writes the request's controls to the store, where delivery activities obey them.
    #[activity(name = "apply_controls")]
    pub fn apply_controls(input: ApplyControlsInput) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Writes a template's quota to the store, where delivery activities obey it.
    #[activity(name = "apply_template_quota")]
    pub fn apply_template_quota(input: ApplyTemplateQuotaInput) -> Result<(), ActivityError> {
        unimplemented!()
    }
}

#[cfg(test)]
mod tests {
    use temporalio_common::ActivityDefinition;

    use super::DeliveryActivities;

    /// The list the worker's registration test checks against is the declarations' own.
    #[test]
    fn the_activity_list_is_the_declared_activities() {
        let declared = [
            DeliveryActivities::resolve_audience_chunk.name(),
            DeliveryActivities::begin_redrive.name(),
            DeliveryActivities::deliver_page.name(),
            DeliveryActivities::deliver_direct.name(),
            DeliveryActivities::finalize_request.name(),
            DeliveryActivities::apply_controls.name(),
            DeliveryActivities::apply_template_quota.name(),
        ];
        assert_eq!(declared, super::ACTIVITY_NAMES);
    }

    /// `make up` starts its server from `scripts/lib.sh`, the tests from these constants: a
    /// search attribute or setting added to one must be added to the other.
    #[test]
    fn the_scripts_start_the_server_with_the_same_attributes_and_settings() {
        let lib = include_str!("../../scripts/lib.sh");
        let list = |name: &str| -> Vec<String> {
            let line = lib
                .lines()
                .find(|l| l.starts_with(&format!("{name}=(")))
                .unwrap_or_else(|| panic!("scripts/lib.sh sets no {name}"));
            line[name.len() + 2..line.len() - 1]
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        let pairs = |items: &[(&str, &str)]| -> Vec<String> {
            items.iter().map(|(k, v)| format!("{k}={v}")).collect()
        };
        assert_eq!(list("SEARCH_ATTRIBUTES"), pairs(&super::SEARCH_ATTRIBUTES));
        assert_eq!(
            list("DYNAMIC_CONFIG"),
            pairs(&super::DEV_SERVER_DYNAMIC_CONFIG)
        );
    }
}
