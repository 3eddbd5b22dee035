//! `NotificationWorkflow`: one durable workflow per notification request.
//!
//! It resolves the audience in a child workflow (which returns page counts, never user ids),
//! then runs one `FanoutPageWorkflow` child per page in a sliding window of [`WINDOW`] pages.
//! After [`PAGES_PER_RUN`] pages it drains its window and continues as new, carrying the
//! counts, so no history in the tree grows past a few thousand events whatever the audience.
//!
//! A request whose recipients' quiet hours apply (`quiet_hours` in the input) leaves the
//! deliveries its pages deferred as `deferred` receipts; once every page has run, it moves
//! those recipients to release pages grouped by bucket (`plan_deferred`) and releases each
//! group on one timer, as a local-time request does ([`release::release_deferred`]).
//!
//! A request to a small explicit audience (the API records [`DeliveryPath::Direct`] in the
//! input) skips the tree and runs [`crate::direct`] instead: the same state, signals and
//! query, in one execution.
//!
//! Signals `pause`, `resume` and `set_rate` change its [`RequestControls`]; it writes them
//! through to the store (activity `apply_controls`), where delivery activities read them before
//! each send, so they take effect on in-flight pages within a fraction of a second. Signal
//! `set_template_quota` (sent by the API to every running request of a template) is written
//! through the same way (activity `apply_template_quota`). Cancellation
//! (API, Temporal UI or CLI) cancels the children, whose activities stop sending, and the final
//! activity records every instance not yet delivered as cancelled.

use fanout_contracts::{
    AudienceSnapshot, Carry, DeliveryActivities, FanoutPageInput, FanoutPageWorkflow,
    FinalizeInput, NotificationInput, NotificationOutcome, PageOutcome, RateLimit, ReleaseGroup,
    RequestControls, Reschedule, ResolveAudienceInput, ResolveAudienceWorkflow, TemplateQuota,
};
use fanout_domain::UnixMillis;
use fanout_domain::receipt::{DeliveryStatus, Progress, RequestState};
use fanout_domain::request::DeliveryPath;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::{join_all, select};
use temporalio_sdk::{
    ChildWorkflowExecutionError, ChildWorkflowStartError, ContinueAsNewOptions,
    SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult, WorkflowTermination,
};

use crate::controls::{Applied, Via, write_cancel_through};
use crate::options;
use crate::release;
use crate::schedule::{self, Wait};
use crate::window::InFlight;

/// Pages delivered concurrently.
pub const WINDOW: usize = 8;
/// Pages started by one run before it continues as new.
pub const PAGES_PER_RUN: u32 = 200;

/// The workflow's state: what the `progress` query returns and what signals change.
#[workflow]
#[derive(Default)]
pub struct NotificationWorkflow {
    progress: Progress,
    controls: RequestControls,
    /// Bumped by every signal that changes `controls`, so the main loop notices.
    controls_version: u64,
    /// The latest template quota signalled, and a counter bumped by each such signal.
    template_quota: Option<u32>,
    quota_version: u64,
    /// The time the latest `reschedule` set, over the input's.
    rescheduled_to: Option<UnixMillis>,
    /// Bumped by every `reschedule`, so the wait notices.
    schedule_version: u64,
    /// Set once the request stopped waiting for its time: `reschedule` is refused from then on.
    released: bool,
}

/// Why resolution did not produce a snapshot.
pub(crate) enum Stop {
    Cancelled,
    Failed(WorkflowTermination),
}

/// How the fan-out loop ended.
pub(crate) enum Ending {
    Done { failed_pages: u32 },
    Cancelled,
    ContinueAsNew(Carry),
}

#[workflow_methods]
impl NotificationWorkflow {
    /// Runs a notification request to completion (or to its next run).
    #[run(name = fanout_contracts::NOTIFICATION_WORKFLOW)]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: NotificationInput,
    ) -> WorkflowResult<NotificationOutcome> {
        if input.carry.is_none() {
            if let Wait::Cancelled = schedule::wait(ctx, &input).await? {
                return finish(ctx, &input, RequestState::Cancelled, None).await;
            }
        } else {
            ctx.state_mut(|s| s.release());
        }
        if input.path == DeliveryPath::Direct && input.carry.is_none() {
            return crate::direct::run(ctx, &input).await;
        }
        let swept = input.carry.as_ref().is_some_and(|c| c.swept);
        let (snapshot, groups, next_page, runs) = match input.carry.clone() {
            Some(carry) => {
                ctx.state_mut(|s| {
                    s.progress = carry.progress;
                    s.controls = carry.controls;
                    // Write the carried controls through again on the first iteration.
                    s.controls_version = 1;
                });
                (
                    carry.snapshot,
                    carry.groups,
                    carry.next_page,
                    carry.runs + 1,
                )
            }
            None => match resolve_and_plan(ctx, &input).await {
                Ok((snapshot, groups)) => (snapshot, groups, 0, 1),
                Err(Stop::Cancelled) => {
                    return finish(ctx, &input, RequestState::Cancelled, None).await;
                }
                Err(Stop::Failed(err)) => {
                    finish(
                        ctx,
                        &input,
                        RequestState::Failed,
                        Some(DeliveryStatus::Failed),
                    )
                    .await?;
                    return Err(err);
                }
            },
        };
        let mut run = Run::new(&input, snapshot, groups, runs);
        run.swept = swept;
        let ending = if run.groups.is_empty() {
            fan_out(ctx, &mut run, next_page, snapshot.pages).await?
        } else {
            release::fan_out_groups(ctx, &mut run, next_page).await?
        };
        let ending = match ending {
            Ending::Done { failed_pages } if input.quiet_hours && !swept => {
                release::release_deferred(ctx, &mut run, failed_pages).await?
            }
            other => other,
        };
        match ending {
            Ending::Done { failed_pages: 0 } => {
                finish(ctx, &input, RequestState::Completed, None).await
            }
            Ending::Done { .. } => {
                finish(
                    ctx,
                    &input,
                    RequestState::Completed,
                    Some(DeliveryStatus::Failed),
                )
                .await
            }
            Ending::Cancelled => finish(ctx, &input, RequestState::Cancelled, None).await,
            Ending::ContinueAsNew(carry) => {
                let next = NotificationInput {
                    carry: Some(carry),
                    ..input
                };
                let never = ctx.continue_as_new(next, ContinueAsNewOptions::default())?;
                match never {}
            }
        }
    }

    /// Returns the request's progress so far.
    #[query(name = "progress")]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> Progress {
        let mut progress = self.progress.clone();
        progress.paused = self.controls.paused;
        progress.rate_per_second = self.controls.rate_per_second;
        progress
    }

    /// Stops starting pages and holds in-flight deliveries.
    #[signal(name = "pause")]
    pub fn pause(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _input: ()) {
        self.set_controls(RequestControls {
            paused: true,
            ..self.controls
        });
    }

    /// Undoes `pause`.
    #[signal(name = "resume")]
    pub fn resume(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _input: ()) {
        self.set_controls(RequestControls {
            paused: false,
            ..self.controls
        });
    }

    /// Caps (or uncaps) the request's deliveries per second.
    #[signal(name = "set_rate")]
    pub fn set_rate(&mut self, _ctx: &mut SyncWorkflowContext<Self>, rate: RateLimit) {
        self.set_controls(RequestControls {
            rate_per_second: rate.per_second.filter(|r| *r > 0),
            ..self.controls
        });
    }

    /// Writes the template's new quota through to the store.
    #[signal(name = "set_template_quota")]
    pub fn set_template_quota(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        quota: TemplateQuota,
    ) {
        self.note_template_quota(quota);
    }

    /// Refuses to move a request that no longer waits for its time.
    #[update_validator(reschedule)]
    fn validate_reschedule(
        &self,
        _ctx: &WorkflowContextView,
        _to: &Reschedule,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.released {
            return Err(
                "the request has already started; only a scheduled request can be rescheduled"
                    .into(),
            );
        }
        Ok(())
    }

    /// Moves a scheduled request's start; a time already past starts it at once.
    #[update(name = "reschedule")]
    pub fn reschedule(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        to: Reschedule,
    ) -> Reschedule {
        self.rescheduled_to = Some(to.run_at_ms);
        self.schedule_version += 1;
        to
    }
}

impl NotificationWorkflow {
    /// Replaces the counts the `progress` query returns.
    pub(crate) fn set_progress(&mut self, progress: Progress) {
        self.progress = progress;
    }

    /// The controls as signalled, and how many times they changed.
    pub(crate) fn controls(&self) -> (RequestControls, u64) {
        (self.controls, self.controls_version)
    }

    /// The template quota as signalled, and how many times it changed.
    pub(crate) fn template_quota(&self) -> (Option<u32>, u64) {
        (self.template_quota, self.quota_version)
    }

    /// Records the snapshot's page count after a release plan added or renumbered pages.
    pub(crate) fn set_pages_total(&mut self, pages: u32) {
        self.progress.pages_total = pages;
    }

    /// Records a template quota change for the main loop to write through.
    fn note_template_quota(&mut self, quota: TemplateQuota) {
        self.template_quota = quota.per_second.filter(|r| *r > 0);
        self.quota_version += 1;
    }

    /// When the request runs: the latest `reschedule`, else its input's time.
    pub(crate) fn run_at(&self, input: &NotificationInput) -> Option<UnixMillis> {
        self.rescheduled_to.or(input.run_at_ms)
    }

    /// How many times the request was rescheduled.
    pub(crate) fn schedule_version(&self) -> u64 {
        self.schedule_version
    }

    /// Marks the request as no longer waiting for its time.
    pub(crate) fn release(&mut self) {
        self.released = true;
    }

    fn set_controls(&mut self, controls: RequestControls) {
        if controls != self.controls {
            self.controls = controls;
            self.controls_version += 1;
        }
    }
}

/// Resolves the audience in a child workflow and initialises the counts from its size.
async fn resolve(
    ctx: &mut WorkflowContext<NotificationWorkflow>,
    input: &NotificationInput,
) -> Result<AudienceSnapshot, Stop> {
    let started = ctx
        .start_child_workflow(
            ResolveAudienceWorkflow,
            ResolveAudienceInput {
                request_id: input.request_id.clone(),
                tenant_id: input.tenant_id.clone(),
                recipients: input.recipients.clone(),
                resume: None,
                actor_id: input.actor_id.clone(),
            },
            options::child(format!("{}/resolve", input.request_id)),
        )
        .await
        .map_err(|e| match e {
            ChildWorkflowStartError::Cancelled(_) => Stop::Cancelled,
            other => Stop::Failed(other.into()),
        })?;
    let snapshot = started.result().await.map_err(|e| {
        if e.as_cancelled().is_some() {
            Stop::Cancelled
        } else {
            Stop::Failed(e.into())
        }
    })?;
    let progress = Progress::for_snapshot(
        snapshot.recipients,
        snapshot.excluded,
        snapshot.pages,
        &input.channels,
    );
    ctx.state_mut(|s| s.progress = progress);
    Ok(snapshot)
}

/// Resolves the audience and, for a local-time request, regroups it by release instant.
async fn resolve_and_plan(
    ctx: &mut WorkflowContext<NotificationWorkflow>,
    input: &NotificationInput,
) -> Result<(AudienceSnapshot, Vec<ReleaseGroup>), Stop> {
    let snapshot = resolve(ctx, input).await?;
    match input.local_time {
        Some(local_time) => release::plan_local_time(ctx, input, local_time, snapshot).await,
        None => Ok((snapshot, Vec::new())),
    }
}

/// What one run of the fan-out works through: the request, its snapshot and release groups,
/// and what this run has started so far.
pub(crate) struct Run<'a> {
    pub(crate) input: &'a NotificationInput,
    pub(crate) snapshot: AudienceSnapshot,
    pub(crate) groups: Vec<ReleaseGroup>,
    runs: u32,
    started: u32,
    /// Whether `groups` are the quiet-hours releases (see [`release::release_deferred`]).
    pub(crate) swept: bool,
    /// For the pages of a quiet-hours release group: the group's instant.
    pub(crate) release_through: Option<UnixMillis>,
}

impl<'a> Run<'a> {
    fn new(
        input: &'a NotificationInput,
        snapshot: AudienceSnapshot,
        groups: Vec<ReleaseGroup>,
        runs: u32,
    ) -> Self {
        Self {
            input,
            snapshot,
            groups,
            runs,
            started: 0,
            swept: false,
            release_through: None,
        }
    }
}

/// Delivers pages `next_page..end` in a sliding window until done, cancelled, or this run's
/// share is used up.
pub(crate) async fn fan_out(
    ctx: &mut WorkflowContext<NotificationWorkflow>,
    run: &mut Run<'_>,
    mut next_page: u32,
    end: u32,
) -> Result<Ending, WorkflowTermination> {
    let input = run.input;
    let mut inflight = InFlight::new();
    let mut failed_pages = 0u32;
    let mut applied = Applied::default();
    let mut reported_percent = ctx.state(|s| s.progress.percent());
    loop {
        applied.write_through(ctx, input, Via::Activity).await?;
        let controls = ctx.state(|s| s.controls);

        if !controls.paused {
            let mut pages = Vec::new();
            while inflight.len() + pages.len() < WINDOW
                && next_page < end
                && run.started < PAGES_PER_RUN
            {
                pages.push(next_page);
                next_page += 1;
                run.started += 1;
            }
            let starts = pages.iter().map(|page| {
                ctx.start_child_workflow(
                    FanoutPageWorkflow,
                    page_input(input, *page, run.release_through),
                    options::child(format!("{}/page-{page}", input.request_id)),
                )
            });
            for (page, started) in pages.iter().zip(join_all(starts).await) {
                match started {
                    Ok(child) => inflight.push(*page, child.result()),
                    Err(_) => failed_pages += 1,
                }
            }
        }

        if inflight.is_empty() {
            if next_page >= end {
                return Ok(Ending::Done { failed_pages });
            }
            if run.started >= PAGES_PER_RUN {
                let (progress, controls) = ctx.state(|s| (s.progress.clone(), s.controls));
                return Ok(Ending::ContinueAsNew(Carry {
                    snapshot: run.snapshot,
                    next_page,
                    progress,
                    controls,
                    runs: run.runs,
                    groups: run.groups.clone(),
                    swept: run.swept,
                }));
            }
        }

        select! {
            _ = ctx.cancelled() => {
                // Stop every send at once (deliveries read the store before each one), then
                // wait for the children, which inherit the cancellation, to wind down.
                write_cancel_through(ctx, input).await?;
                while !inflight.is_empty() {
                    let (page, outcome) = inflight.first_ready().await;
                    absorb(ctx, page, outcome);
                }
                return Ok(Ending::Cancelled);
            }
            (page, outcome) = inflight.first_ready() => {
                if !absorb(ctx, page, outcome) {
                    failed_pages += 1;
                }
            }
            _ = ctx.wait_condition(|s| applied.is_stale(s)) => {}
        }

        let percent = ctx.state(|s| s.progress.percent());
        if percent != reported_percent {
            ctx.upsert_search_attributes(
                [fanout_contracts::SA_PROGRESS_PERCENT.value_set(percent)],
            );
            reported_percent = percent;
        }
    }
}

fn page_input(
    input: &NotificationInput,
    page: u32,
    release_through_ms: Option<UnixMillis>,
) -> FanoutPageInput {
    FanoutPageInput {
        request_id: input.request_id.clone(),
        tenant_id: input.tenant_id.clone(),
        template_id: input.template_id.clone(),
        channels: input.channels.clone(),
        page,
        data: input.data.clone(),
        priority: input.priority,
        ttl_seconds: input.ttl_seconds,
        quiet_hours: input.quiet_hours,
        release_through_ms,
    }
}

/// Adds a finished page's counts; returns false if the page failed (its instances are settled
/// at the end).
fn absorb(
    ctx: &mut WorkflowContext<NotificationWorkflow>,
    _page: u32,
    outcome: Result<PageOutcome, ChildWorkflowExecutionError>,
) -> bool {
    let Ok(outcome) = outcome else {
        return false;
    };
    ctx.state_mut(|s| {
        for report in &outcome.reports {
            s.progress
                .channels
                .entry(report.channel)
                .or_default()
                .absorb(report.delivered, report.failed, report.suppressed, 0);
        }
        s.progress.pages_done += 1;
    });
    true
}

/// Writes the outcome to the store (settling unfinished instances when asked) and ends the
/// workflow accordingly.
pub(crate) async fn finish(
    ctx: &mut WorkflowContext<NotificationWorkflow>,
    input: &NotificationInput,
    state: RequestState,
    settle_as: Option<DeliveryStatus>,
) -> WorkflowResult<NotificationOutcome> {
    if state == RequestState::Cancelled {
        write_cancel_through(ctx, input).await?;
    }
    let settle_as = match state {
        RequestState::Cancelled => Some(DeliveryStatus::Cancelled),
        _ => settle_as,
    };
    let progress = ctx.state(|s| s.progress.clone());
    let progress = ctx
        .execute_activity(
            DeliveryActivities::finalize_request,
            FinalizeInput {
                request_id: input.request_id.clone(),
                state,
                progress,
                tenant_id: Some(input.tenant_id.clone()),
                channels: input.channels.clone(),
                settle_as,
                recount: false,
            },
            options::detached_store_activity(),
        )
        .await?;
    ctx.state_mut(|s| s.progress = progress.clone());
    // The tree reports progress to the Temporal UI as it goes; the direct path's requests are
    // over in a moment and leave the attribute as the start set it.
    if input.path == DeliveryPath::Tree {
        ctx.upsert_search_attributes([fanout_contracts::SA_PROGRESS_PERCENT.value_set(100)]);
    }
    match state {
        RequestState::Cancelled => Err(WorkflowTermination::cancelled()),
        _ => Ok(NotificationOutcome { state, progress }),
    }
}
