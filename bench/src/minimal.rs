//! The minimal workflow-per-request design, the transactional section's baseline: one workflow
//! per request running one activity that reads the user, renders and sends the email through
//! Fanout's sender and writes its receipt. No audience, preferences, quotas, dedupe or status:
//! the least any design that gives each request a workflow of its own can spend.

use std::sync::Arc;
use std::time::Duration;

use fanout_activities::EmailSender;
use fanout_domain::render::Compiled;
use fanout_store::Store;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

use crate::naive::OneInput;
use crate::sink;

/// The baseline workflow.
#[workflow]
#[derive(Default)]
pub struct MinimalWorkflow;

#[workflow_methods]
impl MinimalWorkflow {
    /// Sends the request's one email.
    #[run(name = "BenchMinimalWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: OneInput) -> WorkflowResult<()> {
        ctx.execute_activity(
            MinimalActivities::send_one,
            input,
            ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60)).build(),
        )
        .await?;
        Ok(())
    }
}

/// The baseline's one activity.
pub struct MinimalActivities {
    /// The store (users in, receipts out).
    pub store: Store,
    /// The SMTP adapter.
    pub sender: EmailSender,
    /// The compiled email.
    pub email: Compiled,
}

impl MinimalActivities {
    /// Reads the user, sends the email and writes its receipt: the unit both the minimal
    /// design and the direct loop repeat.
    pub async fn deliver(&self, input: &OneInput) -> anyhow::Result<()> {
        let user = self
            .store
            .get_user(&input.tenant_id, &input.user_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no user {}", input.user_id))?;
        let vars = fanout_domain::render::context(&input.data, &user, &input.request_id);
        let receipt =
            sink::send_email(&self.sender, &self.email, &input.request_id, &user, &vars).await;
        self.store
            .record_deliveries(&input.tenant_id, &[receipt], &[])
            .await?;
        Ok(())
    }
}

#[activities]
impl MinimalActivities {
    /// Delivers the request's email.
    #[activity(name = "bench_send_one")]
    pub async fn send_one(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: OneInput,
    ) -> Result<(), ActivityError> {
        self.deliver(&input).await?;
        Ok(())
    }
}
