//! A scheduled request's wait: a request sent with `send_at` or `delay_seconds` holds one
//! durable timer until its time, then records that it started (`release_request`) and runs
//! as any other request, on the direct path or the tree.
//!
//! While it waits, the `reschedule` update moves its time (the timer is cancelled and a new one
//! started: two events per move) and cancellation ends it with nothing resolved or sent. A
//! request without a time skips all of this and adds no event to its history, which is how
//! histories recorded before scheduling existed still replay.

use std::pin::pin;
use std::time::{Duration, UNIX_EPOCH};

use fanout_contracts::{DeliveryActivities, NotificationInput, ReleaseInput};
use fanout_domain::UnixMillis;
use futures::FutureExt;
use temporalio_sdk::workflows::select;
use temporalio_sdk::{CancellableFuture, TimerResult, WorkflowContext, WorkflowTermination};

use crate::notification::NotificationWorkflow;
use crate::options;

/// How a scheduled request's wait ended.
pub(crate) enum Wait {
    /// Its time came (or it had none): run it.
    Run,
    /// It was cancelled while it waited.
    Cancelled,
}

/// The workflow's clock in milliseconds since the epoch (0 before the first task, which never
/// happens inside `run`).
pub(crate) fn now_ms(ctx: &WorkflowContext<NotificationWorkflow>) -> UnixMillis {
    ctx.workflow_time()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Sleeps on one timer until `at_ms` (at once when it is past), unless the request is
/// cancelled first.
pub(crate) async fn sleep_until(
    ctx: &mut WorkflowContext<NotificationWorkflow>,
    at_ms: UnixMillis,
) -> Wait {
    let now = now_ms(ctx);
    if at_ms <= now {
        return Wait::Run;
    }
    let delay = Duration::from_millis(u64::try_from(at_ms - now).unwrap_or(0));
    select! {
        _ = ctx.cancelled() => Wait::Cancelled,
        fired = ctx.timer(delay) => match fired {
            TimerResult::Cancelled => Wait::Cancelled,
            _ => Wait::Run,
        },
    }
}

/// Waits until the request's time (its input's, or the latest `reschedule`), then marks it
/// released so later updates are refused. Returns at once for a request with no time.
pub(crate) async fn wait(
    ctx: &mut WorkflowContext<NotificationWorkflow>,
    input: &NotificationInput,
) -> Result<Wait, WorkflowTermination> {
    if input.run_at_ms.is_none() {
        ctx.state_mut(|s| s.release());
        return Ok(Wait::Run);
    }
    loop {
        let (run_at, version) = ctx.state(|s| (s.run_at(input), s.schedule_version()));
        let now = now_ms(ctx);
        let Some(run_at) = run_at.filter(|at| *at > now) else {
            break;
        };
        let delay = Duration::from_millis(u64::try_from(run_at - now).unwrap_or(0));
        let mut timer = pin!(ctx.timer(delay));
        select! {
            _ = ctx.cancelled() => return Ok(Wait::Cancelled),
            fired = timer.as_mut() => {
                if fired == TimerResult::Cancelled {
                    return Ok(Wait::Cancelled);
                }
            }
            _ = ctx.wait_condition(|s| s.schedule_version() != version).fuse() => {
                // Moved: this timer goes, the loop starts one for the new time.
                timer.cancel();
                let _ = timer.as_mut().await;
            }
        }
    }
    ctx.state_mut(|s| s.release());
    ctx.execute_local_activity(
        DeliveryActivities::release_request,
        ReleaseInput {
            request_id: input.request_id.clone(),
        },
        options::local_store_activity(),
    )
    .await
    .map_err(WorkflowTermination::from)?;
    Ok(Wait::Run)
}
