//! The in-app channel: a durable inbox row per delivery instance.

use fanout_domain::inbox::InboxMessage;
use fanout_domain::render::RenderedInApp;
use fanout_domain::{InstanceId, RequestId, TenantId, UserId};
use fanout_store::{Store, StoreError, now_ms};

/// Writes the message to the user's inbox. Upserts by instance id, so a retried delivery
/// never shows twice; returns the inbox message id.
pub async fn deliver(
    store: &Store,
    tenant_id: &TenantId,
    instance: &InstanceId,
    request_id: &RequestId,
    user_id: &UserId,
    rendered: RenderedInApp,
    data: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, StoreError> {
    let message = InboxMessage {
        id: instance.clone(),
        user_id: user_id.clone(),
        request_id: request_id.clone(),
        title: rendered.title,
        body: rendered.body,
        data: serde_json::Value::Object(data.clone()),
        created_at_ms: now_ms(),
        read_at_ms: None,
    };
    store.insert_inbox_message(tenant_id, &message).await?;
    Ok(instance.to_string())
}
