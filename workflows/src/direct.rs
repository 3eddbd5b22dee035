//! The direct path of `NotificationWorkflow`: a small explicit audience resolved and delivered
//! inside the request's own execution, with no child workflows.
//!
//! One `deliver_direct` local activity resolves the snapshot, delivers every channel and, when
//! nothing is left pending, records the outcome: a request that succeeds first time is one
//! workflow execution of six history events (start, one workflow task, one marker, complete).
//! Everything else the tree guarantees holds because the activity runs the tree's own delivery
//! code: transient failures leave receipts pending and the workflow runs another round after the
//! same provider-aware backoff on a durable timer; deliveries deferred by quiet hours wait on one
//! timer per release bucket, without using up rounds; held sends (open breaker, channel switched
//! off) wait without using up rounds; a delivery running past
//! [`options::LOCAL_DELIVERY_TIMEOUT`] (paused, rate-limited, a slow provider) is handed to a
//! normal heartbeating activity that resumes where it stopped. Signals are written through to
//! the store as local activities while delivery runs; cancelling stops sending, waits for it to
//! stop, and settles what was not delivered as cancelled.

use std::pin::pin;

use fanout_contracts::{
    AudienceSnapshot, DeliverDirectInput, DeliveryActivities, DirectReport, NotificationInput,
    NotificationOutcome,
};
use fanout_domain::receipt::{DeliveryStatus, RequestState};
use fanout_domain::retry::{self, Backoff};
use futures::FutureExt;
use temporalio_sdk::workflows::select;
use temporalio_sdk::{
    ActivityExecutionError, TimerResult, WorkflowContext, WorkflowResult, WorkflowTermination,
};

use crate::controls::{Applied, Via, write_cancel_through};
use crate::notification::{NotificationWorkflow, finish};
use crate::options;
use crate::page::round_delay;
use crate::schedule::{self, Wait};

/// How a delivery round ended.
enum Round {
    Report(Box<DirectReport>),
    Cancelled,
    Failed(WorkflowTermination),
}

/// Runs a direct request to completion.
pub(crate) async fn run(
    ctx: &mut WorkflowContext<NotificationWorkflow>,
    input: &NotificationInput,
) -> WorkflowResult<NotificationOutcome> {
    let mut applied = Applied::default();
    let mut backoff = Backoff::default();
    let mut snapshot: Option<AudienceSnapshot> = None;
    let mut round = 0u32;
    loop {
        let delivery = DeliverDirectInput {
            request: input.clone(),
            round,
            final_round: round + 1 >= retry::MAX_ROUNDS,
            snapshot,
            // Deferred deliveries whose release came go out in this round.
            release_through_ms: input.quiet_hours.then(|| schedule::now_ms(ctx)),
        };
        let report = match deliver(ctx, &mut applied, input, delivery).await? {
            Round::Report(report) => report,
            Round::Cancelled => return finish(ctx, input, RequestState::Cancelled, None).await,
            Round::Failed(err) => {
                finish(
                    ctx,
                    input,
                    RequestState::Failed,
                    Some(DeliveryStatus::Failed),
                )
                .await?;
                return Err(err);
            }
        };
        snapshot = Some(report.snapshot);
        ctx.state_mut(|s| s.set_progress(report.progress.clone()));
        if let Some(state) = report.finalized {
            return Ok(NotificationOutcome {
                state,
                progress: report.progress,
            });
        }
        if report.pending == 0 && report.quiet > 0 {
            // Only deliveries waiting out quiet hours are left: sleep until the earliest
            // release bucket (one timer per bucket), then a round sends what it released.
            let at = report.quiet_until_ms.unwrap_or_default();
            if let Wait::Cancelled = schedule::sleep_until(ctx, at).await {
                return finish(ctx, input, RequestState::Cancelled, None).await;
            }
            continue;
        }
        let delay = round_delay(&mut backoff, report.round(), report.held, ctx.random());
        if ctx.timer(delay).await == TimerResult::Cancelled {
            return finish(ctx, input, RequestState::Cancelled, None).await;
        }
        if report.held == 0 {
            round += 1;
        }
    }
}

/// Runs one delivery round as a local activity (falling back to a normal one), writing signals
/// through to the store while it runs.
async fn deliver(
    ctx: &WorkflowContext<NotificationWorkflow>,
    applied: &mut Applied,
    input: &NotificationInput,
    delivery: DeliverDirectInput,
) -> Result<Round, WorkflowTermination> {
    applied.write_through(ctx, input, Via::Local).await?;
    let local = ctx
        .execute_local_activity(
            DeliveryActivities::deliver_direct,
            delivery.clone(),
            options::local_delivery(),
        )
        .fuse();
    let mut local = pin!(local);
    let outcome = loop {
        select! {
            _ = ctx.cancelled() => {
                // The local activity is cancelled with the workflow and waited for; write the
                // cancellation where every send checks it, so it stops at the next one.
                write_cancel_through(ctx, input).await?;
                let _ = local.as_mut().await;
                return Ok(Round::Cancelled);
            }
            outcome = local.as_mut() => break outcome,
            _ = ctx.wait_condition(|s| applied.is_stale(s)).fuse() => {
                applied.write_through(ctx, input, Via::Local).await?;
            }
        }
    };
    let delivery = match outcome {
        Ok(report) if report.deferred == 0 => return Ok(Round::Report(Box::new(report))),
        // The local run's send window closed with sends waiting (paused, paced, a slow
        // provider): the same round goes on in a normal activity, which heartbeats (so a cancel
        // reaches it) and skips everything already final.
        Ok(report) => DeliverDirectInput {
            snapshot: Some(report.snapshot),
            ..delivery
        },
        Err(ActivityExecutionError::Cancelled(_)) => return Ok(Round::Cancelled),
        // Out of local retries (the store failing): the normal activity's retries take over. A
        // failure no retry can fix fails it again at once.
        Err(_) => delivery,
    };
    let fallback = ctx
        .execute_activity(
            DeliveryActivities::deliver_direct,
            delivery,
            options::delivery_activity(),
        )
        .fuse();
    let mut fallback = pin!(fallback);
    loop {
        select! {
            _ = ctx.cancelled() => {
                write_cancel_through(ctx, input).await?;
                let _ = fallback.as_mut().await;
                return Ok(Round::Cancelled);
            }
            outcome = fallback.as_mut() => {
                return Ok(match outcome {
                    Ok(report) => Round::Report(Box::new(report)),
                    Err(ActivityExecutionError::Cancelled(_)) => Round::Cancelled,
                    Err(error) => Round::Failed(error.into()),
                });
            }
            _ = ctx.wait_condition(|s| applied.is_stale(s)).fuse() => {
                applied.write_through(ctx, input, Via::Local).await?;
            }
        }
    }
}
