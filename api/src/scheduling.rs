//! How a request's Temporal work is ordered against other queued work.
//!
//! Every workflow the API starts carries a [`TaskPriority`]: a priority key from the request's
//! [`Priority`] (high before normal before low, when tasks are backlogged) and a fairness key,
//! the tenant, weighted by the tenant's `fairness_weight` setting, so one tenant's burst shares
//! the queue with other tenants' work instead of queuing it. Child workflows and activities
//! inherit both from the workflow, so the whole request runs at its start's priority.
//!
//! [`SchedulingConfig`] switches each part off (the benchmark measures the platform without
//! them). The dev server honours neither unless its matcher is configured for them; see
//! `fanout_contracts::DEV_SERVER_DYNAMIC_CONFIG`.

use fanout_domain::TenantId;
use fanout_domain::request::Priority;
use serde::{Deserialize, Serialize};

/// Which of Temporal's task-queue scheduling features the API's starts use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulingConfig {
    /// Give each start a priority key from the request's priority, so backlogged high-priority
    /// work is dispatched first (`FANOUT_SCHEDULING__PRIORITY`). Off, starts carry no key and
    /// the server treats every request as normal.
    pub priority: bool,
    /// Give each start the tenant as its fairness key, with the tenant's `fairness_weight`, so
    /// backlogged work is dispatched across tenants in proportion to their weights rather than
    /// first come, first served (`FANOUT_SCHEDULING__FAIRNESS`). Off, starts carry no key and
    /// no weight.
    pub fairness: bool,
}

impl Default for SchedulingConfig {
    fn default() -> Self {
        Self {
            priority: true,
            fairness: true,
        }
    }
}

/// Temporal's priority key for a request's priority: lower is dispatched first. The server's
/// default range is 1 to 5 with 3 for work that carries no key, so normal requests and
/// anything started without a key (by an operator, say) are treated alike.
pub fn priority_key(priority: Priority) -> u32 {
    match priority {
        Priority::High => 1,
        Priority::Normal => 3,
        Priority::Low => 5,
    }
}

/// The task-queue priority a workflow is started with. `None` fields are left to the server's
/// defaults (priority 3, no fairness key, weight 1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskPriority {
    /// See [`priority_key`].
    pub priority_key: Option<u32>,
    /// The tenant. Tenant ids are at most 63 bytes, within Temporal's 64-byte limit on keys.
    pub fairness_key: Option<TenantId>,
    /// The tenant's share relative to other keys; the server clamps it to 0.001..=1000.
    pub fairness_weight: Option<f32>,
}

impl SchedulingConfig {
    /// The priority to start a request of `tenant` with, given the tenant's `fairness_weight`
    /// setting. The one place requests are mapped onto Temporal's scheduling.
    pub fn task_priority(
        &self,
        priority: Priority,
        tenant: &TenantId,
        fairness_weight: Option<f64>,
    ) -> TaskPriority {
        TaskPriority {
            priority_key: self.priority.then(|| priority_key(priority)),
            fairness_key: self.fairness.then(|| tenant.clone()),
            // Temporal's weight is an f32; the settings' range (0.001 to 1000) fits it.
            fairness_weight: fairness_weight.filter(|_| self.fairness).map(|w| w as f32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[test]
    fn high_goes_first_and_normal_is_the_servers_default() {
        assert_eq!(priority_key(Priority::High), 1);
        assert_eq!(priority_key(Priority::Normal), 3);
        assert_eq!(priority_key(Priority::Low), 5);
    }

    #[test]
    fn the_tenant_is_the_fairness_key_with_its_weight() {
        let on = SchedulingConfig::default();
        assert_eq!(
            on.task_priority(Priority::Low, &acme(), Some(2.5)),
            TaskPriority {
                priority_key: Some(5),
                fairness_key: Some(acme()),
                fairness_weight: Some(2.5),
            }
        );
        // Without a setting the server's default weight applies.
        assert_eq!(
            on.task_priority(Priority::High, &acme(), None)
                .fairness_weight,
            None
        );
    }

    #[test]
    fn each_switch_turns_off_its_own_part() {
        let no_priority = SchedulingConfig {
            priority: false,
            fairness: true,
        };
        let p = no_priority.task_priority(Priority::High, &acme(), Some(3.0));
        assert_eq!(
            (p.priority_key, p.fairness_key, p.fairness_weight),
            (None, Some(acme()), Some(3.0))
        );
        let no_fairness = SchedulingConfig {
            priority: true,
            fairness: false,
        };
        let p = no_fairness.task_priority(Priority::High, &acme(), Some(3.0));
        assert_eq!(
            (p.priority_key, p.fairness_key, p.fairness_weight),
            (Some(1), None, None)
        );
        let off = SchedulingConfig {
            priority: false,
            fairness: false,
        };
        assert_eq!(
            off.task_priority(Priority::High, &acme(), Some(3.0)),
            TaskPriority::default()
        );
    }
}
