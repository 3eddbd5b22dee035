//! What the transactional section measures, and how: each request as sent, the receipts'
//! times it is delivered by, the spread of a sample, and Temporal's cost of a request read from
//! its histories.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use fanout_domain::receipt::DeliveryStatus;
use fanout_domain::{RequestId, TenantId};
use fanout_store::Store;
use futures::StreamExt;
use serde_json::{Value, json};
use temporalio_client::{
    Client, UntypedWorkflow, WorkflowFetchHistoryOptions, WorkflowListOptions,
};

use crate::round;

/// One request as sent: its id, when the client sent it (ms since the epoch) and how long the
/// platform took to accept it.
#[derive(Debug, Clone)]
pub(super) struct Sent {
    pub(super) request_id: RequestId,
    pub(super) sent_at_ms: i64,
    pub(super) accept_ms: f64,
    /// The API's own account of the accept, from its `Server-Timing` header.
    pub(super) phases: Vec<(String, f64)>,
}

pub(super) use crate::Spread;

/// What a run measured.
pub(super) struct Run {
    pub(super) requests: usize,
    pub(super) accept_ms: Spread,
    /// Each phase of the API's accept, in the order it reported them.
    pub(super) accept_phases_ms: Vec<(String, Spread)>,
    pub(super) delivered_ms: Spread,
    pub(super) completed_per_s: f64,
}

impl Run {
    pub(super) fn of(sent: &[Sent], delivered_at: &[i64]) -> Self {
        let first = sent.iter().map(|s| s.sent_at_ms).min().unwrap_or_default();
        let last = delivered_at.iter().copied().max().unwrap_or_default();
        let mut phases: Vec<(String, Vec<f64>)> = Vec::new();
        for (name, ms) in sent.iter().flat_map(|s| &s.phases) {
            match phases.iter_mut().find(|(n, _)| n == name) {
                Some((_, sample)) => sample.push(*ms),
                None => phases.push((name.clone(), vec![*ms])),
            }
        }
        Self {
            requests: sent.len(),
            accept_ms: Spread::of(sent.iter().map(|s| s.accept_ms).collect()),
            accept_phases_ms: phases
                .into_iter()
                .map(|(name, sample)| (name, Spread::of(sample)))
                .collect(),
            delivered_ms: Spread::of(
                sent.iter()
                    .zip(delivered_at)
                    .map(|(s, at)| (at - s.sent_at_ms) as f64)
                    .collect(),
            ),
            completed_per_s: sent.len() as f64 / ((last - first).max(1) as f64 / 1000.0),
        }
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "accept_ms": self.accept_ms.to_json(),
            "accept_phases_ms": self
                .accept_phases_ms
                .iter()
                .map(|(name, spread)| (name.clone(), spread.to_json()))
                .collect::<serde_json::Map<_, _>>(),
            "trigger_to_delivered_ms": self.delivered_ms.to_json(),
            "completed_per_s": round(self.completed_per_s),
        })
    }
}

/// Temporal's cost of one request, averaged over a sample of requests.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Cost {
    pub(super) executions: f64,
    pub(super) events: f64,
    pub(super) actions: f64,
}

impl Cost {
    pub(super) fn to_json(self) -> Value {
        json!({"executions": round(self.executions), "events": round(self.events), "billable_actions": round(self.actions)})
    }
}

/// When each request's email receipt said delivered (ms since the epoch), in `sent`'s order.
/// Waits for the last request first, so the store is read once per request only when nearly
/// everything has landed, and not at all while the run is under way.
pub(super) async fn delivered_at(
    store: &Store,
    tenant: &TenantId,
    sent: &[Sent],
) -> anyhow::Result<Vec<i64>> {
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut found: HashMap<&RequestId, i64> = HashMap::new();
    let order: Vec<&Sent> = sent.iter().rev().collect();
    loop {
        for s in &order {
            if found.contains_key(&s.request_id) {
                continue;
            }
            let receipts = store.list_receipts(tenant, &s.request_id, None, 8).await?;
            match receipts
                .iter()
                .find(|r| r.status != DeliveryStatus::Pending)
            {
                Some(r) if r.status == DeliveryStatus::Delivered => {
                    found.insert(&s.request_id, r.updated_at_ms);
                }
                Some(r) => bail!("{} ended {:?}: {r:?}", s.request_id, r.status),
                // Not yet: the ones sent before it are unlikely to be either.
                None => break,
            }
        }
        if found.len() == sent.len() {
            return Ok(sent.iter().map(|s| found[&s.request_id]).collect());
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {} requests delivered after 900 s",
                found.len(),
                sent.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Temporal's cost of the requests in `sample`: executions (the request's workflow and any
/// children, whose ids start with its own), history events and billable actions, averaged.
pub(super) async fn cost(client: &Client, sample: &[RequestId]) -> anyhow::Result<Cost> {
    let mut total = Cost::default();
    for id in sample {
        let query = format!("WorkflowId STARTS_WITH '{id}'");
        // Visibility lags the histories a little: list until two reads agree.
        let mut ids: Vec<String> = Vec::new();
        for _ in 0..20 {
            let mut stream = client.list_workflows(query.clone(), WorkflowListOptions::default());
            let mut now = Vec::new();
            while let Some(execution) = stream.next().await {
                now.push(execution?.id().to_owned());
            }
            now.sort();
            if !now.is_empty() && now == ids {
                break;
            }
            ids = now;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for workflow_id in &ids {
            let events = client
                .get_workflow_handle::<UntypedWorkflow>(workflow_id.clone())
                .fetch_history(WorkflowFetchHistoryOptions::default())
                .into_events()
                .await?;
            total.executions += 1.0;
            total.events += events.len() as f64;
            total.actions += fanout_tests::history::billable_actions(&events) as f64;
        }
    }
    let n = sample.len().max(1) as f64;
    Ok(Cost {
        executions: total.executions / n,
        events: total.events / n,
        actions: total.actions / n,
    })
}

/// Every tenth request of the first hundred.
pub(super) fn sample(sent: &[Sent]) -> Vec<RequestId> {
    sent.iter()
        .take(100)
        .step_by(10)
        .map(|s| s.request_id.clone())
        .collect()
}
