//! Every activity the workflows call, declared here (names, inputs, outputs) and
//! implemented in `fanout-activities`.

use fanout_domain::receipt::Progress;
use temporalio_common::ActivityError;
use temporalio_macros::activity_definitions;

use crate::{
    ApplyControlsInput, ApplyTemplateQuotaInput, BeginRedriveInput, CloseDigestInput, ClosedDigest,
    DeliverDirectInput, DeliverPageInput, DirectReport, FinalizeInput, PageReport,
    PlanDeferredInput, PlanReleaseInput, RedrivePage, ReleaseInput, ReleasePlan, ResolveChunk,
    ResolveChunkInput,
};

/// Markers naming each activity, for `#[activity(definition = ...)]` on the implementation.
pub use self::delivery_activities::{
    ApplyControls, ApplyTemplateQuota, BeginRedrive, CloseDigest, DeliverDirect, DeliverPage,
    FinalizeRequest, PlanDeferred, PlanRelease, ReleaseRequest, ResolveAudienceChunk,
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

    /// Records that a scheduled request's time came: its state goes from `scheduled` to
    /// `running`.
    #[activity(name = "release_request")]
    pub fn release_request(input: ReleaseInput) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Regroups a local-time request's snapshot by release instant (each recipient's zone, or
    /// the tenant's default) and returns the groups, earliest first.
    #[activity(name = "plan_release")]
    pub fn plan_release(input: PlanReleaseInput) -> Result<ReleasePlan, ActivityError> {
        unimplemented!()
    }

    /// Moves a quiet-hours request's deferred recipients to pages after its snapshot's, grouped
    /// by release bucket, and returns the groups, earliest first (none when nothing waits).
    #[activity(name = "plan_deferred")]
    pub fn plan_deferred(input: PlanDeferredInput) -> Result<ReleasePlan, ActivityError> {
        unimplemented!()
    }

    /// Closes a digest whose window ended and records the request it closes into (idempotent:
    /// a retry answers the same request).
    #[activity(name = "close_digest")]
    pub fn close_digest(input: CloseDigestInput) -> Result<ClosedDigest, ActivityError> {
        unimplemented!()
    }
}
