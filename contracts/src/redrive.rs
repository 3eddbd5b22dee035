//! The re-drive of a request's dead letters.

use fanout_domain::receipt::Progress;
use fanout_domain::{Channel, InstanceId, RequestId, TenantId};
use serde::{Deserialize, Serialize};

use crate::{NotificationInput, REDRIVE_WORKFLOW};

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

workflow_marker!(
    /// Marker for starting [`REDRIVE_WORKFLOW`] from a client.
    RedriveWorkflow,
    REDRIVE_WORKFLOW,
    RedriveInput => Progress,
    client
);
