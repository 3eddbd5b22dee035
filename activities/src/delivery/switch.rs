//! The kill switches as one delivery sees them: the worker's configured list and the store's
//! tenant and global channel switches.

use std::time::{Duration, Instant};

use fanout_contracts::DeliverPageInput;
use fanout_domain::Channel;
use fanout_store::Store;

use crate::DeliveryConfig;

/// How stale a delivery's view of the channel switches may be.
const SWITCH_TTL: Duration = Duration::from_secs(1);

/// One activity's view of its channel's kill switches: the worker's configured list (see
/// [`DeliveryConfig::disabled_channels`]) and the store's tenant and global switches, read at
/// most once per [`SWITCH_TTL`].
pub(super) struct ChannelGate<'a> {
    store: &'a Store,
    input: &'a DeliverPageInput,
    configured_off: bool,
    cached: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl<'a> ChannelGate<'a> {
    pub(super) fn new(
        store: &'a Store,
        input: &'a DeliverPageInput,
        config: &DeliveryConfig,
    ) -> Self {
        Self {
            store,
            input,
            configured_off: configured_off(&config.disabled_channels, input.channel),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether the channel is switched off. If the store cannot be read the last answer stands
    /// (or "on", before any read): a store outage must not stop every delivery.
    pub(super) async fn disabled(&self) -> bool {
        if self.configured_off {
            return true;
        }
        let mut cached = self.cached.lock().await;
        if let Some((at, off)) = *cached
            && at.elapsed() < SWITCH_TTL
        {
            return off;
        }
        let fresh = match self
            .store
            .disabled_channel(&self.input.tenant_id, self.input.channel)
            .await
        {
            Ok(switch) => switch.is_some(),
            Err(e) => {
                tracing::warn!(error = %e, channel = %self.input.channel, "reading channel switches failed");
                cached.is_some_and(|(_, off)| off)
            }
        };
        *cached = Some((Instant::now(), fresh));
        fresh
    }
}

/// Whether `channel` is among the comma-separated channel names in `list`.
fn configured_off(list: &str, channel: Channel) -> bool {
    list.split(',').any(|name| name.trim() == channel.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_channels_are_matched_by_name() {
        assert!(configured_off("email", Channel::Email));
        assert!(configured_off(" push , email ", Channel::Email));
        assert!(!configured_off("push", Channel::Email));
        assert!(!configured_off("", Channel::InApp));
        assert!(!configured_off("in-app", Channel::InApp));
        assert!(configured_off("in_app", Channel::InApp));
    }
}
