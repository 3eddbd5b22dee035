//! One recipient's deliveries on both channels through the same adapters the activities use
//! (lettre over SMTP to the sandbox, the inbox in the store): the unit of work the naive
//! baseline and the direct ceiling repeat.

use fanout_activities::EmailSender;
use fanout_activities::SendOutcome;
use fanout_domain::inbox::InboxMessage;
use fanout_domain::receipt::{DeliveryStatus, Receipt};
use fanout_domain::render::Compiled;
use fanout_domain::user::User;
use fanout_domain::{Channel, InstanceId, RequestId};
use fanout_store::now_ms;

/// Compiled content of the bench template.
pub struct Content {
    /// Email parts.
    pub email: Compiled,
    /// In-app parts.
    pub in_app: Compiled,
}

/// Sends the email, builds the inbox message, and returns both receipts.
pub async fn deliver(
    sender: &EmailSender,
    content: &Content,
    request_id: &RequestId,
    user: &User,
    data: &serde_json::Map<String, serde_json::Value>,
) -> (Vec<Receipt>, Option<InboxMessage>) {
    let vars = fanout_domain::render::context(data, user, request_id);
    let receipt = |channel: Channel, status: DeliveryStatus, provider: Option<String>| Receipt {
        instance_id: InstanceId::derive(request_id, &user.user_id, channel),
        request_id: request_id.clone(),
        user_id: user.user_id.clone(),
        channel,
        status,
        provider_message_id: provider,
        attempts: 1,
        latency_ms: None,
        error_code: None,
        error_message: None,
        updated_at_ms: now_ms(),
    };
    let mut receipts = Vec::with_capacity(2);
    let email_id = InstanceId::derive(request_id, &user.user_id, Channel::Email);
    let sent = match (&user.email, content.email.render_email(&vars)) {
        (Some(address), Ok(rendered)) => sender.send(&email_id, address, &rendered).await,
        _ => SendOutcome::Permanent {
            code: "bench".into(),
            message: "no address or render error".into(),
        },
    };
    receipts.push(match sent {
        SendOutcome::Accepted {
            provider_message_id,
        } => receipt(
            Channel::Email,
            DeliveryStatus::Delivered,
            Some(provider_message_id),
        ),
        SendOutcome::Permanent { code, message }
        | SendOutcome::InvalidAddress { code, message }
        | SendOutcome::Transient { code, message, .. } => Receipt {
            error_code: Some(code),
            error_message: Some(message),
            ..receipt(Channel::Email, DeliveryStatus::Failed, None)
        },
    });
    let message = content.in_app.render_in_app(&vars).ok().map(|rendered| {
        fanout_activities::in_app::message(
            &InstanceId::derive(request_id, &user.user_id, Channel::InApp),
            request_id,
            &user.user_id,
            rendered,
            data,
        )
    });
    receipts.push(receipt(
        Channel::InApp,
        if message.is_some() {
            DeliveryStatus::Delivered
        } else {
            DeliveryStatus::Failed
        },
        None,
    ));
    (receipts, message)
}
