//! The direct ceiling: the same audience through the same adapters from a plain loop, with the
//! same shape as the platform (pages of the same size, the same number of pages at a time, the
//! same sends in flight per page, the same write batching), and no Temporal at all.

use std::collections::BTreeMap;
use std::time::Instant;

use fanout_activities::EmailSender;
use fanout_domain::receipt::DeliveryStatus;
use fanout_domain::request::RecipientsQuery;
use fanout_domain::user::User;
use fanout_domain::{RequestId, TenantId, UserId};
use fanout_store::Store;
use futures::StreamExt;

use crate::sink::{self, Content};

/// Pages in flight at once: the platform's own window.
pub use fanout_workflows::notification::WINDOW;

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
    page_size: u32,
    concurrency: usize,
) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    // The same snapshot path the platform takes: page the audience by keyset, write each page.
    let mut after: Option<UserId> = None;
    let mut pages = 0u32;
    loop {
        let batch = store
            .audience_batch(tenant_id, audience, after.as_ref(), page_size)
            .await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.user_id.clone());
        let ids: Vec<UserId> = batch.iter().map(|m| m.user_id.clone()).collect();
        store.write_audience_page(request_id, pages, &ids).await?;
        pages += 1;
        if batch.len() < page_size as usize {
            break;
        }
    }
    let outcomes: Vec<anyhow::Result<(u64, BTreeMap<String, u64>)>> =
        futures::stream::iter(0..pages)
            .map(|page| {
                deliver_page(
                    store,
                    sender,
                    content,
                    tenant_id,
                    request_id,
                    data,
                    page,
                    concurrency,
                )
            })
            .buffer_unordered(WINDOW)
            .collect()
            .await;
    let mut delivered = 0;
    let mut failures = BTreeMap::new();
    for outcome in outcomes {
        let (ok, failed) = outcome?;
        delivered += ok;
        for (code, n) in failed {
            *failures.entry(code).or_insert(0) += n;
        }
    }
    if !failures.is_empty() {
        // The loop has no retries: a transient failure here is a lost delivery, reported.
        println!("direct: failed deliveries by code: {failures:?}");
    }
    Ok((delivered, started.elapsed().as_secs_f64()))
}

/// One page: load it with profiles, deliver with `concurrency` in flight, write in batches.
#[allow(clippy::too_many_arguments)]
async fn deliver_page(
    store: &Store,
    sender: &EmailSender,
    content: &Content,
    tenant_id: &TenantId,
    request_id: &RequestId,
    data: &serde_json::Map<String, serde_json::Value>,
    page: u32,
    concurrency: usize,
) -> anyhow::Result<(u64, BTreeMap<String, u64>)> {
    let users: Vec<User> = store
        .load_page(tenant_id, request_id, page)
        .await?
        .into_iter()
        .filter_map(|m| m.profile)
        .collect();
    let mut results = futures::stream::iter(users.iter())
        .map(|user| sink::deliver(sender, content, request_id, user, data))
        .buffer_unordered(concurrency.max(1));
    let (mut receipts, mut inbox) = (Vec::new(), Vec::new());
    let mut delivered = 0;
    let mut failures = BTreeMap::new();
    while let Some((r, m)) = results.next().await {
        for receipt in &r {
            if receipt.status == DeliveryStatus::Delivered {
                delivered += 1;
            } else {
                let code = format!(
                    "{}: {}",
                    receipt.error_code.clone().unwrap_or_default(),
                    receipt.error_message.clone().unwrap_or_default()
                );
                *failures.entry(code).or_insert(0) += 1;
            }
        }
        receipts.extend(r);
        inbox.extend(m);
        if receipts.len() >= crate::ceiling::FLUSH_BATCH {
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
    Ok((delivered, failures))
}
