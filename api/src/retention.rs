//! The retention job: every API process prunes the store on an interval (see
//! `fanout_store::retention` for what goes). Deletes are idempotent, so replicas running it at
//! once only repeat each other's empty batches.

use std::time::Duration;

use fanout_store::Store;
use fanout_store::retention::RetentionPolicy;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

/// What is kept and for how long (`FANOUT_RETENTION__*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// Whether this process prunes at all.
    pub enabled: bool,
    /// Seconds between passes; the first runs a minute after start.
    pub interval_seconds: u64,
    /// Days an inbox stream can resume within; older resumes get a `reset` frame.
    pub inbox_events_days: u32,
    /// Days finished requests keep their status and receipts.
    pub requests_days: u32,
    /// Days dead letters are kept for a re-drive.
    pub dead_letters_days: u32,
    /// Rows deleted per statement, so the store's writer is never held long.
    pub batch: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: 3600,
            inbox_events_days: 7,
            requests_days: 90,
            dead_letters_days: 30,
            batch: 1000,
        }
    }
}

impl RetentionConfig {
    fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            inbox_events_days: self.inbox_events_days.max(1),
            requests_days: self.requests_days.max(1),
            dead_letters_days: self.dead_letters_days.max(1),
            batch: self.batch.max(1),
        }
    }
}

/// Starts the job; `None` when disabled. Abort the handle to stop it.
pub fn spawn(store: Store, config: &RetentionConfig) -> Option<JoinHandle<()>> {
    if !config.enabled {
        return None;
    }
    let policy = config.policy();
    let every = Duration::from_secs(config.interval_seconds.max(60));
    Some(tokio::spawn(async move {
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(60), every);
        loop {
            ticks.tick().await;
            match store.prune(&policy).await {
                Ok(pruned) => tracing::info!(
                    inbox_events = pruned.inbox_events,
                    inbox_tokens = pruned.inbox_tokens,
                    stream_tickets = pruned.stream_tickets,
                    dead_letters = pruned.dead_letters,
                    requests = pruned.requests,
                    receipts = pruned.receipts,
                    frequency_slots = pruned.frequency_slots,
                    digests = pruned.digests,
                    "retention pass done"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "retention pass failed; retrying next interval")
                }
            }
        }
    }))
}
