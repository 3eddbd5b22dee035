//! Release groups: runs of snapshot pages that go out together at one instant, each on one
//! durable timer. A local-time request's groups come from each recipient's zone
//! (`plan_release`, right after resolution); a quiet-hours request's from the release buckets
//! of the deliveries its pages deferred (`plan_deferred`, once every page has run). Either way
//! the request holds one timer per group, never one per recipient.

use fanout_contracts::{
    AudienceSnapshot, DeliveryActivities, NotificationInput, PlanDeferredInput, PlanReleaseInput,
    ReleaseGroup,
};
use fanout_domain::timing::LocalTime;
use temporalio_sdk::{ActivityExecutionError, WorkflowContext, WorkflowTermination};

use crate::notification::{Ending, NotificationWorkflow, Run, Stop, fan_out};
use crate::options;
use crate::schedule::{self, Wait};

/// Regroups a local-time request's resolved snapshot by release instant (`plan_release`).
pub(crate) async fn plan_local_time(
    ctx: &mut WorkflowContext<NotificationWorkflow>,
    input: &NotificationInput,
    local_time: LocalTime,
    snapshot: AudienceSnapshot,
) -> Result<(AudienceSnapshot, Vec<ReleaseGroup>), Stop> {
    let plan = ctx
        .execute_activity(
            DeliveryActivities::plan_release,
            PlanReleaseInput {
                request_id: input.request_id.clone(),
                tenant_id: input.tenant_id.clone(),
                local_time,
                accepted_at_ms: input.accepted_at_ms,
                pages: snapshot.pages,
            },
            options::plan_activity(),
        )
        .await
        .map_err(|e| match e {
            ActivityExecutionError::Cancelled(_) => Stop::Cancelled,
            other => Stop::Failed(other.into()),
        })?;
    let snapshot = AudienceSnapshot {
        pages: plan.pages,
        ..snapshot
    };
    ctx.state_mut(|s| s.set_pages_total(plan.pages));
    Ok((snapshot, plan.groups))
}

/// A quiet-hours request whose pages have all run: the recipients they deferred move to
/// pages after the snapshot's, grouped by release bucket (`plan_deferred`), and each group
/// goes out on one timer, as a local-time request's groups do. Nothing deferred, nothing
/// added but the one activity.
pub(crate) async fn release_deferred(
    ctx: &mut WorkflowContext<NotificationWorkflow>,
    run: &mut Run<'_>,
    failed_pages: u32,
) -> Result<Ending, WorkflowTermination> {
    let pages = run.snapshot.pages;
    let plan = match ctx
        .execute_activity(
            DeliveryActivities::plan_deferred,
            PlanDeferredInput {
                request_id: run.input.request_id.clone(),
                pages,
            },
            options::plan_activity(),
        )
        .await
    {
        Ok(plan) => plan,
        Err(ActivityExecutionError::Cancelled(_)) => return Ok(Ending::Cancelled),
        Err(other) => return Err(other.into()),
    };
    if plan.groups.is_empty() {
        return Ok(Ending::Done { failed_pages });
    }
    ctx.state_mut(|s| s.set_pages_total(plan.pages));
    // The same run goes on, so its pages count towards one execution's share.
    run.snapshot.pages = plan.pages;
    run.groups = plan.groups;
    run.swept = true;
    Ok(match fan_out_groups(ctx, run, pages).await? {
        Ending::Done { failed_pages: more } => Ending::Done {
            failed_pages: failed_pages + more,
        },
        other => other,
    })
}

/// A local-time request's fan-out: each release group waits for its instant on one timer,
/// then its pages go out through [`fan_out`]. Groups come earliest first, so the request holds
/// one timer at a time and as many in all as it has groups.
pub(crate) async fn fan_out_groups(
    ctx: &mut WorkflowContext<NotificationWorkflow>,
    run: &mut Run<'_>,
    mut next_page: u32,
) -> Result<Ending, WorkflowTermination> {
    let mut failed = 0u32;
    let groups = run.groups.clone();
    for group in &groups {
        if group.end() <= next_page {
            continue;
        }
        // A continuation resumes a group it already released without waiting again.
        if next_page <= group.first_page
            && let Wait::Cancelled = schedule::sleep_until(ctx, group.at_ms).await
        {
            return Ok(Ending::Cancelled);
        }
        if run.swept {
            run.release_through = Some(group.at_ms);
        }
        match fan_out(ctx, run, next_page.max(group.first_page), group.end()).await? {
            Ending::Done { failed_pages } => {
                failed += failed_pages;
                next_page = group.end();
            }
            other => return Ok(other),
        }
    }
    Ok(Ending::Done {
        failed_pages: failed,
    })
}
