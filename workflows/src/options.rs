//! Activity and child-workflow options shared by the workflows: explicit retry policies and
//! timeouts, in one place.

use std::time::Duration;

use fanout_contracts as contracts;
use temporalio_common::RetryPolicy;
use temporalio_sdk::{
    ActivityCancellationType, ActivityOptions, ChildWorkflowCancellationType, ChildWorkflowOptions,
    LocalActivityOptions, WorkflowCancellationToken,
};

/// Attempts before an activity's failure reaches the workflow. Delivery's last attempt turns
/// what is still failing transiently into failed receipts instead of failing again.
pub const MAX_ATTEMPTS: u32 = 8;

/// Quick first retry, exponential backoff capped at a minute, and no retry for failures that
/// cannot succeed later.
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(60))
        .maximum_attempts(MAX_ATTEMPTS)
        .non_retryable_error_types(NON_RETRYABLE)
        .build()
}

/// Failure types no retry can fix.
const NON_RETRYABLE: [&str; 3] = [
    contracts::ERR_TEMPLATE_MISSING,
    contracts::ERR_TEMPLATE_RENDER,
    contracts::ERR_INVALID_INPUT,
];

/// Activities that only touch the store.
pub fn store_activity() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(120))
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(retry_policy())
        .build()
}

/// Store activities that must run even while the workflow is being cancelled (finalising,
/// writing the cancellation through).
pub fn detached_store_activity() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(300))
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(retry_policy())
        .cancellation_token(WorkflowCancellationToken::new())
        .build()
}

/// Regrouping a local-time request's snapshot (`plan_release`): one read of every recipient's
/// zone and a rewrite of every page, which for millions of recipients runs for minutes. It
/// heartbeats after each batch of pages, so a worker lost mid-way is noticed within the
/// heartbeat timeout and the retry redoes the same pages.
pub fn plan_activity() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(3600))
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(retry_policy())
        .build()
}

/// Delivery of one page over one channel. The short heartbeat timeout is what lets a cancel
/// reach the activity quickly (heartbeats are throttled to 80% of it); waiting for the
/// cancellation to complete means the page's workflow only returns once sending has stopped.
pub fn delivery_activity() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(900))
        .heartbeat_timeout(Duration::from_secs(5))
        .retry_policy(retry_policy())
        .cancellation_type(ActivityCancellationType::WaitCancellationCompleted)
        .build()
}

/// How long the direct path's local delivery may run at most. The activity stops starting
/// sends after a few seconds and hands what is left to a normal activity itself (see
/// `fanout_activities::direct::LOCAL_SEND_WINDOW`), so this only bounds sends already started
/// (a provider's own timeouts end them sooner). A local activity holds its workflow task open,
/// which the SDK extends every 8 s (three history events each time).
pub const LOCAL_DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The direct path's delivery as a local activity: the worker runs it straight away, no task
/// queue round trip and one marker event. Store errors are retried locally within
/// [`LOCAL_DELIVERY_TIMEOUT`]; past that the workflow falls back to [`delivery_activity`],
/// which resumes where this stopped (deliveries skip every instance already final). Cancelling
/// the workflow cancels it and waits until sending stopped.
pub fn local_delivery() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .schedule_to_close_timeout(LOCAL_DELIVERY_TIMEOUT)
        .start_to_close_timeout(LOCAL_DELIVERY_TIMEOUT)
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(250))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(2))
                .non_retryable_error_types(NON_RETRYABLE)
                .build(),
        )
        .cancel_type(ActivityCancellationType::WaitCancellationCompleted)
        .build()
}

/// Store-only work of the direct path (writing controls through) as a local activity.
pub fn local_store_activity() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .schedule_to_close_timeout(Duration::from_secs(120))
        .start_to_close_timeout(Duration::from_secs(10))
        .retry_policy(retry_policy())
        .build()
}

/// A child workflow with a stable id, cancelled with its parent and waited for.
pub fn child(workflow_id: String) -> ChildWorkflowOptions {
    ChildWorkflowOptions::builder()
        .workflow_id(workflow_id)
        .cancel_type(ChildWorkflowCancellationType::WaitCancellationCompleted)
        .build()
}
