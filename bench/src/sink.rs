//! One recipient's deliveries through the same adapters the activities use (lettre over SMTP
//! to the sandbox, the inbox in the store): the unit of work the baselines repeat, on both
//! channels ([`deliver`]: the naive baseline, the direct ceiling) or as one email
//! ([`send_email`]: the transactional section's minimal and direct designs).

use fanout_activities::EmailSender;
use fanout_activities::SendOutcome;
use fanout_domain::inbox::InboxMessage;
use fanout_domain::receipt::{DeliveryStatus, Receipt};
use fanout_domain::render::{Compiled, RenderContext};
use fanout_domain::user::{EmailAddress, User};
use fanout_domain::{Channel, InstanceId, RequestId, UserId};
use fanout_store::now_ms;

/// Compiled content of the bench template.
pub struct Content {
    /// Email parts.
    pub email: Compiled,
    /// In-app parts.
    pub in_app: Compiled,
}

/// A user reachable by email only: `id`, named `id`, at `id@domain`.
pub fn email_user(id: &str, domain: &str) -> anyhow::Result<User> {
    Ok(User {
        email: Some(EmailAddress::parse(&format!("{id}@{domain}"))?),
        user_id: UserId::parse(id)?,
        name: Some(id.to_owned()),
        locale: None,
        timezone: None,
        devices: Vec::new(),
        quiet_hours: None,
    })
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
    let email = send_email(sender, &content.email, request_id, user, &vars).await;
    let message = content.in_app.render_in_app(&vars).ok().map(|rendered| {
        fanout_activities::in_app::message(
            &InstanceId::derive(request_id, &user.user_id, Channel::InApp),
            request_id,
            &user.user_id,
            rendered,
        )
    });
    let in_app = receipt(
        request_id,
        &user.user_id,
        Channel::InApp,
        if message.is_some() {
            DeliveryStatus::Delivered
        } else {
            DeliveryStatus::Failed
        },
    );
    (vec![email, in_app], message)
}

/// Renders and sends one email; returns its receipt, timed when the sandbox accepted it.
pub async fn send_email(
    sender: &EmailSender,
    email: &Compiled,
    request_id: &RequestId,
    user: &User,
    vars: &RenderContext,
) -> Receipt {
    let email_id = InstanceId::derive(request_id, &user.user_id, Channel::Email);
    let sent = match (&user.email, email.render_email(vars)) {
        (Some(address), Ok(rendered)) => sender.send(&email_id, address, &rendered).await,
        _ => SendOutcome::Permanent {
            code: "bench".into(),
            message: "no address or render error".into(),
        },
    };
    match sent {
        SendOutcome::Accepted {
            provider_message_id,
        } => Receipt {
            provider_message_id: Some(provider_message_id),
            provider: None,
            ..receipt(
                request_id,
                &user.user_id,
                Channel::Email,
                DeliveryStatus::Delivered,
            )
        },
        SendOutcome::Permanent { code, message }
        | SendOutcome::InvalidAddress { code, message }
        | SendOutcome::Transient { code, message, .. } => Receipt {
            error_code: Some(code),
            error_message: Some(message),
            ..receipt(
                request_id,
                &user.user_id,
                Channel::Email,
                DeliveryStatus::Failed,
            )
        },
    }
}

/// A first-attempt receipt, timed now.
pub fn receipt(
    request_id: &RequestId,
    user_id: &UserId,
    channel: Channel,
    status: DeliveryStatus,
) -> Receipt {
    Receipt {
        instance_id: InstanceId::derive(request_id, user_id, channel),
        request_id: request_id.clone(),
        user_id: user_id.clone(),
        channel,
        status,
        provider_message_id: None,
        provider: None,
        attempts: 1,
        latency_ms: None,
        error_code: None,
        error_message: None,
        updated_at_ms: now_ms(),
        release_at_ms: None,
    }
}
