//! The contracts between the API, the workflows and the activities: names and payload types.
//!
//! The API starts and queries workflows through the marker types here, and the workflows call
//! activities through [`delivery_activities`], so neither needs the crate that implements the
//! other side. Payloads are a stored schema (they live in Temporal histories): change them only
//! additively, with `#[serde(default)]` on new fields.

use serde::{Deserialize, Serialize};
use temporalio_common::search_attributes::SearchAttributeKey;
use temporalio_common::{
    ActivityError, HasWorkflowDefinition, QueryDefinition, WorkflowDefinition,
};
use temporalio_macros::activity_definitions;

use crate::receipt::{Progress, RequestState};
use crate::request::{Priority, RecipientsQuery};
use crate::{Channel, RequestId, TemplateId, TenantId, UnixMillis};

/// The Temporal workflow type that runs one notification request.
pub const NOTIFICATION_WORKFLOW: &str = "NotificationWorkflow";
/// The query that returns a running request's [`Progress`].
pub const PROGRESS_QUERY: &str = "progress";

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

/// Input of `resolve_audience`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveAudienceInput {
    /// The request whose audience is materialised.
    pub request_id: RequestId,
    /// The tenant owning the users.
    pub tenant_id: TenantId,
    /// Who to resolve.
    pub recipients: RecipientsQuery,
}

/// The audience snapshot, by reference: the user ids stay in the store so workflow history
/// grows per page, not per recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceSnapshot {
    /// Recipients in the snapshot.
    pub recipients: u64,
    /// Pages, numbered `0..pages`.
    pub pages: u32,
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
    /// Suppressed (no address, unknown user).
    pub suppressed: u64,
}

/// Input of `finalize_request`: the request's last word, written to the store so status is
/// served without the workflow once it has closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalizeInput {
    /// The request.
    pub request_id: RequestId,
    /// How it ended.
    pub state: RequestState,
    /// Final counts.
    pub progress: Progress,
}

/// Markers naming each activity, for `#[activity(definition = ...)]` on the implementation.
pub use delivery_activities::{DeliverPage, FinalizeRequest, ResolveAudience};

/// The activities the workflows call, declared here and implemented in `fanout-activities`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryActivities;

#[activity_definitions]
impl DeliveryActivities {
    /// Materialises the audience snapshot into the store, in pages.
    #[activity(name = "resolve_audience")]
    pub fn resolve_audience(
        input: ResolveAudienceInput,
    ) -> Result<AudienceSnapshot, ActivityError> {
        unimplemented!()
    }

    /// Renders and delivers one page over one channel, recording a receipt per instance.
    #[activity(name = "deliver_page")]
    pub fn deliver_page(input: DeliverPageInput) -> Result<PageReport, ActivityError> {
        unimplemented!()
    }

    /// Records the request's final state and counts.
    #[activity(name = "finalize_request")]
    pub fn finalize_request(input: FinalizeInput) -> Result<(), ActivityError> {
        unimplemented!()
    }
}
