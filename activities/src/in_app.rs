//! The in-app channel: a durable inbox row per delivery instance.
//!
//! Delivery builds the message here; the page's flush writes it in the same transaction as its
//! receipt, so the receipt never says delivered for a row that is not there, and the row's id
//! (the instance id) makes a retried delivery a no-op instead of a second row.

use fanout_domain::inbox::InboxMessage;
use fanout_domain::render::RenderedInApp;
use fanout_domain::{InstanceId, RequestId, UserId};
use fanout_store::now_ms;

/// The inbox message for one delivery instance.
pub fn message(
    instance: &InstanceId,
    request_id: &RequestId,
    user_id: &UserId,
    rendered: RenderedInApp,
) -> InboxMessage {
    InboxMessage {
        id: instance.clone(),
        user_id: user_id.clone(),
        request_id: request_id.clone(),
        title: rendered.title,
        body: rendered.body,
        action_url: rendered.action_url,
        data: serde_json::Value::Object(
            rendered
                .payload
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect(),
        ),
        created_at_ms: now_ms(),
        read_at_ms: None,
    }
}
