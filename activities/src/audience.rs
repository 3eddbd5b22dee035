//! Audience resolution: a recipients query becomes a paged snapshot in the store, one chunk of
//! pages per activity call, with keyset pagination.

use fanout_contracts::{ResolveChunk, ResolveChunkInput};
use fanout_domain::UserId;
use fanout_store::Store;
use fanout_store::progress::ResolvedChunk;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::{heartbeat, store_error};

/// Writes up to `input.max_pages` pages of at most `page_size` members, continuing after
/// `input.after`. Members without a user row (deleted, never created) are left out and counted
/// as excluded; the request's actor is left out without being counted. A retry rewrites the same page numbers from the same cursor.
pub async fn resolve_chunk(
    store: &Store,
    ctx: &ActivityContext,
    input: &ResolveChunkInput,
    page_size: u32,
) -> Result<ResolveChunk, ActivityError> {
    let page_size = page_size.max(1);
    let mut chunk = ResolveChunk {
        after: input.after.clone(),
        ..ResolveChunk::default()
    };
    while chunk.pages < input.max_pages {
        let batch = store
            .audience_batch(
                &input.tenant_id,
                &input.recipients,
                chunk.after.as_ref(),
                page_size,
            )
            .await
            .map_err(store_error)?;
        let exhausted = batch.len() < page_size as usize;
        if let Some(last) = batch.last() {
            chunk.after = Some(last.user_id.clone());
        }
        let (present, missing): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .filter(|m| input.actor_id.as_ref() != Some(&m.user_id))
            .partition(|m| m.exists);
        chunk.excluded += missing.len() as u64;
        if !present.is_empty() {
            let users: Vec<UserId> = present.into_iter().map(|m| m.user_id).collect();
            store
                .write_audience_page(&input.request_id, input.first_page + chunk.pages, &users)
                .await
                .map_err(store_error)?;
            chunk.pages += 1;
            chunk.recipients += users.len() as u64;
        }
        heartbeat(ctx, chunk.pages).await;
        if exhausted {
            chunk.done = true;
            break;
        }
    }
    // The snapshot's size so far, for status while the request runs.
    let resolved = ResolvedChunk {
        first_page: input.first_page,
        pages: chunk.pages,
        recipients: chunk.recipients,
        excluded: chunk.excluded,
        done: chunk.done,
    };
    store
        .record_resolved_chunk(&input.request_id, &resolved)
        .await
        .map_err(store_error)?;
    tracing::info!(
        request_id = %input.request_id,
        first_page = input.first_page,
        pages = chunk.pages,
        recipients = chunk.recipients,
        excluded = chunk.excluded,
        done = chunk.done,
        "audience chunk resolved"
    );
    Ok(chunk)
}
