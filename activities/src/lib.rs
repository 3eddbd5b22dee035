//! Fanout's side effects, run by the worker as Temporal activities.
//!
//! The contracts (names, inputs, outputs) live in `fanout_domain::contracts`; this crate
//! implements them. One module per concern:
//! - [`audience`]: resolving a recipients query into the paged snapshot,
//! - [`email`]: the SMTP channel, [`in_app`]: the inbox channel,
//! - [`delivery`]: one page over one channel, resumable and classified into receipts.
//!
//! Activities decide what is retryable: permanent provider rejections are recorded as failed
//! receipts, transient ones make the activity fail retryably so Temporal retries it, and a
//! retry skips every instance that already reached a final status.

pub mod audience;
pub mod delivery;
pub mod email;
pub mod in_app;

use std::sync::Arc;

use fanout_domain::contracts::{
    self, AudienceSnapshot, DeliverPageInput, FinalizeInput, PageReport, ResolveAudienceInput,
};
use fanout_store::Store;
use serde::{Deserialize, Serialize};
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

pub use email::{EmailSender, SmtpConfig};

/// How deliveries are batched and paced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryConfig {
    /// Recipients per audience page (one delivery activity per page and channel).
    pub page_size: u32,
    /// Concurrent provider calls within one page.
    pub concurrency: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            page_size: 500,
            concurrency: 32,
        }
    }
}

/// The activity implementations, with the handles they share.
pub struct FanoutActivities {
    store: Store,
    email: EmailSender,
    config: DeliveryConfig,
}

impl FanoutActivities {
    /// Bundles the store, the email sender and the delivery settings.
    pub fn new(store: Store, email: EmailSender, config: DeliveryConfig) -> Self {
        Self {
            store,
            email,
            config,
        }
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

/// The store being unavailable is transient: the activity is retried.
pub(crate) fn store_error(e: fanout_store::StoreError) -> ActivityError {
    transient(format!("store: {e}"))
}

#[activities]
impl FanoutActivities {
    /// Materialises the audience snapshot; see [`audience::resolve`].
    #[activity(definition = contracts::ResolveAudience)]
    pub async fn resolve_audience(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: ResolveAudienceInput,
    ) -> Result<AudienceSnapshot, ActivityError> {
        audience::resolve(&self.store, &input, self.config.page_size).await
    }

    /// Delivers one page over one channel; see [`delivery::deliver_page`].
    #[activity(definition = contracts::DeliverPage)]
    pub async fn deliver_page(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: DeliverPageInput,
    ) -> Result<PageReport, ActivityError> {
        delivery::deliver_page(&self.store, &self.email, &self.config, &ctx, &input).await
    }

    /// Records the request's final state and counts, and settles receipts left pending.
    #[activity(definition = contracts::FinalizeRequest)]
    pub async fn finalize_request(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: FinalizeInput,
    ) -> Result<(), ActivityError> {
        self.store
            .finalize_request(&input.request_id, input.state, &input.progress)
            .await
            .map_err(store_error)?;
        tracing::info!(
            request_id = %input.request_id,
            state = input.state.as_str(),
            "request finalized"
        );
        Ok(())
    }
}
