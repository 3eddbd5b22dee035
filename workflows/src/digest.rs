//! `DigestWorkflow`: one workflow per digest, whatever its triggers and recipients number.
//!
//! The API starts it (workflow id = digest id) when a trigger opens a digest. It sleeps on a
//! durable timer until the window ends, closes the digest in the store (activity
//! `close_digest`, which serializes with the API's adds on the digest row and records the
//! digest's request), then runs that request as a `NotificationWorkflow` child: the usual
//! tree (resolution into pages, a `FanoutPageWorkflow` per page), whose deliveries render each
//! recipient's items. Nothing here is per trigger or per recipient.

use std::time::{Duration, UNIX_EPOCH};

use fanout_contracts::{
    CloseDigestInput, DeliveryActivities, DigestInput, DigestOutcome, NotificationInput,
};
use fanout_domain::receipt::RequestState;
use temporalio_common::search_attributes::SearchAttributes;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ChildWorkflowOptions, WorkflowContext, WorkflowResult, WorkflowTermination};

use crate::options;

/// A digest has nothing to query while it waits; its triggers' status names it.
#[workflow]
#[derive(Default)]
pub struct DigestWorkflow;

#[workflow_methods]
impl DigestWorkflow {
    /// Waits for the window to end, closes the digest and delivers it.
    #[run(name = fanout_contracts::DIGEST_WORKFLOW)]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: DigestInput,
    ) -> WorkflowResult<DigestOutcome> {
        let now_ms = ctx
            .workflow_time()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let wait = input.closes_at_ms.saturating_sub(now_ms);
        if wait > 0 {
            // A cancelled timer (the digest's workflow was cancelled) closes the digest early:
            // what it collected is still delivered, and later triggers open the next one.
            let _ = ctx.timer(Duration::from_millis(wait.unsigned_abs())).await;
        }
        let closed = ctx
            .execute_activity(
                DeliveryActivities::close_digest,
                CloseDigestInput {
                    digest_id: input.digest_id.clone(),
                },
                options::detached_store_activity(),
            )
            .await?;
        let Some(request) = closed.request else {
            return Ok(DigestOutcome {
                items: closed.items,
                state: None,
            });
        };
        let child = ctx
            .start_child_workflow(
                fanout_contracts::NotificationWorkflow,
                request.clone(),
                request_options(&request),
            )
            .await
            .map_err(WorkflowTermination::from)?;
        let state = match child.result().await {
            Ok(outcome) => outcome.state,
            // The digest's request was cancelled (through the API, like any request): the
            // digest's work is over all the same.
            Err(e) if e.as_cancelled().is_some() => RequestState::Cancelled,
            Err(e) => return Err(e.into()),
        };
        Ok(DigestOutcome {
            items: closed.items,
            state: Some(state),
        })
    }
}

/// The digest's request runs as the API starts a request: workflow id = request id, with the
/// search attributes that find it by tenant and template (template quota signals use them).
fn request_options(request: &NotificationInput) -> ChildWorkflowOptions {
    let mut child = options::child(request.request_id.workflow_id().to_owned());
    child.search_attributes = Some(SearchAttributes::new([
        fanout_contracts::SA_TENANT_ID.value_set(request.tenant_id.to_string()),
        fanout_contracts::SA_TEMPLATE_ID.value_set(request.template_id.to_string()),
        fanout_contracts::SA_REQUEST_ID.value_set(request.request_id.to_string()),
        fanout_contracts::SA_PROGRESS_PERCENT.value_set(0),
    ]));
    child
}
