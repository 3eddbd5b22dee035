//! The push channel: one rendered message per user, sent to each of the user's devices through
//! the provider of its platform ([`crate::apns`], [`crate::fcm`]).
//!
//! A user counts as delivered when any device took the message. Devices that failed
//! transiently while another took it are not retried (the user was reached); when none took
//! it, the whole instance is retried in the next delivery round, which cannot duplicate since
//! no device accepted. Tokens a provider declares dead are reported for invalidation.
//!
//! What the two providers do alike is written once here: `token` caches the credential each
//! request carries and refreshes it once when refused, `answer` reads `Retry-After`, tells
//! which statuses are worth retrying and codes a request that got no answer.

use std::time::{Duration, SystemTime};

use fanout_contracts::DeliverPageInput;
use fanout_domain::InstanceId;
use fanout_domain::render::RenderedPush;
use fanout_domain::request::Priority;
use fanout_domain::user::{Device, Platform};

use crate::apns::ApnsClient;
use crate::fcm::FcmClient;
use crate::outcome::SendOutcome;

pub(crate) mod answer;
pub(crate) mod token;

/// How urgently the provider should deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushPriority {
    /// Deliver now, waking the device (APNs priority 10, FCM `HIGH`).
    #[default]
    High,
    /// Deliver when convenient for the device's battery (APNs 5, FCM `NORMAL`).
    Normal,
}

/// A push notification rendered for one user, sent to each of their devices.
#[derive(Debug, Clone, PartialEq)]
pub struct PushMessage {
    /// The delivery instance: adapters derive idempotency ids (`apns-id`) from it.
    pub instance_id: InstanceId,
    /// Alert title.
    pub title: String,
    /// Alert body.
    pub body: String,
    /// Custom key/values delivered to the app beside the alert.
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Notifications with the same key replace each other on the device (`apns-collapse-id`,
    /// FCM `collapse_key`).
    pub collapse_id: Option<String>,
    /// Delivery urgency.
    pub priority: PushPriority,
    /// When the provider should stop trying to reach an offline device; `None` means the
    /// provider's default.
    pub expires_at: Option<SystemTime>,
}

/// Builds the message for one user from the rendered template and the request: urgency from
/// the request's priority (low waits for the device's convenience), expiry from its TTL.
pub fn message(
    instance_id: &InstanceId,
    rendered: RenderedPush,
    request: &DeliverPageInput,
) -> PushMessage {
    PushMessage {
        instance_id: instance_id.clone(),
        title: rendered.title,
        body: rendered.body,
        data: rendered
            .data
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect(),
        collapse_id: None,
        priority: match request.priority {
            Priority::Low => PushPriority::Normal,
            Priority::Normal | Priority::High => PushPriority::High,
        },
        expires_at: request
            .ttl_seconds
            .map(|ttl| SystemTime::now() + Duration::from_secs(u64::from(ttl))),
    }
}

/// The push providers this worker can reach; either may be unconfigured.
#[derive(Clone, Default)]
pub struct PushSenders {
    /// Apple devices.
    pub apns: Option<ApnsClient>,
    /// Android (and FCM-registered) devices.
    pub fcm: Option<FcmClient>,
}

/// What sending one message to a user's devices came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicesOutcome {
    /// The user's outcome: delivered if any device took the message, else the most hopeful
    /// failure (transient before permanent before a dead address).
    pub outcome: SendOutcome,
    /// Devices whose tokens the provider declared dead, with the provider's code.
    pub dead: Vec<(Device, String)>,
}

impl PushSenders {
    /// Whether a device of this platform can be reached at all.
    pub fn reaches(&self, platform: Platform) -> bool {
        match platform {
            Platform::Apns => self.apns.is_some(),
            Platform::Fcm => self.fcm.is_some(),
        }
    }

    /// Sends `message` to every device concurrently. The caller passes only devices
    /// [`Self::reaches`] says can be reached, and at least one.
    pub async fn send(&self, devices: &[&Device], message: &PushMessage) -> DevicesOutcome {
        let sends = devices.iter().map(|device| async move {
            let outcome = match (device.platform, &self.apns, &self.fcm) {
                (Platform::Apns, Some(apns), _) => apns.send(&device.token, message).await,
                (Platform::Fcm, _, Some(fcm)) => fcm.send(&device.token, message).await,
                (platform, _, _) => SendOutcome::permanent(
                    "push_not_configured",
                    format!("no {platform:?} credentials are configured"),
                ),
            };
            (*device, outcome)
        });
        combine(futures::future::join_all(sends).await)
    }
}

/// Folds per-device outcomes into the user's.
fn combine(results: Vec<(&Device, SendOutcome)>) -> DevicesOutcome {
    let mut accepted = Vec::new();
    let mut transient: Option<SendOutcome> = None;
    let mut permanent: Option<SendOutcome> = None;
    let mut invalid: Option<SendOutcome> = None;
    let mut dead = Vec::new();
    for (device, outcome) in results {
        match outcome {
            SendOutcome::Accepted {
                provider_message_id,
            } => accepted.push(provider_message_id),
            SendOutcome::Transient {
                code,
                message,
                retry_after,
            } => {
                let longest = match &transient {
                    Some(SendOutcome::Transient {
                        retry_after: seen, ..
                    }) => retry_after.max(*seen),
                    _ => retry_after,
                };
                transient = Some(SendOutcome::Transient {
                    code,
                    message,
                    retry_after: longest,
                });
            }
            SendOutcome::InvalidAddress { code, message } => {
                dead.push((device.clone(), code.clone()));
                invalid.get_or_insert(SendOutcome::InvalidAddress { code, message });
            }
            permanent_failure @ SendOutcome::Permanent { .. } => {
                permanent.get_or_insert(permanent_failure);
            }
        }
    }
    let outcome = if accepted.is_empty() {
        transient
            .or(permanent)
            .or(invalid)
            .unwrap_or_else(|| SendOutcome::permanent("no_device", "the user has no devices"))
    } else {
        SendOutcome::Accepted {
            provider_message_id: accepted.join(","),
        }
    };
    DevicesOutcome { outcome, dead }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fanout_domain::user::DeviceToken;

    use super::*;

    fn device(token: &str) -> Device {
        Device {
            platform: Platform::Fcm,
            token: DeviceToken::parse(token).unwrap(),
        }
    }

    fn transient(after: u64) -> SendOutcome {
        SendOutcome::Transient {
            code: "fcm_QUOTA_EXCEEDED".into(),
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(after)),
        }
    }

    fn dead() -> SendOutcome {
        SendOutcome::InvalidAddress {
            code: "fcm_UNREGISTERED".into(),
            message: "gone".into(),
        }
    }

    #[test]
    fn one_accepting_device_delivers_and_dead_tokens_are_reported() {
        let (a, b, c) = (device("a"), device("b"), device("c"));
        let got = combine(vec![
            (&a, dead()),
            (
                &b,
                SendOutcome::Accepted {
                    provider_message_id: "m1".into(),
                },
            ),
            (&c, transient(3)),
        ]);
        assert_eq!(
            got.outcome,
            SendOutcome::Accepted {
                provider_message_id: "m1".into()
            }
        );
        assert_eq!(got.dead, vec![(a, "fcm_UNREGISTERED".to_owned())]);
    }

    #[test]
    fn without_a_delivery_the_most_hopeful_failure_wins() {
        let (a, b, c) = (device("a"), device("b"), device("c"));
        let got = combine(vec![(&a, transient(2)), (&b, dead()), (&c, transient(9))]);
        assert!(
            matches!(got.outcome, SendOutcome::Transient { retry_after, .. } if retry_after == Some(Duration::from_secs(9))),
            "{got:?}"
        );
        let got = combine(vec![
            (&a, dead()),
            (
                &b,
                SendOutcome::permanent("fcm_INVALID_ARGUMENT", "bad payload"),
            ),
        ]);
        assert!(matches!(got.outcome, SendOutcome::Permanent { .. }));
        let got = combine(vec![(&a, dead())]);
        assert!(matches!(got.outcome, SendOutcome::InvalidAddress { .. }));
    }
}
