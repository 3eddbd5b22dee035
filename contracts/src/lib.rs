//! The contracts between the API, the workflows and the activities: workflow and activity
//! names, signals, the query, search attributes, and every input and output.
//!
//! The API starts and signals workflows through the marker types here, and the workflows call
//! activities through [`DeliveryActivities`], so neither needs the crate that implements the
//! other side. Payloads are a stored schema (they live in Temporal histories, and the store
//! keeps a request's [`NotificationInput`]): change them only additively, with
//! `#[serde(default)]` on new fields.
//!
//! Layout: the names and server settings are here; [`notification`] is the request's own
//! workflow with its signals, [`tree`] the audience resolution and page children and the
//! delivery activity's input and report, [`redrive`] the re-drive of dead letters,
//! [`direct`] the one-call path of small requests, [`digest`] the digest that closes into a
//! request, and [`activities`] declares every activity.

use temporalio_common::search_attributes::SearchAttributeKey;

/// Declares a marker for the workflow type `$name` with its input and output, so callers start
/// and address it without depending on the implementation. `client` markers can also be
/// started from a client (`HasWorkflowDefinition`); the others are children.
macro_rules! workflow_marker {
    ($(#[$doc:meta])* $marker:ident, $name:expr, $input:ty => $output:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $marker;

        impl temporalio_common::WorkflowDefinition for $marker {
            type Input = $input;
            type Output = $output;

            fn name(&self) -> &str {
                $name
            }
        }
    };
    ($(#[$doc:meta])* $marker:ident, $name:expr, $input:ty => $output:ty, client) => {
        workflow_marker!($(#[$doc])* $marker, $name, $input => $output);

        impl temporalio_common::HasWorkflowDefinition for $marker {
            type Run = Self;
        }
    };
}

pub mod activities;
pub mod digest;
pub mod direct;
pub mod notification;
pub mod redrive;
pub mod tree;

pub use activities::{
    ApplyControls, ApplyTemplateQuota, BeginRedrive, CloseDigest, DeliverDirect, DeliverPage,
    DeliveryActivities, FinalizeRequest, PlanDeferred, PlanRelease, ReleaseRequest,
    ResolveAudienceChunk,
};
pub use digest::*;
pub use direct::{DeliverDirectInput, DirectReport};
pub use fanout_domain::request::RequestControls;
pub use notification::*;
pub use redrive::*;
pub use tree::*;

/// The Temporal workflow type that runs one notification request.
pub const NOTIFICATION_WORKFLOW: &str = "NotificationWorkflow";
/// The child workflow that materialises a request's audience snapshot.
pub const RESOLVE_AUDIENCE_WORKFLOW: &str = "ResolveAudienceWorkflow";
/// The workflow that delivers a request's dead letters again.
pub const REDRIVE_WORKFLOW: &str = "RedriveWorkflow";
/// The child workflow that delivers one page of the audience over every channel.
pub const FANOUT_PAGE_WORKFLOW: &str = "FanoutPageWorkflow";
/// The workflow that closes one digest when its window ends and delivers it.
pub const DIGEST_WORKFLOW: &str = "DigestWorkflow";
/// Every workflow type, in the order the worker registers them.
pub const WORKFLOW_NAMES: [&str; 5] = [
    NOTIFICATION_WORKFLOW,
    RESOLVE_AUDIENCE_WORKFLOW,
    FANOUT_PAGE_WORKFLOW,
    REDRIVE_WORKFLOW,
    DIGEST_WORKFLOW,
];
/// Every activity type of [`DeliveryActivities`], in declaration order. These names are in
/// every recorded history: renaming one breaks the replay of running requests.
pub const ACTIVITY_NAMES: [&str; 11] = [
    "resolve_audience_chunk",
    "begin_redrive",
    "deliver_page",
    "deliver_direct",
    "finalize_request",
    "apply_controls",
    "apply_template_quota",
    "release_request",
    "plan_release",
    "plan_deferred",
    "close_digest",
];
/// The query that returns a running request's progress
/// ([`fanout_domain::receipt::Progress`]).
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
/// Update: move a scheduled request's start ([`Reschedule`]); refused once it has started.
pub const RESCHEDULE_UPDATE: &str = "reschedule";

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
            DeliveryActivities::release_request.name(),
            DeliveryActivities::plan_release.name(),
            DeliveryActivities::plan_deferred.name(),
            DeliveryActivities::close_digest.name(),
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
