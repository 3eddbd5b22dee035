//! `FanoutPageWorkflow`: one page of the audience over every channel, one activity per channel,
//! concurrently. Cancelling it cancels the activities and waits until they have stopped.

use fanout_domain::contracts::{
    DeliverPageInput, DeliveryActivities, FanoutPageInput, PageOutcome,
};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::join_all;
use temporalio_sdk::{WorkflowContext, WorkflowResult};

use crate::options;

/// A page has no state worth querying; the parent aggregates.
#[workflow]
#[derive(Default)]
pub struct FanoutPageWorkflow;

#[workflow_methods]
impl FanoutPageWorkflow {
    /// Delivers the page and reports per-channel counts.
    #[run(name = "FanoutPageWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: FanoutPageInput,
    ) -> WorkflowResult<PageOutcome> {
        let sends = input.channels.iter().map(|channel| {
            ctx.execute_activity(
                DeliveryActivities::deliver_page,
                DeliverPageInput {
                    request_id: input.request_id.clone(),
                    tenant_id: input.tenant_id.clone(),
                    template_id: input.template_id.clone(),
                    channel: *channel,
                    page: input.page,
                    data: input.data.clone(),
                    priority: input.priority,
                    ttl_seconds: input.ttl_seconds,
                },
                options::delivery_activity(),
            )
        });
        let mut reports = Vec::with_capacity(input.channels.len());
        for result in join_all(sends).await {
            reports.push(result?);
        }
        Ok(PageOutcome {
            page: input.page,
            reports,
        })
    }
}
