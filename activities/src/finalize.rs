//! The end of a request: settle what never finished, recount, and record the outcome.

use fanout_contracts::FinalizeInput;
use fanout_domain::receipt::{DeliveryStatus, Progress, Receipt};
use fanout_domain::{Channel, InstanceId};
use fanout_store::{Store, now_ms};
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::{heartbeat, permanent, store_error};

/// Records every instance without a final receipt as `settle_as` (when asked), recounts from
/// the receipts, and writes the request's final state. Returns the counts written.
pub async fn finalize(
    store: &Store,
    ctx: &ActivityContext,
    input: &FinalizeInput,
) -> Result<Progress, ActivityError> {
    let mut progress = input.progress.clone();
    if let Some(status) = input.settle_as {
        settle(store, ctx, input, status).await?;
    }
    if input.settle_as.is_some() || input.recount {
        let counted = store
            .receipt_counts(&input.request_id)
            .await
            .map_err(store_error)?;
        for channel in &input.channels {
            let mut counts = counted.get(channel).copied().unwrap_or_default();
            counts.total = progress.recipients + progress.excluded;
            counts.suppressed += progress.excluded;
            counts.recompute_pending();
            progress.channels.insert(*channel, counts);
        }
    }
    progress.paused = false;
    store
        .finalize_request(&input.request_id, input.state, &progress)
        .await
        .map_err(store_error)?;
    tracing::info!(
        request_id = %input.request_id,
        state = input.state.as_str(),
        "request finalized"
    );
    Ok(progress)
}

/// Walks the snapshot page by page and gives every instance that has no receipt, or a pending
/// one, a final receipt with `status`.
async fn settle(
    store: &Store,
    ctx: &ActivityContext,
    input: &FinalizeInput,
    status: DeliveryStatus,
) -> Result<(), ActivityError> {
    let Some(tenant_id) = &input.tenant_id else {
        return Err(permanent(
            fanout_contracts::ERR_INVALID_INPUT,
            "settling needs the tenant".into(),
        ));
    };
    let code = match status {
        DeliveryStatus::Cancelled => "request_cancelled",
        _ => "page_failed",
    };
    for page in 0..input.progress.pages_total {
        let members = store
            .load_page(tenant_id, &input.request_id, page)
            .await
            .map_err(store_error)?;
        let users: Vec<_> = members.into_iter().map(|m| m.user_id).collect();
        for channel in &input.channels {
            let receipts = store
                .get_receipts(&input.request_id, *channel, &users)
                .await
                .map_err(store_error)?;
            let unsettled: Vec<Receipt> = users
                .iter()
                .map(|u| (u, InstanceId::derive(&input.request_id, u, *channel)))
                .filter(|(_, id)| {
                    receipts.get(id).is_none_or(|r| {
                        matches!(r.status, DeliveryStatus::Pending | DeliveryStatus::Deferred)
                    })
                })
                .map(|(user, id)| settled(input, *channel, user, id, &receipts, status, code))
                .collect();
            // Conditional: a page still finishing may have recorded a final receipt since the
            // read above, and it stands.
            store
                .settle_receipts(tenant_id, &unsettled)
                .await
                .map_err(store_error)?;
        }
        heartbeat(ctx, page).await;
    }
    Ok(())
}

fn settled(
    input: &FinalizeInput,
    channel: Channel,
    user: &fanout_domain::UserId,
    id: InstanceId,
    receipts: &std::collections::HashMap<InstanceId, Receipt>,
    status: DeliveryStatus,
    code: &str,
) -> Receipt {
    let previous = receipts.get(&id);
    Receipt {
        request_id: input.request_id.clone(),
        user_id: user.clone(),
        channel,
        status,
        provider_message_id: None,
        provider: None,
        attempts: previous.map_or(0, |r| r.attempts),
        latency_ms: None,
        error_code: Some(code.to_owned()),
        error_message: previous.and_then(|r| r.error_message.clone()),
        updated_at_ms: now_ms(),
        release_at_ms: previous.and_then(|r| r.release_at_ms),
        instance_id: id,
    }
}
