//! Digests (see `fanout_domain::digest`): the workflow that closes one digest when its window
//! ends and delivers it as a request of its own, and the activity that closes it.

use fanout_domain::receipt::RequestState;
use fanout_domain::{DigestId, TemplateId, TenantId, UnixMillis};
use serde::{Deserialize, Serialize};

use crate::{DIGEST_WORKFLOW, NotificationInput};

/// The input of [`DIGEST_WORKFLOW`], started by the API when a trigger opens a digest; its
/// workflow id is the digest id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestInput {
    /// The digest.
    pub digest_id: DigestId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The digest template.
    pub template_id: TemplateId,
    /// When the window ends (the store's clock, Unix milliseconds).
    pub closes_at_ms: UnixMillis,
}

/// Input of `close_digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseDigestInput {
    /// The digest.
    pub digest_id: DigestId,
}

/// What `close_digest` answers: the request the digest closed into, recorded in the store and
/// for the workflow to start (`None` when every trigger of the digest was cancelled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedDigest {
    /// The digest's request: its audience is every user its triggers name.
    #[serde(default)]
    pub request: Option<NotificationInput>,
    /// How many triggers the digest collected.
    #[serde(default)]
    pub items: u64,
}

/// What [`DIGEST_WORKFLOW`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestOutcome {
    /// How many triggers the digest collected.
    pub items: u64,
    /// How its request ended; `None` when it had nothing to deliver.
    #[serde(default)]
    pub state: Option<RequestState>,
}

workflow_marker!(
    /// Marker for starting [`DIGEST_WORKFLOW`] from a client.
    DigestWorkflow,
    DIGEST_WORKFLOW,
    DigestInput => DigestOutcome,
    client
);
