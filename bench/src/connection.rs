//! Email throughput over one SMTP connection: lettre's transport as published (which leaves
//! Nagle's algorithm on) against Fanout's sender (lettre's client on a `TCP_NODELAY` stream),
//! both sending one message after another to the sandbox.

use std::time::Instant;

use fanout_activities::EmailSender;
use fanout_domain::render::RenderedEmail;
use fanout_domain::user::EmailAddress;
use fanout_domain::{DedupeKey, InstanceId, TenantId, UserId};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Messages per second through lettre's own pooled transport, one connection, sequential.
pub async fn lettre_as_published(port: u16, messages: usize) -> anyhow::Result<f64> {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .pool_config(PoolConfig::new().max_size(1))
        .build();
    let started = Instant::now();
    for i in 0..messages {
        let message = Message::builder()
            .from("Bench <bench@fanout.localhost>".parse()?)
            .to(format!("lettre{i}@connection.test").parse()?)
            .subject("one connection")
            .body(String::from("Hi, this is the per-connection benchmark."))?;
        transport.send(message).await?;
    }
    Ok(messages as f64 / started.elapsed().as_secs_f64())
}

/// Messages per second through Fanout's sender, one connection, sequential.
pub async fn fanout_sender(sender: &EmailSender, messages: usize) -> anyhow::Result<f64> {
    let request = DedupeKey::new(TenantId::parse("bench")?, "connection")?.request_id();
    let email = RenderedEmail {
        subject: "one connection".into(),
        text: "Hi, this is the per-connection benchmark.".into(),
        html: None,
    };
    let started = Instant::now();
    for i in 0..messages {
        let user = UserId::parse(&format!("c{i}"))?;
        let to = EmailAddress::parse(&format!("fanout{i}@connection.test"))?;
        let id = InstanceId::derive(&request, &user, fanout_domain::Channel::Email);
        let outcome = sender.send(&id, &to, &email).await;
        anyhow::ensure!(
            matches!(outcome, fanout_activities::SendOutcome::Accepted { .. }),
            "send failed: {outcome:?}"
        );
    }
    Ok(messages as f64 / started.elapsed().as_secs_f64())
}
