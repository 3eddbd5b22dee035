//! Fanout's side effects, run by the worker as Temporal activities.
//!
//! The contracts (names, inputs, outputs) live in `fanout_contracts`; this crate
//! implements them. One module per concern:
//! - [`audience`]: resolving a recipients query into the paged snapshot,
//! - [`email`]: the SMTP channel, [`in_app`]: the inbox channel, [`push`]: the push channel
//!   over [`apns`] (Apple) and [`fcm`] (Firebase), [`outcome`]: how every provider call is
//!   classified,
//! - [`templates`]: compiled template versions, cached per worker,
//! - [`delivery`]: one page over one channel, resumable and classified into receipts,
//! - [`direct`]: the direct path, a small audience resolved, delivered and finalised in one
//!   call,
//! - [`control`]: pause, rate and cancellation as each send obeys them,
//! - [`limits`]: rate limits shared by every worker (global, provider, tenant, template) with
//!   provider feedback, and [`breaker`]: a circuit breaker per provider,
//! - [`finalize`]: settling, recounting and recording a request's outcome,
//! - [`release`]: regrouping a local-time request's snapshot by release instant,
//! - [`digest`]: closing a digest into its request, and each recipient's items.
//!
//! Activities decide what is retryable: permanent provider rejections become failed receipts
//! (and dead letters); transient ones leave the receipt pending and are reported to the page
//! workflow, which retries them in a later delivery round; a retry skips every instance that
//! already reached a final status. Infrastructure failures (the store) fail the activity and
//! Temporal retries it.

pub mod apns;
pub mod audience;
pub mod breaker;
pub mod control;
pub mod credentials;
pub mod delivery;
pub mod digest;
pub mod direct;
pub mod email;
pub mod fcm;
pub mod finalize;
pub mod in_app;
pub mod limits;
pub mod outcome;
pub mod push;
pub mod release;
#[cfg(test)]
mod sandbox;
pub mod templates;

use std::sync::Arc;

use fanout_contracts::{
    ApplyControlsInput, ApplyTemplateQuotaInput, BeginRedriveInput, CloseDigestInput, ClosedDigest,
    DeliverDirectInput, DeliverPageInput, DirectReport, FinalizeInput, PageReport,
    PlanDeferredInput, PlanReleaseInput, RedrivePage, ReleaseInput, ReleasePlan, ResolveChunk,
    ResolveChunkInput,
};
use fanout_domain::receipt::Progress;
use fanout_store::Store;
use fanout_store::dead_letters::DeadLetterFilter;
use serde::{Deserialize, Serialize};
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::Instrument;

pub use email::{EmailSender, EmailSent, SmtpConfig, SmtpFailoverConfig, SmtpTlsMode};
pub use limits::LimitsConfig;
pub use outcome::SendOutcome;
pub use push::PushSenders;

/// How deliveries are batched and paced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryConfig {
    /// Recipients per audience page (one delivery activity per page and channel).
    pub page_size: u32,
    /// Concurrent provider calls within one page.
    pub concurrency: usize,
    /// Channels switched off for every tenant on this worker, comma-separated (`email,push`):
    /// their deliveries are held as if by a global kill switch.
    pub disabled_channels: String,
    /// Deliveries deferred by quiet hours are released on multiples of this many milliseconds
    /// (five minutes; tests use a second), so a request holds one timer per bucket.
    pub quiet_bucket_ms: u64,
    /// For tests only: divides each local-time release group's wait (from acceptance to its
    /// instant) by this factor, so a test can run a day of zones in seconds and count the
    /// whole history. 1, the default, is real time.
    pub local_time_speedup: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            page_size: 2_000,
            concurrency: 32,
            disabled_channels: String::new(),
            quiet_bucket_ms: fanout_domain::quiet::DEFAULT_BUCKET_MS,
            local_time_speedup: 1,
        }
    }
}

/// The activity implementations, with the handles they share.
pub struct FanoutActivities {
    store: Store,
    email: EmailSender,
    push: PushSenders,
    config: DeliveryConfig,
    limiters: control::RateLimiters,
    limits: limits::Limits,
    caps: delivery::CapCache,
}

impl FanoutActivities {
    /// Bundles the store, the email sender and the delivery settings.
    pub fn new(
        store: Store,
        email: EmailSender,
        push: PushSenders,
        config: DeliveryConfig,
    ) -> Self {
        Self {
            limits: limits::Limits::new(store.clone(), LimitsConfig::default()),
            store,
            email,
            push,
            config,
            limiters: control::RateLimiters::default(),
            caps: delivery::CapCache::default(),
        }
    }

    /// Delivers one page over one channel with the shared handles, starting no send after
    /// `deadline`.
    pub(crate) async fn deliver(
        &self,
        ctx: &ActivityContext,
        input: &DeliverPageInput,
        deadline: Option<std::time::Instant>,
    ) -> Result<PageReport, ActivityError> {
        // Every event of the delivery (and of the provider calls it makes) carries these. With
        // traces on it is a span of the request's trace, under the SDK's span of this activity
        // run, and the parent of each provider call's span.
        let span = tracing::info_span!(
            "delivery",
            otel.name = %format!("deliver {} page {}", input.channel, input.page),
            request_id = %input.request_id,
            tenant_id = %input.tenant_id,
            channel = %input.channel,
            page = input.page,
            round = input.round,
            trace_id = tracing::field::Empty,
        );
        fanout_telemetry::traces::record_trace_id(&span);
        delivery::deliver_page(
            &self.store,
            &self.email,
            &self.push,
            &self.limiters,
            &self.limits,
            &self.caps,
            &self.config,
            ctx,
            input,
            deadline,
        )
        .instrument(span)
        .await
    }

    /// Applies the worker's rate limits and circuit breakers (the defaults have no global or
    /// provider limit).
    pub fn with_limits(mut self, config: LimitsConfig) -> Self {
        self.limits = limits::Limits::new(self.store.clone(), config);
        self
    }
}

/// A failure that retrying cannot fix.
pub(crate) fn permanent(type_name: &str, message: String) -> ActivityError {
    ActivityError::application(
        ApplicationFailure::builder(message)
            .type_name(type_name.to_owned())
            .non_retryable(true)
            .build(),
    )
}

/// A failure worth retrying (the store or a provider was unavailable).
pub(crate) fn transient(message: String) -> ActivityError {
    ActivityError::application(ApplicationFailure::new(message))
}

/// Records progress (which is also how a cancellation reaches the activity); a failed
/// heartbeat is logged, not fatal.
pub(crate) async fn heartbeat(ctx: &ActivityContext, progress: impl Into<u64>) {
    if let Err(e) = ctx.record_heartbeat(progress.into()).await {
        tracing::warn!(error = %e, "heartbeat failed");
    }
}

/// The store being unavailable is transient: the activity is retried.
pub(crate) fn store_error(e: fanout_store::StoreError) -> ActivityError {
    transient(format!("store: {e}"))
}

#[activities]
impl FanoutActivities {
    /// Writes the next pages of the audience snapshot; see [`audience::resolve_chunk`].
    #[activity(definition = fanout_contracts::ResolveAudienceChunk)]
    pub async fn resolve_audience_chunk(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ResolveChunkInput,
    ) -> Result<ResolveChunk, ActivityError> {
        audience::resolve_chunk(&self.store, &ctx, &input, self.config.page_size).await
    }

    /// Delivers one page over one channel; see [`delivery::deliver_page`].
    #[activity(definition = fanout_contracts::DeliverPage)]
    pub async fn deliver_page(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: DeliverPageInput,
    ) -> Result<PageReport, ActivityError> {
        let report = self.deliver(&ctx, &input, None).await?;
        // What status counts as a finished page while the request runs (the workflow stops
        // this channel's rounds on the same test).
        if report.finishes_channel(input.final_round) {
            self.store
                .record_finished_page(&input.request_id, input.page, input.channel)
                .await
                .map_err(store_error)?;
        }
        Ok(report)
    }

    /// Resolves and delivers a small audience in one call; see [`direct::deliver_direct`].
    #[activity(definition = fanout_contracts::DeliverDirect)]
    pub async fn deliver_direct(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: DeliverDirectInput,
    ) -> Result<DirectReport, ActivityError> {
        direct::deliver_direct(&self, &ctx, &input).await
    }

    /// Takes dead letters off the list for a re-drive; see [`Store::begin_redrive`].
    #[activity(definition = fanout_contracts::BeginRedrive)]
    pub async fn begin_redrive(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: BeginRedriveInput,
    ) -> Result<Vec<RedrivePage>, ActivityError> {
        let filter = DeadLetterFilter {
            request_id: Some(input.request_id.clone()),
            channel: input.channel,
            instance_ids: input.instance_ids,
            include_redriven: false,
        };
        let redrive = self
            .store
            .begin_redrive(&input.tenant_id, &filter)
            .await
            .map_err(store_error)?;
        tracing::info!(
            request_id = %input.request_id,
            instances = redrive.instances,
            pages = redrive.pages.len(),
            "re-drive started"
        );
        Ok(redrive
            .pages
            .into_iter()
            .map(|(page, channels)| RedrivePage {
                page,
                channels: channels.into_iter().collect(),
            })
            .collect())
    }

    /// Records the request's outcome; see [`finalize::finalize`].
    #[activity(definition = fanout_contracts::FinalizeRequest)]
    pub async fn finalize_request(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: FinalizeInput,
    ) -> Result<Progress, ActivityError> {
        let progress = finalize::finalize(&self.store, &ctx, &input).await?;
        self.limiters.forget(&input.request_id);
        Ok(progress)
    }

    /// Writes the request's controls where deliveries read them.
    #[activity(definition = fanout_contracts::ApplyControls)]
    pub async fn apply_controls(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: ApplyControlsInput,
    ) -> Result<(), ActivityError> {
        self.store
            .set_controls(&input.request_id, &input.controls)
            .await
            .map_err(store_error)?;
        tracing::info!(
            request_id = %input.request_id,
            paused = input.controls.paused,
            rate = ?input.controls.rate_per_second,
            cancelled = input.controls.cancelled,
            "controls applied"
        );
        Ok(())
    }

    /// Writes a template's quota where deliveries read it (the API wrote it already; this
    /// makes the signal's value stick even if that write raced another).
    #[activity(definition = fanout_contracts::ApplyTemplateQuota)]
    pub async fn apply_template_quota(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: ApplyTemplateQuotaInput,
    ) -> Result<(), ActivityError> {
        let key = fanout_store::limits::template_key(&input.tenant_id, &input.template_id);
        match input.per_second {
            Some(rate) => self.store.set_quota(&input.tenant_id, &key, rate).await,
            None => self
                .store
                .delete_quota(&input.tenant_id, &key)
                .await
                .map(|_| ()),
        }
        .map_err(store_error)?;
        tracing::info!(
            template_id = %input.template_id,
            per_second = ?input.per_second,
            "template quota applied"
        );
        Ok(())
    }

    /// Records that a scheduled request's time came: `scheduled` becomes `running`.
    #[activity(definition = fanout_contracts::ReleaseRequest)]
    pub async fn release_request(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: ReleaseInput,
    ) -> Result<(), ActivityError> {
        self.store
            .release_request(&input.request_id)
            .await
            .map_err(store_error)?;
        tracing::info!(request_id = %input.request_id, "scheduled request released");
        Ok(())
    }

    /// Regroups a local-time request's snapshot by release instant; see [`release::plan`].
    #[activity(definition = fanout_contracts::PlanRelease)]
    pub async fn plan_release(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: PlanReleaseInput,
    ) -> Result<ReleasePlan, ActivityError> {
        release::plan(&self.store, &ctx, &input, &self.config).await
    }

    /// Moves a quiet-hours request's deferred recipients to release pages; see
    /// [`release::plan_deferred`].
    #[activity(definition = fanout_contracts::PlanDeferred)]
    pub async fn plan_deferred(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: PlanDeferredInput,
    ) -> Result<ReleasePlan, ActivityError> {
        release::plan_deferred(&self.store, &ctx, &input, self.config.page_size).await
    }

    /// Closes a digest into its request; see [`digest::close`].
    #[activity(definition = fanout_contracts::CloseDigest)]
    pub async fn close_digest(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: CloseDigestInput,
    ) -> Result<ClosedDigest, ActivityError> {
        digest::close(&self.store, &input).await
    }
}
