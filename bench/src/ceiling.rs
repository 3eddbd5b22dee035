//! Each sink's own ceiling: a minimal client blasting the sink one of Fanout's channels writes
//! to, in the same run and against the same sandbox, with as many requests in flight as Fanout
//! keeps on that channel (a window of pages, each with its sends in flight). There is no
//! Temporal, no audience, no pacing, no receipts and no rendering per recipient: one prepared
//! message goes to `count` distinct addresses or tokens.
//!
//! What each ceiling measures:
//! - SMTP: Fanout's own pooled sender (lettre's client on `TCP_NODELAY` connections) against the
//!   SMTP sandbox; lettre as published is far slower per connection (see [`crate::connection`]),
//!   so it would make no ceiling.
//! - APNs and FCM: the adapters alone (`ApnsClient`, `FcmClient`: HTTP/2 over TLS with a provider
//!   token, HTTP v1 with an OAuth access token) against the sandbox's simulators, which run on
//!   the same two cores. They measure the client and the simulator, not Apple or Google.
//! - In-app: the store alone, `record_deliveries` of receipts with their inbox rows, in the
//!   batches Fanout's delivery loop flushes, with one writer per page in flight.

use std::future::Future;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use fanout_activities::apns::ApnsClient;
use fanout_activities::fcm::FcmClient;
use fanout_activities::push::{PushMessage, PushPriority};
use fanout_activities::{EmailSender, SendOutcome};
use fanout_domain::receipt::{DeliveryStatus, Receipt};
use fanout_domain::render::{RenderedEmail, RenderedInApp};
use fanout_domain::user::{DeviceToken, EmailAddress};
use fanout_domain::{Channel, DedupeKey, InstanceId, RequestId, TenantId, UserId};
use fanout_store::Store;
use futures::StreamExt;

/// Receipts per `record_deliveries` call: the delivery loop's flush size.
pub use fanout_activities::delivery::FLUSH_EVERY as FLUSH_BATCH;

/// Accepted sends (or written deliveries) over the seconds they took.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Sends the sink accepted.
    pub count: u64,
    /// Wall time from the first send to the last answer.
    pub seconds: f64,
}

impl Rate {
    /// Accepted sends per second.
    pub fn per_s(&self) -> f64 {
        self.count as f64 / self.seconds
    }
}

/// A request of its own per ceiling, so its instance ids never meet Fanout's.
fn request(name: &str) -> anyhow::Result<RequestId> {
    Ok(DedupeKey::new(TenantId::parse("bench")?, name)?.request_id())
}

fn instance(request: &RequestId, i: usize, channel: Channel) -> anyhow::Result<InstanceId> {
    Ok(InstanceId::derive(
        request,
        &UserId::parse(&format!("ceiling{i:07}"))?,
        channel,
    ))
}

/// Runs `send(i)` for `0..count` with `in_flight` at a time; fails on the first send the sink
/// did not accept, since a ceiling that counts refusals would flatter the client.
async fn blast<F, Fut>(count: usize, in_flight: usize, send: F) -> anyhow::Result<Rate>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<SendOutcome>>,
{
    let started = Instant::now();
    let mut sends = futures::stream::iter(0..count)
        .map(send)
        .buffer_unordered(in_flight.max(1));
    let mut accepted = 0u64;
    while let Some(outcome) = sends.next().await {
        match outcome? {
            SendOutcome::Accepted { .. } => accepted += 1,
            refused => anyhow::bail!("the sink refused a ceiling send: {refused:?}"),
        }
    }
    Ok(Rate {
        count: accepted,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Fanout's pooled SMTP sender blasting the SMTP sandbox.
pub async fn smtp(sender: &EmailSender, count: usize, in_flight: usize) -> anyhow::Result<Rate> {
    let request = request("ceiling-email")?;
    let email = RenderedEmail {
        subject: "Star posted".into(),
        text: "Hi, Star posted something new.".into(),
        html: None,
    };
    blast(count, in_flight, |i| {
        let (request, email) = (&request, &email);
        async move {
            let id = instance(request, i, Channel::Email)?;
            let to = EmailAddress::parse(&format!("ceiling{i:07}@bench.test"))?;
            Ok(sender.send(&id, &to, email).await)
        }
    })
    .await
}

fn push_message(request: &RequestId, i: usize) -> anyhow::Result<PushMessage> {
    let mut data = serde_json::Map::new();
    data.insert("thread".into(), "bench".into());
    Ok(PushMessage {
        instance_id: instance(request, i, Channel::Push)?,
        title: "Star posted".into(),
        body: "Have a look.".into(),
        data,
        collapse_id: None,
        priority: PushPriority::High,
        expires_at: None,
    })
}

/// A distinct token per run and send, so the simulator's read-back of Fanout's own tokens is
/// left alone.
fn run_nonce() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// `ApnsClient` alone blasting the APNs simulator.
pub async fn apns(client: &ApnsClient, count: usize, in_flight: usize) -> anyhow::Result<Rate> {
    let request = request("ceiling-apns")?;
    let nonce = run_nonce() << 24;
    blast(count, in_flight, |i| {
        let request = &request;
        async move {
            let token = DeviceToken::parse(&format!("{:064x}", nonce + i as u128))?;
            Ok(client.send(&token, &push_message(request, i)?).await)
        }
    })
    .await
}

/// `FcmClient` alone blasting the FCM simulator.
pub async fn fcm(client: &FcmClient, count: usize, in_flight: usize) -> anyhow::Result<Rate> {
    let request = request("ceiling-fcm")?;
    let nonce = run_nonce();
    blast(count, in_flight, |i| {
        let request = &request;
        async move {
            let token = DeviceToken::parse(&format!("ceiling-{nonce:x}-{i}:APA91b"))?;
            Ok(client.send(&token, &push_message(request, i)?).await)
        }
    })
    .await
}

/// The store alone: `count` delivered in-app receipts, with their inbox rows if `inbox` (the
/// in-app ceiling) or without (the receipt every channel writes per delivery), written with
/// `record_deliveries` in batches of `batch`, `writers` batches at a time.
pub async fn in_app(
    store: &Store,
    tenant_id: &TenantId,
    count: usize,
    batch: usize,
    writers: usize,
    inbox: bool,
) -> anyhow::Result<Rate> {
    let request_id = request(if inbox {
        "ceiling-in-app"
    } else {
        "ceiling-receipts"
    })?;
    // Built before the clock starts: the ceiling is the writes, not the allocation.
    let mut rows = Vec::with_capacity(count);
    for i in 0..count {
        let user_id = UserId::parse(&format!("ceiling{i:07}"))?;
        let id = InstanceId::derive(&request_id, &user_id, Channel::InApp);
        let message = fanout_activities::in_app::message(
            &id,
            &request_id,
            &user_id,
            RenderedInApp {
                title: "Star posted".into(),
                body: "Have a look.".into(),
                action_url: None,
                payload: Default::default(),
            },
        );
        let receipt = crate::sink::receipt(
            &request_id,
            &user_id,
            Channel::InApp,
            DeliveryStatus::Delivered,
        );
        rows.push((receipt, message));
    }
    let batches: Vec<(Vec<Receipt>, Vec<_>)> = rows
        .chunks(batch.max(1))
        .map(|chunk| chunk.iter().cloned().unzip())
        .map(|(receipts, messages): (Vec<Receipt>, Vec<_>)| {
            (receipts, if inbox { messages } else { Vec::new() })
        })
        .collect();
    let started = Instant::now();
    let mut writes = futures::stream::iter(batches.iter())
        .map(|(receipts, inbox)| async move {
            store
                .record_deliveries(tenant_id, receipts, inbox)
                .await
                .map(|()| receipts.len() as u64)
        })
        .buffer_unordered(writers.max(1));
    let mut written = 0;
    while let Some(n) = writes.next().await {
        written += n?;
    }
    Ok(Rate {
        count: written,
        seconds: started.elapsed().as_secs_f64(),
    })
}
