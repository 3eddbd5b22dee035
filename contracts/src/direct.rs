//! The direct path's activity contract: one call resolves a small audience and delivers it
//! over every channel, so a one-recipient request costs one workflow execution and one local
//! activity (see `fanout_workflows::direct`).

use std::time::Duration;

use fanout_domain::UnixMillis;
use fanout_domain::receipt::{Progress, RequestState};
use fanout_domain::retry::RoundOutcome;
use serde::{Deserialize, Serialize};

use crate::{AudienceSnapshot, NotificationInput};

/// Input of `deliver_direct`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliverDirectInput {
    /// The request as the workflow was started with it.
    pub request: NotificationInput,
    /// The delivery round (0 first); later rounds only send what is still pending.
    #[serde(default)]
    pub round: u32,
    /// The last round: what still fails transiently is recorded as failed (and dead-lettered).
    #[serde(default)]
    pub final_round: bool,
    /// The snapshot an earlier round resolved; `None` resolves it (again, on a retry of the
    /// first round, which rewrites the same pages).
    #[serde(default)]
    pub snapshot: Option<AudienceSnapshot>,
    /// Deferred deliveries released at or before this instant go out in this round: the
    /// release bucket the workflow just slept until.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_through_ms: Option<UnixMillis>,
}

/// What one `deliver_direct` round did. Counts cover the whole request, including instances
/// earlier rounds settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectReport {
    /// The audience snapshot, for later rounds.
    pub snapshot: AudienceSnapshot,
    /// Counts per channel.
    pub progress: Progress,
    /// Instances still waiting for a retry after a transient failure (held ones included).
    pub pending: u64,
    /// Pending instances not attempted because a provider's breaker was open or the channel is
    /// switched off; `retry_after_ms` then says when to come back.
    #[serde(default)]
    pub held: u64,
    /// Instances that reached a final status in this round.
    #[serde(default)]
    pub settled_this_round: u64,
    /// The longest `Retry-After` a provider asked for in this round, in milliseconds.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    /// Pending instances the local activity left untouched when its deadline for starting
    /// sends passed (paused, paced, or a slow provider): the workflow hands them to a normal
    /// activity at once, in the same round.
    #[serde(default)]
    pub deferred: u64,
    /// Set when nothing was left pending and the activity recorded the request's final state,
    /// so the workflow only has to return it.
    #[serde(default)]
    pub finalized: Option<RequestState>,
    /// Instances waiting for their recipients' quiet hours to end (not in `pending`).
    #[serde(default)]
    pub quiet: u64,
    /// The earliest release among them: the workflow sleeps until then and runs a round with
    /// it as `release_through_ms`.
    #[serde(default)]
    pub quiet_until_ms: Option<UnixMillis>,
}

impl DirectReport {
    /// The round as the retry backoff weighs it.
    pub fn round(&self) -> RoundOutcome {
        RoundOutcome {
            settled: self.settled_this_round,
            pending: self.pending,
            retry_after: self.retry_after_ms.map(Duration::from_millis),
        }
    }
}
