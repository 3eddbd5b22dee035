//! The naive baseline: one workflow, one activity per recipient (both channels), started in
//! waves of the same concurrency Fanout uses. Its history grows per recipient, which is why it
//! runs on a smaller audience (one workflow's history is capped at 51,200 events).

use std::sync::Arc;
use std::time::Duration;

use fanout_activities::EmailSender;
use fanout_domain::{RequestId, TenantId, UserId};
use fanout_store::Store;
use serde::{Deserialize, Serialize};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::workflows::join_all;
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

use crate::sink::{self, Content};

/// Input of the naive workflow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NaiveInput {
    /// The tenant.
    pub tenant_id: TenantId,
    /// A request id of its own.
    pub request_id: RequestId,
    /// Recipients, in the workflow input (the naive part).
    pub user_ids: Vec<UserId>,
    /// Template variables.
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Activities in flight per wave.
    pub concurrency: usize,
}

/// One recipient: a unit of the naive baseline, and a whole request of the minimal design
/// ([`crate::minimal`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OneInput {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The request.
    pub request_id: RequestId,
    /// The recipient.
    pub user_id: UserId,
    /// Template variables.
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// The baseline workflow.
#[workflow]
#[derive(Default)]
pub struct NaiveWorkflow;

#[workflow_methods]
impl NaiveWorkflow {
    /// Delivers to every recipient, one activity each; returns deliveries made.
    #[run(name = "BenchNaiveWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: NaiveInput) -> WorkflowResult<u64> {
        let mut delivered = 0;
        for wave in input.user_ids.chunks(input.concurrency.max(1)) {
            let calls = wave.iter().map(|user_id| {
                ctx.execute_activity(
                    NaiveActivities::deliver_one,
                    OneInput {
                        tenant_id: input.tenant_id.clone(),
                        request_id: input.request_id.clone(),
                        user_id: user_id.clone(),
                        data: input.data.clone(),
                    },
                    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60)).build(),
                )
            });
            for result in join_all(calls).await {
                delivered += result?;
            }
        }
        Ok(delivered)
    }
}

/// The baseline's one activity.
pub struct NaiveActivities {
    /// The store.
    pub store: Store,
    /// The SMTP adapter.
    pub sender: EmailSender,
    /// The compiled template.
    pub content: Content,
}

#[activities]
impl NaiveActivities {
    /// Delivers one recipient over both channels and records it.
    #[activity(name = "bench_deliver_one")]
    pub async fn deliver_one(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: OneInput,
    ) -> Result<u64, ActivityError> {
        let user = self
            .store
            .get_user(&input.tenant_id, &input.user_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no user {}", input.user_id))?;
        let (receipts, message) = sink::deliver(
            &self.sender,
            &self.content,
            &input.request_id,
            &user,
            &input.data,
        )
        .await;
        let delivered = receipts
            .iter()
            .filter(|r| r.status == fanout_domain::receipt::DeliveryStatus::Delivered)
            .count() as u64;
        let inbox: Vec<_> = message.into_iter().collect();
        self.store
            .record_deliveries(&input.tenant_id, &receipts, &inbox)
            .await?;
        Ok(delivered)
    }
}
