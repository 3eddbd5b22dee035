//! Which providers a send goes through (what its limits, breakers and metrics are keyed by),
//! and the name of its call's span.

use fanout_domain::Channel;
use fanout_domain::user::{Device, Platform};

use crate::limits::Provider;

/// The span name of a push to these providers (a user with devices on both is one call to
/// each, concurrently: one span covers them).
pub(super) fn push_span_name(providers: &[Provider]) -> &'static str {
    match providers {
        [Provider::Apns] => "apns send",
        [Provider::Fcm] => "fcm send",
        _ => "push send",
    }
}

/// The providers a send on `channel` to these devices goes through (none for in-app).
pub(super) fn providers(channel: Channel, devices: &[&Device]) -> Vec<Provider> {
    let mut providers: Vec<Provider> = match channel {
        Channel::Email => vec![Provider::Smtp],
        Channel::Push => devices
            .iter()
            .map(|d| match d.platform {
                Platform::Apns => Provider::Apns,
                Platform::Fcm => Provider::Fcm,
            })
            .collect(),
        Channel::InApp => Vec::new(),
    };
    providers.sort();
    providers.dedup();
    providers
}
