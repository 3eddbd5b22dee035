//! What a page's recipients must not receive, read before sending (preferences and the
//! suppression list), and who was erased while the page was being delivered.

use std::collections::HashSet;

use fanout_contracts::DeliverPageInput;
use fanout_domain::user::{Device, User};
use fanout_domain::{Channel, InstanceId, UserId};
use fanout_store::Store;
use fanout_store::audience::PageMember;
use fanout_store::preferences::OPTED_OUT;
use fanout_store::suppressions::SUPPRESSED_ADDRESS;
use temporalio_sdk::activities::ActivityError;

use crate::store_error;

/// What the page's recipients must not receive: users who opted out of the channel (for the
/// template's category) and addresses on the tenant's suppression list (hard bounces, dead push
/// tokens, manual entries). Read once per page, two queries, before anything is sent.
#[derive(Debug, Default)]
pub(super) struct Screen {
    opted_out: HashSet<UserId>,
    suppressed: HashSet<String>,
}

impl Screen {
    pub(super) async fn load(
        store: &Store,
        input: &DeliverPageInput,
        category: &str,
        todo: &[(InstanceId, PageMember, u32)],
    ) -> Result<Self, ActivityError> {
        let profiles: Vec<&User> = todo
            .iter()
            .filter_map(|(_, m, _)| m.profile.as_ref())
            .collect();
        if profiles.is_empty() {
            return Ok(Self::default());
        }
        let users: Vec<UserId> = profiles.iter().map(|u| u.user_id.clone()).collect();
        let opted_out = store
            .blocked_by_preferences(&input.tenant_id, &users, input.channel, category)
            .await
            .map_err(store_error)?;
        let addresses: Vec<&str> = match input.channel {
            Channel::Email => profiles
                .iter()
                .filter_map(|u| u.email.as_ref().map(|e| e.as_str()))
                .collect(),
            Channel::Push => profiles
                .iter()
                .flat_map(|u| u.devices.iter().map(|d| d.token.as_str()))
                .collect(),
            Channel::InApp => Vec::new(),
        };
        let suppressed = if addresses.is_empty() {
            HashSet::new()
        } else {
            store
                .suppressed_addresses(&input.tenant_id, input.channel, &addresses)
                .await
                .map_err(store_error)?
        };
        Ok(Self {
            opted_out,
            suppressed,
        })
    }

    /// Why `user` must not get this channel, if they must not.
    pub(super) fn verdict(&self, user: &User, channel: Channel) -> Option<&'static str> {
        if self.opted_out.contains(&user.user_id) {
            return Some(OPTED_OUT);
        }
        let suppressed = match channel {
            Channel::Email => user
                .email
                .as_ref()
                .is_some_and(|e| self.suppressed.contains(e.as_str())),
            Channel::Push => {
                !user.devices.is_empty()
                    && user
                        .devices
                        .iter()
                        .all(|d| self.suppressed.contains(d.token.as_str()))
            }
            Channel::InApp => false,
        };
        suppressed.then_some(SUPPRESSED_ADDRESS)
    }

    /// The user's devices whose tokens are not suppressed.
    pub(super) fn live_devices<'u>(&self, user: &'u User) -> Vec<&'u Device> {
        user.devices
            .iter()
            .filter(|d| !self.suppressed.contains(d.token.as_str()))
            .collect()
    }
}

/// Users erased since the page was loaded: their profiles are in memory, so each tick asks the
/// store for erasures and sends to those users are skipped from then on.
#[derive(Default)]
pub(super) struct Erased {
    users: std::sync::Mutex<std::collections::HashSet<fanout_domain::UserId>>,
}

impl Erased {
    pub(super) async fn refresh(
        &self,
        store: &Store,
        input: &DeliverPageInput,
        since: fanout_domain::UnixMillis,
    ) {
        match store.erased_since(&input.tenant_id, since).await {
            Ok(users) if !users.is_empty() => {
                let mut known = self.users.lock().unwrap_or_else(|e| e.into_inner());
                known.extend(users);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading erasures failed"),
        }
    }

    pub(super) fn contains(&self, user: &fanout_domain::UserId) -> bool {
        let known = self.users.lock().unwrap_or_else(|e| e.into_inner());
        known.contains(user)
    }
}
