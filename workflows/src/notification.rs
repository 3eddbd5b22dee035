//! `NotificationWorkflow`: one durable workflow per notification request.
//!
//! It materialises the audience snapshot (an activity that returns page numbers, never user
//! ids), then delivers page by page, each page's channels concurrently, one activity per
//! (page, channel). Progress is served by the `progress` query and mirrored into the
//! `ProgressPercent` search attribute. The outcome is written to the store by a final activity
//! so status can be served after the workflow has closed.

use std::time::Duration;

use fanout_domain::contracts::{
    self, AudienceSnapshot, DeliverPageInput, DeliveryActivities, FinalizeInput, NotificationInput,
    NotificationOutcome, PageReport, ResolveAudienceInput,
};
use fanout_domain::receipt::{ChannelCounts, Progress, RequestState};
use futures::future::join_all;
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, WorkflowCancellationToken, WorkflowContext,
    WorkflowContextView, WorkflowResult, WorkflowTermination,
};

/// The workflow's state: what the `progress` query returns.
#[workflow]
#[derive(Default)]
pub struct NotificationWorkflow {
    progress: Progress,
}

/// Retries for activities that talk to the store and providers: quick first retry, capped
/// backoff, and no retry for failures that cannot succeed later.
fn retry_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(60))
        .maximum_attempts(8)
        .non_retryable_error_types([
            contracts::ERR_TEMPLATE_MISSING,
            contracts::ERR_TEMPLATE_RENDER,
            contracts::ERR_INVALID_INPUT,
        ])
        .build()
}

fn store_activity_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
        .retry_policy(retry_policy())
        .build()
}

fn delivery_activity_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(300))
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(retry_policy())
        .build()
}

#[workflow_methods]
impl NotificationWorkflow {
    /// Runs a notification request to completion.
    #[run(name = "NotificationWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: NotificationInput,
    ) -> WorkflowResult<NotificationOutcome> {
        let (state, failure) = match deliver(ctx, &input).await {
            Ok(()) => (RequestState::Completed, None),
            Err(ActivityExecutionError::Cancelled(_)) => (RequestState::Cancelled, None),
            Err(err) => (RequestState::Failed, Some(err)),
        };
        let progress = ctx.state(|s| s.progress.clone());
        // The final write must happen even when the workflow is being cancelled, so it runs
        // under its own cancellation token.
        let finalize_options =
            ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
                .retry_policy(retry_policy())
                .cancellation_token(WorkflowCancellationToken::new())
                .build();
        ctx.execute_activity(
            DeliveryActivities::finalize_request,
            FinalizeInput {
                request_id: input.request_id.clone(),
                state,
                progress: progress.clone(),
            },
            finalize_options,
        )
        .await?;
        match (state, failure) {
            (_, Some(err)) => Err(err.into()),
            (RequestState::Cancelled, None) => Err(WorkflowTermination::cancelled()),
            _ => Ok(NotificationOutcome { state, progress }),
        }
    }

    /// Returns the request's progress so far.
    #[query(name = "progress")]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> Progress {
        self.progress.clone()
    }
}

/// Resolves the audience and delivers every page over every channel.
async fn deliver(
    ctx: &mut WorkflowContext<NotificationWorkflow>,
    input: &NotificationInput,
) -> Result<(), ActivityExecutionError> {
    let snapshot: AudienceSnapshot = ctx
        .execute_activity(
            DeliveryActivities::resolve_audience,
            ResolveAudienceInput {
                request_id: input.request_id.clone(),
                tenant_id: input.tenant_id.clone(),
                recipients: input.recipients.clone(),
            },
            store_activity_options(),
        )
        .await?;
    ctx.state_mut(|s| {
        s.progress.pages_total = snapshot.pages;
        s.progress.recipients = snapshot.recipients;
        for channel in &input.channels {
            let mut counts = ChannelCounts {
                total: snapshot.recipients,
                ..Default::default()
            };
            counts.recompute_pending();
            s.progress.channels.insert(*channel, counts);
        }
    });

    for page in 0..snapshot.pages {
        let sends = input.channels.iter().map(|channel| {
            ctx.execute_activity(
                DeliveryActivities::deliver_page,
                DeliverPageInput {
                    request_id: input.request_id.clone(),
                    tenant_id: input.tenant_id.clone(),
                    template_id: input.template_id.clone(),
                    channel: *channel,
                    page,
                    data: input.data.clone(),
                    priority: input.priority,
                    ttl_seconds: input.ttl_seconds,
                },
                delivery_activity_options(),
            )
        });
        let reports: Vec<Result<PageReport, ActivityExecutionError>> = join_all(sends).await;
        for report in reports {
            let report = report?;
            ctx.state_mut(|s| {
                s.progress
                    .channels
                    .entry(report.channel)
                    .or_default()
                    .absorb(report.delivered, report.failed, report.suppressed, 0);
            });
        }
        let percent = ctx.state_mut(|s| {
            s.progress.pages_done = page + 1;
            s.progress.percent()
        });
        ctx.upsert_search_attributes([contracts::SA_PROGRESS_PERCENT.value_set(percent)]);
    }
    Ok(())
}
