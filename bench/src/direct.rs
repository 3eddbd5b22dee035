//! The direct ceiling: the same audience through the same adapters from a plain loop, with the
//! same concurrency and write batching as the activities, and no Temporal at all.

use std::time::Instant;

use fanout_activities::EmailSender;
use fanout_domain::request::RecipientsQuery;
use fanout_domain::user::User;
use fanout_domain::{RequestId, TenantId, UserId};
use fanout_store::Store;
use futures::StreamExt;

use crate::sink::{self, Content};

/// Recipients per page, as the platform's default.
const PAGE: u32 = 1_000;

/// Delivers the whole audience; returns (deliveries, seconds).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    store: &Store,
    sender: &EmailSender,
    content: &Content,
    tenant_id: &TenantId,
    request_id: &RequestId,
    audience: &RecipientsQuery,
    data: &serde_json::Map<String, serde_json::Value>,
    concurrency: usize,
) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let mut after: Option<UserId> = None;
    let mut delivered = 0u64;
    let mut page = 0u32;
    let mut failures = std::collections::BTreeMap::new();
    loop {
        // The same snapshot-and-load path the platform takes: page the audience, write the
        // page, read it back with profiles.
        let batch = store
            .audience_batch(tenant_id, audience, after.as_ref(), PAGE)
            .await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.user_id.clone());
        let ids: Vec<UserId> = batch.iter().map(|m| m.user_id.clone()).collect();
        store.write_audience_page(request_id, page, &ids).await?;
        let users: Vec<User> = store
            .load_page(tenant_id, request_id, page)
            .await?
            .into_iter()
            .filter_map(|m| m.profile)
            .collect();
        page += 1;
        let mut results = futures::stream::iter(users.iter())
            .map(|user| sink::deliver(sender, content, request_id, user, data))
            .buffer_unordered(concurrency.max(1));
        let (mut receipts, mut inbox) = (Vec::new(), Vec::new());
        while let Some((r, m)) = results.next().await {
            for receipt in &r {
                if receipt.status == fanout_domain::receipt::DeliveryStatus::Delivered {
                    delivered += 1;
                } else {
                    let code = format!(
                        "{}: {}",
                        receipt.error_code.clone().unwrap_or_default(),
                        receipt.error_message.clone().unwrap_or_default()
                    );
                    *failures.entry(code).or_insert(0u64) += 1;
                }
            }
            receipts.extend(r);
            inbox.extend(m);
            if receipts.len() >= 64 {
                store
                    .record_deliveries(tenant_id, &receipts, &inbox)
                    .await?;
                receipts.clear();
                inbox.clear();
            }
        }
        store
            .record_deliveries(tenant_id, &receipts, &inbox)
            .await?;
        if batch.len() < PAGE as usize {
            break;
        }
    }
    if !failures.is_empty() {
        // The loop has no retries: a transient failure here is a lost delivery, reported.
        println!("direct: failed deliveries by code: {failures:?}");
    }
    Ok((delivered, started.elapsed().as_secs_f64()))
}
