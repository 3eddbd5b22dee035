//! The noisy neighbour: tenant A's burst against tenant B's steady `high` requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fanout_store::Store;
use serde_json::{Value, json};

use super::measure::{Run, Spread, delivered_at};
use super::{Api, Sizes, Tenant};
use crate::round;

/// What tenant B saw while tenant A's burst drained.
pub(super) struct Neighbours {
    pub(super) quiet: Spread,
    quiet_accept: Spread,
    noisy_accepted_s: f64,
    noisy_drained_s: f64,
}

impl Neighbours {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "quiet_trigger_to_delivered_ms": self.quiet.to_json(),
            "quiet_accept_ms": self.quiet_accept.to_json(),
            "noisy_accepted_s": round(self.noisy_accepted_s),
            "noisy_drained_s": round(self.noisy_drained_s),
        })
    }
}

/// Tenant A bursts `sizes.noisy_requests`; once it has a backlog, tenant B sends its `high`
/// requests at a steady pace. `label` keeps each run's dedupe keys apart.
pub(super) async fn noisy_neighbour(
    api: &Arc<Api>,
    store: &Store,
    noisy: &Arc<Tenant>,
    quiet: &Arc<Tenant>,
    sizes: &Sizes,
    label: &str,
) -> anyhow::Result<Neighbours> {
    let started = Instant::now();
    let burst = {
        let (api, noisy, label) = (api.clone(), noisy.clone(), format!("noisy-{label}"));
        let (count, in_flight) = (sizes.noisy_requests, sizes.concurrency);
        tokio::spawn(async move {
            let sent = api.burst(&noisy, &label, count, in_flight).await?;
            anyhow::Ok((sent, started.elapsed().as_secs_f64()))
        })
    };
    // A backlog: a second of A's burst, some 100 requests at the API's pace here.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut tick = tokio::time::interval(sizes.quiet_every);
    let mut tasks = Vec::new();
    for i in 0..sizes.quiet_requests {
        tick.tick().await;
        let (api, quiet) = (api.clone(), quiet.clone());
        let dedupe = format!("quiet-{label}-{i}");
        tasks.push(tokio::spawn(async move {
            let user = quiet.users[i % quiet.users.len()].clone();
            api.notify(&quiet, &user, dedupe, "high").await
        }));
    }
    let mut quiet_sent = Vec::new();
    for task in tasks {
        quiet_sent.push(task.await??);
    }
    let quiet_at = delivered_at(store, &quiet.id, &quiet_sent).await?;
    let (noisy_sent, noisy_accepted_s) = burst.await??;
    let noisy_at = delivered_at(store, &noisy.id, &noisy_sent).await?;
    let first = noisy_sent
        .iter()
        .map(|s| s.sent_at_ms)
        .min()
        .unwrap_or_default();
    let last = noisy_at.iter().copied().max().unwrap_or_default();
    let (b, a) = (
        Run::of(&quiet_sent, &quiet_at),
        Run::of(&noisy_sent, &noisy_at),
    );
    println!(
        "noisy neighbour ({label}): B's {} high requests delivered p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms (accepted p50 {:.0} ms, p95 {:.0} ms); A's {} accepted in {noisy_accepted_s:.1}s, drained in {:.1}s (A p95 {:.0} ms)",
        b.requests,
        b.delivered_ms.p50,
        b.delivered_ms.p95,
        b.delivered_ms.max,
        b.accept_ms.p50,
        b.accept_ms.p95,
        a.requests,
        (last - first) as f64 / 1000.0,
        a.delivered_ms.p95,
    );
    Ok(Neighbours {
        quiet: b.delivered_ms,
        quiet_accept: b.accept_ms,
        noisy_accepted_s,
        noisy_drained_s: (last - first) as f64 / 1000.0,
    })
}
