//! What the push channels (APNs, FCM) send: one rendered message, addressed per device by the
//! adapters in [`crate::apns`] and [`crate::fcm`].

use std::time::SystemTime;

use fanout_domain::InstanceId;

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
