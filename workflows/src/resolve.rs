//! `ResolveAudienceWorkflow`: materialises a request's audience snapshot, chunk by chunk.
//!
//! Each activity call writes up to [`PAGES_PER_CHUNK`] pages with keyset pagination and returns
//! only counts and the cursor, so the history grows per chunk, never per recipient. After
//! [`CHUNKS_PER_RUN`] calls it continues as new with the cursor, keeping any one history short
//! however large the audience.

use fanout_contracts::{
    AudienceSnapshot, DeliveryActivities, ResolveAudienceInput, ResolveChunk, ResolveChunkInput,
};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ContinueAsNewOptions, WorkflowContext, WorkflowResult};

use crate::options;

/// Pages one activity call writes at most.
pub const PAGES_PER_CHUNK: u32 = 20;
/// Activity calls per run before continuing as new (about 4 events each).
pub const CHUNKS_PER_RUN: u32 = 250;

/// Resolution has no state worth querying; progress is in the parent.
#[workflow]
#[derive(Default)]
pub struct ResolveAudienceWorkflow;

#[workflow_methods]
impl ResolveAudienceWorkflow {
    /// Resolves the whole audience and returns the snapshot's size.
    #[run(name = fanout_contracts::RESOLVE_AUDIENCE_WORKFLOW)]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: ResolveAudienceInput,
    ) -> WorkflowResult<AudienceSnapshot> {
        let mut total = input.resume.clone().unwrap_or_default();
        let mut chunks = 0;
        while !total.done {
            if chunks == CHUNKS_PER_RUN {
                let next = ResolveAudienceInput {
                    resume: Some(total),
                    ..input
                };
                let never = ctx.continue_as_new(next, ContinueAsNewOptions::default())?;
                match never {}
            }
            let chunk: ResolveChunk = ctx
                .execute_activity(
                    DeliveryActivities::resolve_audience_chunk,
                    ResolveChunkInput {
                        request_id: input.request_id.clone(),
                        tenant_id: input.tenant_id.clone(),
                        recipients: input.recipients.clone(),
                        after: total.after.clone(),
                        first_page: total.pages,
                        max_pages: PAGES_PER_CHUNK,
                        actor_id: input.actor_id.clone(),
                    },
                    options::store_activity(),
                )
                .await?;
            total.pages += chunk.pages;
            total.recipients += chunk.recipients;
            total.excluded += chunk.excluded;
            total.after = chunk.after.or(total.after);
            total.done = chunk.done;
            chunks += 1;
        }
        Ok(AudienceSnapshot {
            recipients: total.recipients,
            pages: total.pages,
            excluded: total.excluded,
        })
    }
}
