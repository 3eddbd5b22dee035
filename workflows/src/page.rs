//! `FanoutPageWorkflow`: one page of the audience over every channel, channels concurrently.
//!
//! Each channel runs in delivery rounds: one `deliver_page` activity sends everything on the
//! page that is not final yet and reports what is still pending after transient provider
//! failures (429, 5xx, timeouts); the workflow waits out a provider-aware backoff
//! ([`fanout_domain::retry`], jitter drawn from the workflow's deterministic random source,
//! never shorter than `Retry-After`) on a durable timer and runs the next round, which skips
//! every instance already delivered. The last round records what still fails as failed, which
//! puts it on the dead-letter list. Temporal's own activity retries remain for the worker or the
//! store failing. Cancelling the workflow cancels the activities and waits until they stopped.

use std::time::Duration;

use fanout_contracts::{
    DeliverPageInput, DeliveryActivities, FanoutPageInput, PageOutcome, PageReport,
};
use fanout_domain::Channel;
use fanout_domain::retry::{self, Backoff, RoundOutcome};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::join_all;
use temporalio_sdk::{TimerResult, WorkflowContext, WorkflowResult};

use crate::options;

/// Pages held by an open circuit breaker come back within this long after it half-opens.
const HELD_SPREAD: Duration = Duration::from_millis(500);

/// A page has no state worth querying; the parent aggregates.
#[workflow]
#[derive(Default)]
pub struct FanoutPageWorkflow;

#[workflow_methods]
impl FanoutPageWorkflow {
    /// Delivers the page and reports per-channel counts.
    #[run(name = fanout_contracts::FANOUT_PAGE_WORKFLOW)]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: FanoutPageInput,
    ) -> WorkflowResult<PageOutcome> {
        let ctx = &*ctx;
        let channels = input
            .channels
            .iter()
            .map(|channel| deliver_channel(ctx, &input, *channel));
        let mut reports = Vec::with_capacity(input.channels.len());
        for result in join_all(channels).await {
            reports.push(result?);
        }
        Ok(PageOutcome {
            page: input.page,
            reports,
        })
    }
}

/// Runs delivery rounds for one channel until nothing is pending, the rounds run out, or the
/// workflow is cancelled while it waits (finalising records what is left as cancelled). Rounds
/// in which a provider's circuit breaker held sends do not count against the rounds.
async fn deliver_channel(
    ctx: &WorkflowContext<FanoutPageWorkflow>,
    input: &FanoutPageInput,
    channel: Channel,
) -> WorkflowResult<PageReport> {
    let mut backoff = Backoff::default();
    let mut round = 0;
    loop {
        let final_round = round + 1 >= retry::MAX_ROUNDS;
        let report = ctx
            .execute_activity(
                DeliveryActivities::deliver_page,
                DeliverPageInput {
                    request_id: input.request_id.clone(),
                    tenant_id: input.tenant_id.clone(),
                    template_id: input.template_id.clone(),
                    channel,
                    page: input.page,
                    data: input.data.clone(),
                    priority: input.priority,
                    ttl_seconds: input.ttl_seconds,
                    round,
                    final_round,
                    quiet_hours: input.quiet_hours,
                    release_through_ms: input.release_through_ms,
                    release_only: input.release_through_ms.is_some(),
                },
                options::delivery_activity(),
            )
            .await?;
        if report.finishes_channel(final_round) {
            return Ok(report);
        }
        let delay = round_delay(&mut backoff, report.round(), report.held, ctx.random());
        if ctx.timer(delay).await == TimerResult::Cancelled {
            return Ok(report);
        }
        if report.held == 0 {
            round += 1;
        }
    }
}

/// How long to wait before the next delivery round, given what the last one saw; `unit` is a
/// draw from the workflow's deterministic random source.
pub(crate) fn round_delay(
    backoff: &mut Backoff,
    round: RoundOutcome,
    held: u64,
    unit: f64,
) -> Duration {
    if held > 0 {
        // A provider's breaker is open (or the channel is switched off): wait until it probes
        // again, spread a little so the pages do not all come back at once. Not a failed round,
        // so the backoff does not grow and the rounds are not used up: an outage never
        // dead-letters.
        let open_for = round.retry_after.unwrap_or(Duration::from_secs(1));
        open_for + HELD_SPREAD.mul_f64(unit)
    } else {
        backoff.next_delay(round, unit)
    }
}
