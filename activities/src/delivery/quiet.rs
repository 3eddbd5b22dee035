//! Quiet hours at delivery time: which of a page's recipients are inside their window now, and
//! so get a `deferred` receipt released at the window's end instead of a send.
//!
//! Email and push are held back; in-app messages never are. Only a request the API marked
//! (`quiet_hours`: below `high` priority, a category that does not bypass them, a tenant that
//! uses them) is screened, and only an instance with no receipt yet: a deferred one goes out
//! once its release comes (the round's `release_through_ms`), and is never deferred twice.

use fanout_contracts::{DeliverPageInput, PageReport};
use fanout_domain::quiet::{self, QUIET_HOURS, QuietHours};
use fanout_domain::receipt::{DeliveryStatus, Receipt};
use fanout_domain::timing;
use fanout_domain::user::User;
use fanout_domain::{Channel, InstanceId, UnixMillis};
use fanout_store::Store;
use jiff::tz::TimeZone;
use temporalio_sdk::activities::ActivityError;

use crate::store_error;

/// The tenant's defaults, read once per page of a quiet-hours request.
pub(super) struct QuietScreen {
    window: Option<QuietHours>,
    zone: TimeZone,
    bucket_ms: u64,
    now: UnixMillis,
}

impl QuietScreen {
    /// `None` for a request quiet hours do not apply to, and for the in-app channel: an inbox
    /// message interrupts nobody (it waits to be read), so it is never held back.
    pub(super) async fn load(
        store: &Store,
        input: &DeliverPageInput,
        bucket_ms: u64,
        now: UnixMillis,
    ) -> Result<Option<Self>, ActivityError> {
        if !input.quiet_hours || input.channel == Channel::InApp {
            return Ok(None);
        }
        let setting = store
            .tenant_quiet_hours(&input.tenant_id)
            .await
            .map_err(store_error)?;
        let zone = crate::release::tenant_zone(store, &input.tenant_id).await?;
        Ok(Some(Self {
            window: setting.default,
            zone,
            bucket_ms,
            now,
        }))
    }

    /// When `user`'s delivery goes out if they are inside their quiet hours now (their own
    /// window in their own zone, else the tenant's), rounded up to the release bucket.
    pub(super) fn release_at(&self, user: &User) -> Option<UnixMillis> {
        let window = user.quiet_hours.or(self.window)?;
        let zone = user
            .timezone
            .as_ref()
            .and_then(|z| timing::zone(z.as_str()))
            .unwrap_or_else(|| self.zone.clone());
        let end = window.ends_after(&zone, self.now)?;
        Some(quiet::bucket(end, self.bucket_ms))
    }

    /// The receipt of a delivery deferred until `release_at`.
    pub(super) fn deferred(
        &self,
        input: &DeliverPageInput,
        id: InstanceId,
        user: &User,
        release_at: UnixMillis,
    ) -> Receipt {
        Receipt {
            instance_id: id,
            request_id: input.request_id.clone(),
            user_id: user.user_id.clone(),
            channel: input.channel,
            status: DeliveryStatus::Deferred,
            provider_message_id: None,
            provider: None,
            attempts: 0,
            latency_ms: None,
            error_code: Some(QUIET_HOURS.to_owned()),
            error_message: None,
            updated_at_ms: self.now,
            release_at_ms: Some(release_at),
        }
    }
}

/// Counts an instance waiting for its release in the page's report.
pub(super) fn count_quiet(report: &mut PageReport, release_at: UnixMillis) {
    report.quiet += 1;
    report.quiet_until_ms = earliest(report.quiet_until_ms, Some(release_at));
}

/// The earlier of two release times, either of which may be unknown.
pub(crate) fn earliest(a: Option<UnixMillis>, b: Option<UnixMillis>) -> Option<UnixMillis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
