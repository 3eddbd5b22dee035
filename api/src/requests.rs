//! `GET /v1/status/{request_id}` and `GET /v1/receipts`: a request's progress and receipts.
//!
//! Status comes live from the workflow while it runs (the `progress` query) and from the
//! store once the workflow has written its outcome. If Temporal cannot be asked (the worker is
//! down, the history is past retention), the store's receipts answer instead.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
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
use crate::orchestrator::LiveState;

/// How long status waits on Temporal before answering from the store.
const LIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A request's aggregate status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Status)]
pub struct StatusResponse {
    /// The request.
    #[schema(value_type = RequestId)]
    pub request_id: String,
    /// `running`, `completed`, `cancelled` or `failed`.
    pub state: RequestState,
    /// The template.
    #[schema(value_type = TemplateId)]
    pub template_id: String,
    /// Where the figures come from: `workflow` (live), `store` (final) or `receipts` (fallback).
    #[schema(pattern = "^(workflow|store|receipts)$")]
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
    if let (true, Some(progress)) = (record.state.is_terminal(), &record.progress) {
        return Ok(Json(respond(
            &record,
            record.state,
            progress.clone(),
            "store",
        )));
    }
    if record.path == DeliveryPath::Direct {
        return direct_status(&state, &tenant, record).await.map(Json);
    }
    let live = tokio::time::timeout(LIVE_TIMEOUT, state.orchestrator.live_state(&request_id)).await;
    let (live_state, progress) = match live {
        Ok(Ok(LiveState::Running(progress))) => {
            let progress = raised_to_receipts(&state, &request_id, progress).await?;
            return Ok(Json(respond(
                &record,
                RequestState::Running,
                progress,
                "workflow",
            )));
        }
        Ok(Ok(LiveState::Closed(closed))) => {
            // The workflow may have finalised between our two reads.
            let fresh = owned_request(&state, &tenant, &request_id).await?;
            if let (true, Some(progress)) = (fresh.state.is_terminal(), fresh.progress) {
                return Ok(Json(respond(&record, fresh.state, progress, "store")));
            }
            (closed, None)
        }
        Ok(Ok(LiveState::Unknown)) => (record.state, None),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, request_id = %request_id, "live status unavailable");
            (record.state, None)
        }
        Err(_) => {
            tracing::warn!(request_id = %request_id, "live status timed out");
            (record.state, None)
        }
    };
    let progress = match progress {
        Some(p) => p,
        None => progress_from_receipts(&state, &request_id).await?,
    };
    Ok(Json(respond(&record, live_state, progress, "receipts")))
}

/// Status of a direct request that has not recorded its outcome: whether it runs comes from
/// Temporal (without a query, which would wait behind the delivery), the counts from its
/// receipts over the audience it listed.
async fn direct_status(
    state: &AppState,
    tenant: &TenantId,
    record: RequestRecord,
) -> Result<StatusResponse, ApiError> {
    let request_id = &record.request_id;
    let run = tokio::time::timeout(LIVE_TIMEOUT, state.orchestrator.run_state(request_id)).await;
    let run_state = match run {
        Ok(Ok(LiveState::Closed(closed))) => {
            let fresh = owned_request(state, tenant, request_id).await?;
            if let (true, Some(progress)) = (fresh.state.is_terminal(), fresh.progress) {
                return Ok(respond(&record, fresh.state, progress, "store"));
            }
            closed
        }
        Ok(Ok(LiveState::Running(_) | LiveState::Unknown)) => record.state,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, request_id = %request_id, "run state unavailable");
            record.state
        }
        Err(_) => {
            tracing::warn!(request_id = %request_id, "run state timed out");
            record.state
        }
    };
    let mut progress = progress_from_receipts(state, request_id).await?;
    let controls = state.store.get_controls(request_id).await?;
    progress.paused = controls.paused;
    progress.rate_per_second = controls.rate_per_second;
    if let Some(input) = state.store.request_input(tenant, request_id).await? {
        let listed = match &input.recipients {
            RecipientsQuery::Users { user_ids } => user_ids.len() as u64,
            _ => 0,
        };
        progress.recipients = listed;
        progress.pages_total = 1;
        for channel in input.channels {
            let counts = progress.channels.entry(channel).or_default();
            counts.total = counts.total.max(listed);
            counts.recompute_pending();
        }
    }
    Ok(respond(&record, run_state, progress, "receipts"))
}

/// How long a running request's receipt counts are reused (see [`raised_to_receipts`]).
pub const RECEIPT_COUNTS_TTL: Duration = Duration::from_secs(1);

/// The most running requests whose receipt counts one API process keeps at once.
pub const RECEIPT_COUNTS_CAPACITY: usize = 10_000;

/// A running request's receipt counts, shared by its status callers for a second.
pub type ReceiptCountsCache = crate::cache::TtlCache<RequestId, BTreeMap<Channel, ChannelCounts>>;

/// A new [`ReceiptCountsCache`].
pub fn receipt_counts_cache() -> ReceiptCountsCache {
    crate::cache::TtlCache::new(RECEIPT_COUNTS_TTL, RECEIPT_COUNTS_CAPACITY)
}

/// Rebuilds counts from receipts when neither the workflow nor its final write can answer.
/// Totals are what has receipts; instances never attempted are not counted.
/// A running tree request's counts: the workflow's, which move only when a page finishes,
/// raised to what its receipts already say (a page writes them every few deliveries and at
/// least every 250 ms), so status moves while a page runs. Both only grow, so the answer
/// never falls; the final counts are the workflow's own.
///
/// Counting a request's receipts reads every one of them, so the counts are shared for
/// [`RECEIPT_COUNTS_TTL`] by every caller of this process: a client polling a 100,000-recipient
/// fan-out every 100 ms had PostgreSQL scanning its 200,000 receipts ten times a second, which
/// took more of the machine than the delivery itself.
async fn raised_to_receipts(
    state: &AppState,
    request_id: &RequestId,
    mut progress: Progress,
) -> Result<Progress, ApiError> {
    let receipts = state
        .receipt_counts
        .get_or_load(request_id, || state.store.receipt_counts(request_id))
        .await?;
    let excluded = progress.excluded;
    for (channel, counts) in &mut progress.channels {
        let Some(seen) = receipts.get(channel) else {
            continue;
        };
        counts.delivered = counts.delivered.max(seen.delivered);
        counts.failed = counts.failed.max(seen.failed);
        counts.cancelled = counts.cancelled.max(seen.cancelled);
        // Members left out of the snapshot count as suppressed and have no receipt.
        counts.suppressed = counts.suppressed.max(seen.suppressed + excluded);
        let settled = counts.delivered + counts.failed + counts.cancelled + counts.suppressed;
        counts.pending = counts.total.saturating_sub(settled);
    }
    Ok(progress)
}

async fn progress_from_receipts(
    state: &AppState,
    request_id: &RequestId,
) -> Result<Progress, ApiError> {
    let mut channels = state.store.receipt_counts(request_id).await?;
    for counts in channels.values_mut() {
        counts.total = counts.delivered
            + counts.failed
            + counts.suppressed
            + counts.cancelled
            + counts.pending;
    }
    Ok(Progress {
        channels,
        ..Progress::default()
    })
}

fn respond(
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
