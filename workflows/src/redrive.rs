//! `RedriveWorkflow`: delivers a request's re-driven dead letters again, then recounts it.
//!
//! A `begin_redrive` activity takes the dead letters off the list and puts their receipts back
//! to `pending`; each page holding some then runs as a `FanoutPageWorkflow` child (the same delivery rounds and backoff as the first time,
//! skipping every instance already final), a window of [`WINDOW`] at a time, and the request's
//! per-channel counts are then recomputed from the receipts.

use fanout_contracts::{
    BeginRedriveInput, DeliveryActivities, FanoutPageInput, FinalizeInput, RedriveInput,
};
use fanout_domain::receipt::{Progress, RequestState};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::join_all;
use temporalio_sdk::{WorkflowContext, WorkflowResult};

use crate::{FanoutPageWorkflow, options};

/// Pages re-driven concurrently.
pub const WINDOW: usize = 8;

/// A re-drive has no state worth querying; the request's status shows the outcome.
#[workflow]
#[derive(Default)]
pub struct RedriveWorkflow;

#[workflow_methods]
impl RedriveWorkflow {
    /// Delivers the pages again and returns the request's recounted progress.
    #[run(name = fanout_contracts::REDRIVE_WORKFLOW)]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: RedriveInput,
    ) -> WorkflowResult<Progress> {
        let request = &input.request;
        let pages = ctx
            .execute_activity(
                DeliveryActivities::begin_redrive,
                BeginRedriveInput {
                    tenant_id: request.tenant_id.clone(),
                    request_id: request.request_id.clone(),
                    channel: input.channel,
                    instance_ids: input.instance_ids.clone(),
                },
                options::store_activity(),
            )
            .await?;
        for window in pages.chunks(WINDOW) {
            let starts = window.iter().map(|page| {
                ctx.start_child_workflow(
                    FanoutPageWorkflow,
                    FanoutPageInput {
                        request_id: request.request_id.clone(),
                        tenant_id: request.tenant_id.clone(),
                        template_id: request.template_id.clone(),
                        channels: page.channels.clone(),
                        page: page.page,
                        data: request.data.clone(),
                        priority: request.priority,
                        ttl_seconds: request.ttl_seconds,
                        // A re-drive is an operator's decision to send now.
                        quiet_hours: false,
                        release_through_ms: None,
                    },
                    options::child(format!("{}/page-{}", input.redrive_id, page.page)),
                )
            });
            let mut running = Vec::with_capacity(window.len());
            for started in join_all(starts).await {
                running.push(started?.result());
            }
            // A page that failed outright leaves its instances pending; the recount shows them.
            let _ = join_all(running).await;
        }
        let progress = ctx
            .execute_activity(
                DeliveryActivities::finalize_request,
                FinalizeInput {
                    request_id: request.request_id.clone(),
                    state: RequestState::Completed,
                    progress: input.progress.clone(),
                    tenant_id: Some(request.tenant_id.clone()),
                    channels: request.channels.clone(),
                    settle_as: None,
                    recount: true,
                },
                options::detached_store_activity(),
            )
            .await?;
        Ok(progress)
    }
}
