//! Replays the committed histories under `histories/` against the current workflow code, without
//! a server. A failure means a change is not replay-safe: running workflows would break on
//! deploy. Re-record with `make record-histories` only for an intended, patched change.

use std::path::PathBuf;
use std::time::Duration;

use fanout_contracts::{DeliveryActivities, FinalizeInput, NotificationInput};
use fanout_domain::receipt::{Progress, RequestState};
use fanout_workflows::{
    DigestWorkflow, FanoutPageWorkflow, NotificationWorkflow, RedriveWorkflow,
    ResolveAudienceWorkflow,
};
use temporalio_client::WorkflowHistory;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

fn histories() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("histories");
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("workflows/histories exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read(&p).expect("readable history"),
            )
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn committed_histories_replay_against_current_code() -> anyhow::Result<()> {
    let histories = histories();
    assert!(
        !histories.is_empty(),
        "no histories committed under workflows/histories"
    );
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new()
            .register_workflow::<NotificationWorkflow>()?
            .register_workflow::<ResolveAudienceWorkflow>()?
            .register_workflow::<FanoutPageWorkflow>()?
            .register_workflow::<RedriveWorkflow>()?
            .register_workflow::<DigestWorkflow>()?
            .build(),
    )?;
    let names: Vec<&str> = histories.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "notification_completed",
        "resolve_audience",
        "fanout_page",
        "fanout_page_retry_rounds",
        "redrive",
        // The direct path: first-time success, a retry round after a backoff timer, a paused
        // request handed from the local run to a normal activity, a cancel while held.
        "direct_completed",
        "direct_retried",
        "direct_paused_handoff",
        "direct_cancelled",
        // Scheduled sends: a direct request after its timer, one moved by a reschedule, one
        // cancelled while it waits, a tree that waits before resolving.
        "scheduled_direct",
        "scheduled_rescheduled",
        "scheduled_cancelled",
        "scheduled_tree",
        // Local time: resolution, the plan, a group released at once and one after its timer.
        "local_time",
        // Recorded before delivery rounds existed: still replays, so requests running across
        // that upgrade finish.
        "pre_rounds_fanout_page",
        // A digest: its timer, the close and its request as a child; and that request, whose
        // audience is the digest's.
        "digest",
        "digest_request_notification",
    ] {
        assert!(
            names.iter().any(|n| n.contains(expected)),
            "no committed history for {expected}: {names:?}"
        );
    }
    for (name, bytes) in histories {
        let history = WorkflowHistory::from_json(&bytes)?;
        replayer
            .replay_workflow(history)
            .await
            .map_err(|e| anyhow::anyhow!("{name} no longer replays: {e}"))?;
    }
    Ok(())
}

/// A variant of the workflow, registered under the same type name, that skips resolution and
/// goes straight to finalising: the kind of edit that breaks running workflows.
#[workflow]
#[derive(Default)]
struct ReorderedNotificationWorkflow;

#[workflow_methods]
impl ReorderedNotificationWorkflow {
    #[run(name = "NotificationWorkflow")]
    async fn run(ctx: &mut WorkflowContext<Self>, input: NotificationInput) -> WorkflowResult<()> {
        ctx.execute_activity(
            DeliveryActivities::finalize_request,
            FinalizeInput {
                request_id: input.request_id,
                state: RequestState::Completed,
                progress: Progress::default(),
                tenant_id: None,
                channels: Vec::new(),
                settle_as: None,
                recount: false,
            },
            ActivityOptions::with_start_to_close_timeout(Duration::from_secs(10)).build(),
        )
        .await?;
        Ok(())
    }
}

#[tokio::test]
async fn replay_catches_a_nondeterministic_change() -> anyhow::Result<()> {
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new()
            .register_workflow::<ReorderedNotificationWorkflow>()?
            .build(),
    )?;
    for (name, bytes) in histories()
        .into_iter()
        .filter(|(name, _)| name.contains("notification"))
    {
        let result = replayer
            .replay_workflow(WorkflowHistory::from_json(&bytes)?)
            .await;
        let err = result
            .err()
            .unwrap_or_else(|| panic!("{name} replayed against a reordered workflow"));
        let message = err.to_string().to_lowercase();
        assert!(
            message.contains("nondetermin"),
            "{name}: unexpected replay error: {err}"
        );
    }
    Ok(())
}
