//! `GET /v1/status/{request_id}` and `GET /v1/receipts`: a request's progress and receipts.
//!
//! Status comes from the store: the outcome the workflow wrote once it has, and while it runs
//! the receipts' counts with the snapshot's size and finished pages, shared for a second by
//! every caller of the API process (see [`running_view`]). No status read queries a workflow.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use fanout_contracts::NotificationInput;
use fanout_domain::receipt::{ChannelCounts, Progress, Receipt, RequestState};
use fanout_domain::request::{DeliveryPath, RecipientsQuery};
use fanout_domain::{Channel, InstanceId, RequestId, TemplateId, TenantId, UnixMillis};
use fanout_store::requests::RequestRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::cursor;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::orchestrator::RunState;

/// How long status waits on Temporal before answering from the store.
const LIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A request's aggregate status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Status)]
pub struct StatusResponse {
    /// The request.
    #[schema(value_type = RequestId)]
    pub request_id: String,
    /// `scheduled` (waiting for its `send_at`), `running`, `completed`, `cancelled`, `failed`,
    /// or `digested` (a digest template's trigger, folded into the digest `digest` names).
    pub state: RequestState,
    /// The template.
    #[schema(value_type = TemplateId)]
    pub template_id: String,
    /// Where the figures come from: `store` (the outcome the request recorded when it ended)
    /// or `receipts` (while it runs: counted from its receipts and audience snapshot, at most
    /// a second old).
    #[schema(pattern = "^(store|receipts)$")]
    pub source: String,
    /// How the request is delivered: `direct` (a small explicit audience, one workflow
    /// execution) or `tree` (resolution and pages as child workflows).
    pub path: DeliveryPath,
    /// Recipients in the audience snapshot.
    pub recipients: u64,
    /// Audience members left out because their user does not exist (suppressed on every
    /// channel).
    pub excluded: u64,
    /// Whether an operator paused the request.
    pub paused: bool,
    /// The request's delivery rate cap, if any.
    pub rate_per_second: Option<u32>,
    /// Audience pages.
    pub pages_total: u32,
    /// Pages finished.
    pub pages_done: u32,
    /// Counts per channel.
    #[schema(schema_with = channel_counts_schema)]
    pub channels: BTreeMap<Channel, ChannelCounts>,
    /// Counts over all channels.
    pub totals: ChannelCounts,
    /// The request's metadata labels.
    pub metadata: BTreeMap<String, String>,
    /// When it was accepted.
    #[schema(value_type = i64)]
    pub created_at_ms: UnixMillis,
    /// When it starts (or started), for a request sent with `send_at` or `delay_seconds`.
    #[schema(value_type = Option<i64>)]
    pub run_at_ms: Option<UnixMillis>,
    /// For a trigger of a digest template (state `digested`): the digest it was folded into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<crate::digests::DigestStatus>,
}

fn channel_counts_schema() -> utoipa::openapi::Object {
    fanout_domain::channel::keyed_by_channel(utoipa::openapi::Ref::from_schema_name(
        "ChannelCounts",
    ))
}

pub(crate) fn parse_request_id(raw: &str) -> Result<RequestId, ApiError> {
    // A malformed id cannot name any request: answer as for any unknown id.
    RequestId::parse(raw).map_err(|_| ApiError::NotFound(format!("request '{raw}' not found")))
}

pub(crate) async fn owned_request(
    state: &AppState,
    tenant: &TenantId,
    request_id: &RequestId,
) -> Result<RequestRecord, ApiError> {
    state
        .store
        .get_request(tenant, request_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("request '{request_id}' not found")))
}

/// `GET /v1/status/{request_id}`.
#[utoipa::path(
    get,
    path = "/v1/status/{request_id}",
    tag = "requests",
    summary = "Aggregate status of a request, live while it runs",
    params(("request_id" = RequestId, Path, description = "The request, as POST /v1/notify returned it")),
    responses(
        (status = 200, description = "The request's status", body = StatusResponse),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such request for this tenant (a malformed id included)", body = ErrorBody),
    )
)]
pub async fn status(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
) -> Result<Json<StatusResponse>, ApiError> {
    let request_id = parse_request_id(&raw_id)?;
    let record = owned_request(&state, &tenant, &request_id).await?;
    if record.state == RequestState::Digested {
        return Ok(Json(crate::digests::status(&state, &record).await?));
    }
    if let (true, Some(progress)) = (record.state.is_terminal(), &record.progress) {
        return Ok(Json(respond(
            &record,
            record.state,
            progress.clone(),
            "store",
        )));
    }
    let view = state
        .running_status
        .get_or_load(&request_id, || running_view(&state, &tenant, &record))
        .await?;
    Ok(Json(match view {
        RunningView::Finished(fresh) => {
            let progress = fresh.progress.clone().unwrap_or_default();
            respond(&record, fresh.state, progress, "store")
        }
        RunningView::Counted(run_state, progress) => {
            respond(&record, run_state, progress, "receipts")
        }
    }))
}

/// How long one API process reuses what it counted for a request that has not recorded its
/// outcome (see [`running_view`]).
pub const RUNNING_STATUS_TTL: Duration = Duration::from_secs(1);

/// The most running requests whose status one API process keeps at once.
pub const RUNNING_STATUS_CAPACITY: usize = 10_000;

/// What status says of a request that has not recorded its outcome, shared by its callers for
/// [`RUNNING_STATUS_TTL`].
#[derive(Debug, Clone)]
pub enum RunningView {
    /// It closed and recorded its outcome between the two reads.
    Finished(Box<RequestRecord>),
    /// Its state (from Temporal, or the store's when Temporal cannot say) and its counts.
    Counted(RequestState, Progress),
}

/// Running requests' status, per API process.
pub type RunningStatusCache = crate::cache::TtlCache<RequestId, RunningView>;

/// A new [`RunningStatusCache`].
pub fn running_status_cache() -> RunningStatusCache {
    crate::cache::TtlCache::new(RUNNING_STATUS_TTL, RUNNING_STATUS_CAPACITY)
}

/// Status of a request that has not recorded its outcome, from the store: its receipts'
/// counts, its audience snapshot's size and finished pages (written by the resolver and the
/// page activities as they go) and its controls. Temporal is asked only whether the workflow
/// still runs (a describe, not a query: the workflow's `progress` query is for the Temporal
/// UI), which catches a workflow that closed without writing its outcome.
///
/// Counting reads every receipt of the request, so the answer is shared by every caller of
/// this process for [`RUNNING_STATUS_TTL`]: dashboards poll, and a client polling a
/// 100,000-recipient fan-out every 100 ms had PostgreSQL counting its 200,000 receipts ten
/// times a second. The counts only grow between loads, so status never falls, and once the
/// outcome is written the final counts are the workflow's own.
async fn running_view(
    state: &AppState,
    tenant: &TenantId,
    record: &RequestRecord,
) -> Result<RunningView, ApiError> {
    let request_id = &record.request_id;
    let run = tokio::time::timeout(LIVE_TIMEOUT, state.orchestrator.run_state(request_id)).await;
    let run_state = match run {
        Ok(Ok(RunState::Closed(closed))) => {
            // The workflow may have recorded its outcome since our first read.
            let fresh = owned_request(state, tenant, request_id).await?;
            if fresh.state.is_terminal() && fresh.progress.is_some() {
                return Ok(RunningView::Finished(Box::new(fresh)));
            }
            closed
        }
        Ok(Ok(RunState::Running | RunState::Unknown)) => record.state,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, request_id = %request_id, "run state unavailable");
            record.state
        }
        Err(_) => {
            tracing::warn!(request_id = %request_id, "run state timed out");
            record.state
        }
    };
    let receipts = state.store.receipt_counts(request_id).await?;
    let controls = state.store.get_controls(request_id).await?;
    let input: Option<NotificationInput> = state.store.request_input(tenant, request_id).await?;
    let channels: &[Channel] = input.as_ref().map_or(&[], |i| &i.channels);
    let mut progress = match (record.path, &input) {
        (DeliveryPath::Direct, Some(input)) => {
            let listed = match &input.recipients {
                RecipientsQuery::Users { user_ids } => user_ids.len() as u64,
                _ => 0,
            };
            counted(receipts, channels, listed, 0, 1, 0)
        }
        (DeliveryPath::Tree, Some(_)) => {
            let stored = state
                .store
                .stored_progress(request_id, channels.len())
                .await?;
            counted(
                receipts,
                channels,
                stored.recipients,
                stored.excluded,
                stored.pages_total,
                stored.pages_done,
            )
        }
        // No input stored (written before inputs were kept): what the receipts say.
        (_, None) => counted(receipts, &[], 0, 0, 0, 0),
    };
    progress.paused = controls.paused;
    progress.rate_per_second = controls.rate_per_second;
    Ok(RunningView::Counted(run_state, progress))
}

/// A running request's counts: every recipient of the snapshot so far (and every member left
/// out of it, as suppressed) on each channel, settled as far as the receipts say. Channels
/// with receipts but not among `channels` count what their receipts hold.
fn counted(
    mut receipts: BTreeMap<Channel, ChannelCounts>,
    channels: &[Channel],
    recipients: u64,
    excluded: u64,
    pages_total: u32,
    pages_done: u32,
) -> Progress {
    for channel in channels {
        let counts = receipts.entry(*channel).or_default();
        counts.suppressed += excluded;
        counts.total = recipients + excluded;
    }
    for counts in receipts.values_mut() {
        // Never fewer than the receipts hold (a channel with receipts but no listed total).
        let seen = counts.delivered
            + counts.failed
            + counts.cancelled
            + counts.suppressed
            + counts.pending;
        counts.total = counts.total.max(seen);
        counts.recompute_pending();
    }
    Progress {
        pages_total,
        pages_done,
        recipients,
        excluded,
        channels: receipts,
        ..Progress::default()
    }
}

pub(crate) fn respond(
    record: &RequestRecord,
    state: RequestState,
    progress: Progress,
    source: &str,
) -> StatusResponse {
    let mut totals = ChannelCounts::default();
    for c in progress.channels.values() {
        totals.total += c.total;
        totals.delivered += c.delivered;
        totals.failed += c.failed;
        totals.suppressed += c.suppressed;
        totals.cancelled += c.cancelled;
        totals.pending += c.pending;
        totals.deferred += c.deferred;
    }
    StatusResponse {
        request_id: record.request_id.to_string(),
        state,
        template_id: record.template_id.to_string(),
        source: source.to_owned(),
        path: record.path,
        recipients: progress.recipients,
        excluded: progress.excluded,
        paused: progress.paused,
        rate_per_second: progress.rate_per_second,
        pages_total: progress.pages_total,
        pages_done: progress.pages_done,
        channels: progress.channels,
        totals,
        metadata: record.metadata.clone(),
        created_at_ms: record.created_at_ms,
        run_at_ms: record.run_at_ms,
        digest: None,
    }
}

/// Query of `GET /v1/receipts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReceiptsQuery {
    /// The request.
    #[param(value_type = RequestId)]
    request_id: String,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
    /// Page size.
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000, default = 100)] // MAX_PAGE
    limit: Option<u32>,
}

/// A page of receipts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReceiptsPage {
    /// Receipts in a stable order.
    pub receipts: Vec<Receipt>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The most receipts one page returns.
pub const MAX_PAGE: u32 = 1000;

/// `GET /v1/receipts?request_id=...&cursor=...&limit=...`.
#[utoipa::path(
    get,
    path = "/v1/receipts",
    tag = "requests",
    summary = "Delivery receipts of a request, cursor-paginated",
    params(ReceiptsQuery),
    responses(
        (status = 200, description = "A page of receipts", body = ReceiptsPage),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such request for this tenant", body = ErrorBody),
        (status = 422, description = "A query parameter is invalid (limit out of range, malformed cursor); field names it", body = ErrorBody),
    )
)]
pub async fn receipts(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiQuery(query): ApiQuery<ReceiptsQuery>,
) -> Result<Json<ReceiptsPage>, ApiError> {
    let request_id = parse_request_id(&query.request_id)?;
    owned_request(&state, &tenant, &request_id).await?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidField {
            field: "limit".into(),
            message: format!("limit must be between 1 and {MAX_PAGE}"),
        });
    }
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let receipts = state
        .store
        .list_receipts(&tenant, &request_id, after.as_ref(), limit)
        .await?;
    let next_cursor = (receipts.len() == limit as usize)
        .then(|| {
            receipts
                .last()
                .map(|r| cursor::encode(r.instance_id.as_str()))
        })
        .flatten();
    Ok(Json(ReceiptsPage {
        receipts,
        next_cursor,
    }))
}

fn decode_cursor(raw: &str) -> Result<InstanceId, ApiError> {
    cursor::decode(raw, |text| InstanceId::parse(text).ok())
}
