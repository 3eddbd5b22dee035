//! Operator controls on a running request: the pause, rate and template-quota signals the
//! workflow receives are written through to the store (where every delivery reads them before
//! each send), and so is a cancellation, so it stops sends within a fraction of a second.

use fanout_contracts::{
    ApplyControlsInput, ApplyTemplateQuotaInput, DeliveryActivities, NotificationInput,
};
use fanout_domain::request::RequestControls;
use temporalio_sdk::{WorkflowContext, WorkflowTermination};

use crate::notification::NotificationWorkflow;
use crate::options;

/// How controls and quotas are written through to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// A normal activity (the tree, whose histories recorded these).
    Activity,
    /// A local activity (the direct path: no task queue round trip, no extra history events).
    Local,
}

/// The versions of the controls and the template quota last written through to the store.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Applied {
    controls: u64,
    quota: u64,
}

impl Applied {
    /// Whether a signal changed something not yet written through.
    pub(crate) fn is_stale(&self, state: &NotificationWorkflow) -> bool {
        state.controls().1 != self.controls || state.template_quota().1 != self.quota
    }

    /// Writes changed controls, then a changed template quota, through to the store, where
    /// every delivery reads them.
    pub(crate) async fn write_through(
        &mut self,
        ctx: &WorkflowContext<NotificationWorkflow>,
        input: &NotificationInput,
        via: Via,
    ) -> Result<(), WorkflowTermination> {
        let (controls, version) = ctx.state(|s| s.controls());
        if version != self.controls {
            let apply = ApplyControlsInput {
                request_id: input.request_id.clone(),
                controls,
            };
            match via {
                Via::Activity => {
                    ctx.execute_activity(
                        DeliveryActivities::apply_controls,
                        apply,
                        options::store_activity(),
                    )
                    .await
                }
                Via::Local => {
                    ctx.execute_local_activity(
                        DeliveryActivities::apply_controls,
                        apply,
                        options::local_store_activity(),
                    )
                    .await
                }
            }
            .map_err(WorkflowTermination::from)?;
            self.controls = version;
        }
        let (quota, quota_version) = ctx.state(|s| s.template_quota());
        if quota_version != self.quota {
            let apply = ApplyTemplateQuotaInput {
                tenant_id: input.tenant_id.clone(),
                template_id: input.template_id.clone(),
                per_second: quota,
            };
            match via {
                Via::Activity => {
                    ctx.execute_activity(
                        DeliveryActivities::apply_template_quota,
                        apply,
                        options::store_activity(),
                    )
                    .await
                }
                Via::Local => {
                    ctx.execute_local_activity(
                        DeliveryActivities::apply_template_quota,
                        apply,
                        options::local_store_activity(),
                    )
                    .await
                }
            }
            .map_err(WorkflowTermination::from)?;
            self.quota = quota_version;
        }
        Ok(())
    }
}

/// Records the cancellation in the request's controls, where every delivery checks it.
pub(crate) async fn write_cancel_through(
    ctx: &WorkflowContext<NotificationWorkflow>,
    input: &NotificationInput,
) -> Result<(), WorkflowTermination> {
    let controls = ctx.state(|s| RequestControls {
        cancelled: true,
        ..s.controls().0
    });
    ctx.execute_activity(
        DeliveryActivities::apply_controls,
        ApplyControlsInput {
            request_id: input.request_id.clone(),
            controls,
        },
        options::detached_store_activity(),
    )
    .await?;
    Ok(())
}
