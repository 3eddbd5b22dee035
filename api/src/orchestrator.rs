//! The API's view of Temporal: start a request's workflow, signal it, and read whether it runs.
//!
//! Handlers depend on the [`Orchestrator`] trait, so they are tested with `oneshot` against an
//! in-memory double; [`TemporalOrchestrator`] is the real one. It addresses workflows through
//! the contracts in `fanout_contracts`, never through the workflow crate.

use std::str::FromStr;

use async_trait::async_trait;
use fanout_contracts::{
    DigestInput, DigestWorkflow, NotificationInput, NotificationWorkflow, PauseSignal, RateLimit,
    RedriveInput, RedriveWorkflow, Reschedule, RescheduleUpdate, ResumeSignal, SetRateSignal,
    SetTemplateQuotaSignal, TemplateQuota,
};
use fanout_domain::config::TemporalConfig;
use fanout_domain::receipt::RequestState;
use fanout_domain::{RequestId, TemplateId, TenantId};
use futures::StreamExt;
use temporalio_client::errors::{
    WorkflowInteractionError, WorkflowStartError, WorkflowUpdateError,
};
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, Url, WorkflowCancelOptions,
    WorkflowDescribeOptions, WorkflowExecuteUpdateOptions, WorkflowExecutionStatus,
    WorkflowIdReusePolicy, WorkflowListOptions, WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_common::search_attributes::SearchAttributes;
use temporalio_common::{HasWorkflowDefinition, Priority};

use crate::scheduling::TaskPriority;

/// Whether a start created a new workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// A new workflow now runs the request.
    Started,
    /// A workflow with this request id exists already: the trigger is a duplicate.
    Duplicate,
}

/// Whether a request's workflow runs, as Temporal sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Running.
    Running,
    /// Closed in this state.
    Closed(RequestState),
    /// Temporal does not know it (never started, or past retention).
    Unknown,
}

/// An operator control sent to a running request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop starting pages and hold in-flight deliveries.
    Pause,
    /// Undo a pause.
    Resume,
    /// Cap (or, with `None`, uncap) deliveries per second.
    SetRate(Option<u32>),
}

/// Temporal could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// The request's workflow is not running (it finished, or never started).
    #[error("the request is not running")]
    NotRunning,
    /// Temporal could not be reached or answered with an error.
    #[error("temporal: {0}")]
    Unavailable(String),
}

/// Starts and inspects request workflows.
#[async_trait]
pub trait Orchestrator: Send + Sync + 'static {
    /// Starts the workflow for a request at `priority`; a second start of the same request is
    /// a duplicate.
    async fn start(
        &self,
        input: NotificationInput,
        priority: TaskPriority,
    ) -> Result<StartOutcome, OrchestratorError>;
    /// Whether Temporal answers (for `/readyz`): it describes a workflow that never exists.
    async fn ping(&self) -> Result<(), OrchestratorError> {
        let probe = RequestId::parse("ntf-readyz-probe").expect("a valid request id");
        self.run_state(&probe).await.map(|_| ())
    }
    /// Reads whether the request's workflow still runs, from its description: no query, so
    /// no workflow task and no worker is involved (status counts come from the store).
    async fn run_state(&self, request_id: &RequestId) -> Result<RunState, OrchestratorError>;
    /// Signals a running request.
    async fn control(
        &self,
        request_id: &RequestId,
        control: Control,
    ) -> Result<(), OrchestratorError>;
    /// Requests cancellation of a running request.
    async fn cancel(&self, request_id: &RequestId) -> Result<(), OrchestratorError>;
    /// Moves a scheduled request's start (the workflow's `reschedule` update, which it refuses
    /// once the request has started: [`OrchestratorError::NotRunning`]).
    async fn reschedule(
        &self,
        request_id: &RequestId,
        run_at_ms: fanout_domain::UnixMillis,
    ) -> Result<(), OrchestratorError>;
    /// Starts a re-drive of a finished request's dead letters at `priority`.
    async fn start_redrive(
        &self,
        input: RedriveInput,
        priority: TaskPriority,
    ) -> Result<StartOutcome, OrchestratorError>;
    /// Starts a digest's workflow (workflow id = digest id) unless it runs already: every
    /// trigger folded into the digest asks, so a start lost after the digest was opened is
    /// made good by the next trigger.
    async fn start_digest(
        &self,
        input: DigestInput,
        priority: TaskPriority,
    ) -> Result<StartOutcome, OrchestratorError>;
    /// Lists the tenant's running requests of a template, as Temporal's visibility sees them
    /// (see [`running_requests_query`]).
    async fn running_requests(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
    ) -> Result<Vec<RequestId>, OrchestratorError>;
    /// Signals every running request of the tenant's template with the template's new quota;
    /// returns how many were signalled.
    async fn signal_template_quota(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        quota: TemplateQuota,
    ) -> Result<u32, OrchestratorError>;
}

/// The visibility query that finds a tenant's running requests of a template. Tenant and
/// template ids cannot contain quotes, so they are safe to embed.
pub fn running_requests_query(tenant_id: &TenantId, template_id: &TemplateId) -> String {
    format!(
        "WorkflowType = '{}' AND {} = '{tenant_id}' AND {} = '{template_id}' \
         AND ExecutionStatus = 'Running'",
        fanout_contracts::NOTIFICATION_WORKFLOW,
        fanout_contracts::SA_TENANT_ID.name(),
        fanout_contracts::SA_TEMPLATE_ID.name(),
    )
}

fn interaction_error(e: WorkflowInteractionError) -> OrchestratorError {
    match e {
        WorkflowInteractionError::NotFound(_) => OrchestratorError::NotRunning,
        // Signalling or cancelling a closed workflow fails with "workflow execution already
        // completed": the request is simply not running any more.
        other if other.to_string().contains("already completed") => OrchestratorError::NotRunning,
        other => OrchestratorError::Unavailable(other.to_string()),
    }
}

/// The Temporal-backed orchestrator.
pub struct TemporalOrchestrator {
    client: Client,
    task_queue: String,
}

impl TemporalOrchestrator {
    /// Connects to the Temporal frontend.
    pub async fn connect(config: &TemporalConfig) -> anyhow::Result<Self> {
        let url = Url::from_str(&config.address).map_err(|e| {
            anyhow::anyhow!("temporal.address '{}' is not a URL: {e}", config.address)
        })?;
        let options = ConnectionOptions::new(url)
            .identity(format!("fanout-api@{}", std::process::id()))
            .build();
        let connection = Connection::connect(options).await?;
        let client = Client::new(
            connection,
            // With traces on, each start carries the caller's trace in its `_tracer-data` header.
            ClientOptions::new(config.namespace.clone())
                .plugins(fanout_telemetry::traces::temporal_plugins())
                .build(),
        )?;
        Ok(Self {
            client,
            task_queue: config.task_queue.clone(),
        })
    }

    /// Starts `workflow` as `workflow_id` on Fanout's queue. A second start with the same id is
    /// refused by Temporal and answered as a duplicate: that is what turns a repeated trigger
    /// (the id is derived from the tenant and dedupe key) into the same request instead of a
    /// second delivery.
    async fn start_once<W>(
        &self,
        workflow: W,
        input: W::Input,
        workflow_id: String,
        search_attributes: SearchAttributes,
        priority: TaskPriority,
    ) -> Result<StartOutcome, OrchestratorError>
    where
        W: HasWorkflowDefinition,
        W::Input: Send,
    {
        let options = WorkflowStartOptions::new(self.task_queue.clone(), workflow_id)
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .search_attributes(search_attributes)
            .priority(temporal_priority(priority))
            .build();
        match self.client.start_workflow(workflow, input, options).await {
            Ok(_) => Ok(StartOutcome::Started),
            Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(StartOutcome::Duplicate),
            Err(e) => Err(OrchestratorError::Unavailable(e.to_string())),
        }
    }
}

/// The SDK's form of a start's priority.
fn temporal_priority(priority: TaskPriority) -> Priority {
    Priority::builder()
        .maybe_priority_key(priority.priority_key)
        .maybe_fairness_key(priority.fairness_key.map(|t| t.as_str().to_owned()))
        .maybe_fairness_weight(priority.fairness_weight)
        .build()
}

fn closed_state(status: WorkflowExecutionStatus) -> Option<RequestState> {
    match status {
        WorkflowExecutionStatus::Completed => Some(RequestState::Completed),
        WorkflowExecutionStatus::Canceled => Some(RequestState::Cancelled),
        WorkflowExecutionStatus::Failed
        | WorkflowExecutionStatus::Terminated
        | WorkflowExecutionStatus::TimedOut => Some(RequestState::Failed),
        _ => None,
    }
}

#[async_trait]
impl Orchestrator for TemporalOrchestrator {
    async fn start(
        &self,
        input: NotificationInput,
        priority: TaskPriority,
    ) -> Result<StartOutcome, OrchestratorError> {
        let workflow_id = input.request_id.workflow_id().to_owned();
        let search_attributes = SearchAttributes::new([
            fanout_contracts::SA_TENANT_ID.value_set(input.tenant_id.to_string()),
            fanout_contracts::SA_TEMPLATE_ID.value_set(input.template_id.to_string()),
            fanout_contracts::SA_REQUEST_ID.value_set(input.request_id.to_string()),
            fanout_contracts::SA_PROGRESS_PERCENT.value_set(0),
        ]);
        self.start_once(
            NotificationWorkflow,
            input,
            workflow_id,
            search_attributes,
            priority,
        )
        .await
    }

    async fn start_redrive(
        &self,
        input: RedriveInput,
        priority: TaskPriority,
    ) -> Result<StartOutcome, OrchestratorError> {
        let request = &input.request;
        let search_attributes = SearchAttributes::new([
            fanout_contracts::SA_TENANT_ID.value_set(request.tenant_id.to_string()),
            fanout_contracts::SA_TEMPLATE_ID.value_set(request.template_id.to_string()),
            fanout_contracts::SA_REQUEST_ID.value_set(request.request_id.to_string()),
        ]);
        let workflow_id = input.redrive_id.clone();
        self.start_once(
            RedriveWorkflow,
            input,
            workflow_id,
            search_attributes,
            priority,
        )
        .await
    }

    async fn start_digest(
        &self,
        input: DigestInput,
        priority: TaskPriority,
    ) -> Result<StartOutcome, OrchestratorError> {
        let search_attributes = SearchAttributes::new([
            fanout_contracts::SA_TENANT_ID.value_set(input.tenant_id.to_string()),
            fanout_contracts::SA_TEMPLATE_ID.value_set(input.template_id.to_string()),
        ]);
        let workflow_id = input.digest_id.workflow_id().to_owned();
        self.start_once(
            DigestWorkflow,
            input,
            workflow_id,
            search_attributes,
            priority,
        )
        .await
    }

    async fn run_state(&self, request_id: &RequestId) -> Result<RunState, OrchestratorError> {
        let handle = self
            .client
            .get_workflow_handle::<NotificationWorkflow>(request_id.workflow_id());
        let description = match handle.describe(WorkflowDescribeOptions::default()).await {
            Ok(d) => d,
            Err(WorkflowInteractionError::NotFound(_)) => return Ok(RunState::Unknown),
            Err(e) => return Err(OrchestratorError::Unavailable(e.to_string())),
        };
        Ok(match closed_state(description.status()) {
            Some(state) => RunState::Closed(state),
            None => RunState::Running,
        })
    }

    async fn control(
        &self,
        request_id: &RequestId,
        control: Control,
    ) -> Result<(), OrchestratorError> {
        let handle = self
            .client
            .get_workflow_handle::<NotificationWorkflow>(request_id.workflow_id());
        let options = WorkflowSignalOptions::default();
        let sent = match control {
            Control::Pause => handle.signal(PauseSignal, (), options).await,
            Control::Resume => handle.signal(ResumeSignal, (), options).await,
            Control::SetRate(per_second) => {
                handle
                    .signal(SetRateSignal, RateLimit { per_second }, options)
                    .await
            }
        };
        sent.map_err(interaction_error)
    }

    async fn running_requests(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
    ) -> Result<Vec<RequestId>, OrchestratorError> {
        let query = running_requests_query(tenant_id, template_id);
        let mut listed = self
            .client
            .list_workflows(query, WorkflowListOptions::default());
        let mut found = Vec::new();
        while let Some(execution) = listed.next().await {
            let execution = execution.map_err(|e| OrchestratorError::Unavailable(e.to_string()))?;
            // The workflow id is the request id; anything else was not started by the API.
            match RequestId::parse(execution.id()) {
                Ok(id) if !found.contains(&id) => found.push(id),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(workflow_id = execution.id(), error = %e, "skipping a workflow that is not a request");
                }
            }
        }
        Ok(found)
    }

    async fn reschedule(
        &self,
        request_id: &RequestId,
        run_at_ms: fanout_domain::UnixMillis,
    ) -> Result<(), OrchestratorError> {
        let handle = self
            .client
            .get_workflow_handle::<NotificationWorkflow>(request_id.workflow_id());
        handle
            .execute_update(
                RescheduleUpdate,
                Reschedule { run_at_ms },
                WorkflowExecuteUpdateOptions::default(),
            )
            .await
            .map(|_| ())
            .map_err(|e| match e {
                // The validator's refusal: the request no longer waits for its time.
                WorkflowUpdateError::Failed(_) | WorkflowUpdateError::NotFound(_) => {
                    OrchestratorError::NotRunning
                }
                other if other.to_string().contains("already completed") => {
                    OrchestratorError::NotRunning
                }
                other => OrchestratorError::Unavailable(other.to_string()),
            })
    }

    async fn cancel(&self, request_id: &RequestId) -> Result<(), OrchestratorError> {
        let handle = self
            .client
            .get_workflow_handle::<NotificationWorkflow>(request_id.workflow_id());
        let options = WorkflowCancelOptions::builder()
            .reason("cancelled through the fanout api".to_owned())
            .build();
        handle.cancel(options).await.map_err(interaction_error)
    }

    async fn signal_template_quota(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        quota: TemplateQuota,
    ) -> Result<u32, OrchestratorError> {
        let mut signalled = 0;
        for request_id in self.running_requests(tenant_id, template_id).await? {
            let handle = self
                .client
                .get_workflow_handle::<NotificationWorkflow>(request_id.workflow_id());
            match handle
                .signal(
                    SetTemplateQuotaSignal,
                    quota,
                    WorkflowSignalOptions::default(),
                )
                .await
                .map_err(interaction_error)
            {
                Ok(()) => signalled += 1,
                // It finished between the listing and the signal: nothing to slow down.
                Err(OrchestratorError::NotRunning) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(signalled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_priority_reaches_the_sdk_field_by_field() {
        let full = temporal_priority(TaskPriority {
            priority_key: Some(1),
            fairness_key: Some(TenantId::parse("acme").unwrap()),
            fairness_weight: Some(2.5),
        });
        assert_eq!(
            (full.priority_key, full.fairness_key, full.fairness_weight),
            (Some(1), Some("acme".to_owned()), Some(2.5))
        );
        // Nothing set leaves every field to the server's default.
        assert_eq!(
            temporal_priority(TaskPriority::default()),
            Priority::default()
        );
    }

    #[test]
    fn the_running_requests_query_filters_on_the_search_attributes() {
        let query = running_requests_query(
            &TenantId::parse("acme").unwrap(),
            &TemplateId::parse("welcome").unwrap(),
        );
        assert_eq!(
            query,
            "WorkflowType = 'NotificationWorkflow' AND TenantId = 'acme' \
             AND TemplateId = 'welcome' AND ExecutionStatus = 'Running'"
        );
    }
}
