//! `GET /v1/dead-letters` and `POST /v1/dead-letters/redrive`: instances that failed for good,
//! and delivering them again.
//!
//! An instance lands on the list when a provider rejects it permanently (an SMTP 5xx, a push
//! token the provider no longer knows) or when it still fails transiently after every delivery
//! round. A re-drive starts a `RedriveWorkflow` for one request: it takes the matching entries
//! off the list, delivers them again with the request's own content and recounts the request.
//! Entries failing again come back on the list.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use fanout_contracts::{NotificationInput, RedriveInput};
use fanout_domain::receipt::{DeadLetter, RequestState};
use fanout_domain::{Channel, InstanceId, RequestId};
use fanout_store::dead_letters::{DeadLetterCursor, DeadLetterFilter};
use fanout_store::now_ms;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::cursor;
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::orchestrator::StartOutcome;
use crate::requests::{owned_request, parse_request_id};

/// Largest page of the listing.
const MAX_PAGE: u32 = 1000;

/// Most instances one re-drive may name explicitly.
const MAX_INSTANCES: usize = 1000;

/// Query of the listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this request's dead letters.
    #[serde(default)]
    #[param(value_type = Option<RequestId>)]
    request_id: Option<String>,
    /// Only this channel's.
    #[serde(default)]
    #[param(value_type = Option<Channel>)]
    channel: Option<String>,
    /// Also list entries already re-driven.
    #[serde(default)]
    #[param(default = false)]
    include_redriven: bool,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
    /// Page size.
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000, default = 100)] // MAX_PAGE
    limit: Option<u32>,
}

/// A page of the dead-letter list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterPage {
    /// Entries, oldest failure first.
    pub dead_letters: Vec<DeadLetter>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// Body of a re-drive.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RedriveRequest)]
pub struct RedriveBody {
    /// The finished request whose dead letters to deliver again.
    #[schema(value_type = RequestId)]
    request_id: String,
    /// Only this channel's.
    #[serde(default)]
    #[schema(value_type = Option<Channel>)]
    channel: Option<String>,
    /// Only these instances: 1 to 1000 (`MAX_INSTANCES`).
    #[serde(default)]
    #[schema(value_type = Option<Vec<InstanceId>>, min_items = 1, max_items = 1000)]
    instance_ids: Option<Vec<String>>,
}

/// What a re-drive started.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RedriveResponse {
    /// The re-drive's workflow id; `null` when nothing matched.
    pub redrive_id: Option<String>,
    /// Dead letters matched (and taken off the list by the re-drive).
    pub instances: u64,
    /// Where the request's recounted status appears once the re-drive finishes.
    pub status_url: String,
}

fn parse_channel(raw: Option<&str>) -> Result<Option<Channel>, ApiError> {
    raw.map(|c| {
        c.parse::<Channel>().map_err(|e| ApiError::InvalidField {
            field: "channel".into(),
            message: e.to_string(),
        })
    })
    .transpose()
}

/// `GET /v1/dead-letters`.
#[utoipa::path(
    get,
    path = "/v1/dead-letters",
    tag = "dead letters",
    summary = "Instances that failed for good (permanent rejection, or transient failures through every delivery round), oldest first",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of dead letters", body = DeadLetterPage),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "request_id names no request of this tenant", body = ErrorBody),
        (status = 422, description = "A query parameter is invalid (channel, limit, cursor); field names it", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidField {
            field: "limit".into(),
            message: format!("limit must be between 1 and {MAX_PAGE}"),
        });
    }
    let request_id = query
        .request_id
        .as_deref()
        .map(parse_request_id)
        .transpose()?;
    let filter = DeadLetterFilter {
        request_id,
        channel: parse_channel(query.channel.as_deref())?,
        instance_ids: None,
        include_redriven: query.include_redriven,
    };
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let dead_letters = state
        .store
        .list_dead_letters(&tenant, &filter, after.as_ref(), limit)
        .await?;
    let next_cursor = (dead_letters.len() == limit as usize)
        .then(|| dead_letters.last().map(encode_cursor))
        .flatten();
    Ok(Json(DeadLetterPage {
        dead_letters,
        next_cursor,
    }))
}

/// `POST /v1/dead-letters/redrive`.
#[utoipa::path(
    post,
    path = "/v1/dead-letters/redrive",
    tag = "dead letters",
    summary = "Deliver a finished request's dead letters again (all, one channel's, or the instances named)",
    request_body = RedriveBody,
    responses(
        (status = 202, description = "Re-drive started", body = RedriveResponse),
        (status = 200, description = "No dead letter matched; nothing started", body = RedriveResponse),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such request for this tenant", body = ErrorBody),
        (status = 409, description = "The request is still running or was cancelled", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "A field is invalid (channel, instance_ids); field names it", body = ErrorBody),
        (status = 503, description = "Temporal is unreachable; nothing was re-driven, retry", body = ErrorBody),
    )
)]
pub async fn redrive(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiJson(body): ApiJson<RedriveBody>,
) -> Result<(StatusCode, Json<RedriveResponse>), ApiError> {
    let request_id = parse_request_id(&body.request_id)?;
    let record = owned_request(&state, &tenant, &request_id).await?;
    let status_url = format!("/v1/status/{request_id}");
    match record.state {
        RequestState::Running | RequestState::Scheduled => {
            return Err(ApiError::Conflict(format!(
                "request '{request_id}' is still {}; re-drive it once it has finished",
                record.state.as_str()
            )));
        }
        RequestState::Cancelled => {
            return Err(ApiError::Conflict(format!(
                "request '{request_id}' was cancelled; a cancelled request is not re-driven"
            )));
        }
        RequestState::Digested => {
            return Err(ApiError::Conflict(format!(
                "request '{request_id}' was folded into a digest and delivered nothing itself; \
                 re-drive the digest's request (its status names it)"
            )));
        }
        RequestState::Completed | RequestState::Failed => {}
    }
    let channel = parse_channel(body.channel.as_deref())?;
    let instance_ids = body
        .instance_ids
        .map(|ids| {
            if ids.is_empty() || ids.len() > MAX_INSTANCES {
                return Err(ApiError::InvalidField {
                    field: "instance_ids".into(),
                    message: format!(
                        "give between 1 and {MAX_INSTANCES} instance ids, or leave it out to re-drive every dead letter of the request"
                    ),
                });
            }
            ids.iter()
                .enumerate()
                .map(|(i, id)| {
                    InstanceId::parse(id).map_err(|e| ApiError::InvalidField {
                        field: format!("instance_ids[{i}]"),
                        message: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;

    let filter = DeadLetterFilter {
        request_id: Some(request_id.clone()),
        channel,
        instance_ids: instance_ids.clone(),
        include_redriven: false,
    };
    let matched = state
        .store
        .list_dead_letters(&tenant, &filter, None, MAX_PAGE)
        .await?
        .len() as u64;
    if matched == 0 {
        return Ok((
            StatusCode::OK,
            Json(RedriveResponse {
                redrive_id: None,
                instances: 0,
                status_url,
            }),
        ));
    }
    let request: NotificationInput = state
        .store
        .request_input(&tenant, &request_id)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "request '{request_id}' was recorded before re-drives were supported; send a new notification instead"
            ))
        })?;
    let redrive_id = format!("{request_id}/redrive-{}", now_ms());
    // At the request's own priority, and in its tenant's share of the queue.
    let settings = state.ingest.settings(&tenant).await?;
    let priority =
        state
            .scheduling
            .task_priority(request.priority, &tenant, settings.fairness_weight);
    let input = RedriveInput {
        request,
        redrive_id: redrive_id.clone(),
        channel,
        instance_ids,
        progress: record.progress.unwrap_or_default(),
    };
    match state.orchestrator.start_redrive(input, priority).await {
        Ok(StartOutcome::Started) => {}
        Ok(StartOutcome::Duplicate) => {
            return Err(ApiError::Conflict(format!(
                "a re-drive of request '{request_id}' was started this very millisecond; retry"
            )));
        }
        Err(e) => {
            return Err(ApiError::Unavailable(format!(
                "{e}; nothing was re-driven, retry"
            )));
        }
    }
    tracing::info!(request_id = %request_id, %redrive_id, matched, "re-drive accepted");
    Ok((
        StatusCode::ACCEPTED,
        Json(RedriveResponse {
            redrive_id: Some(redrive_id),
            // At most one listing page was counted: a larger re-drive reports the cap.
            instances: matched,
            status_url,
        }),
    ))
}

fn encode_cursor(last: &DeadLetter) -> String {
    cursor::encode(&format!("{}:{}", last.failed_at_ms, last.instance_id))
}

fn decode_cursor(raw: &str) -> Result<DeadLetterCursor, ApiError> {
    cursor::decode(raw, |text| {
        let (at, id) = text.split_once(':')?;
        Some(DeadLetterCursor {
            failed_at_ms: at.parse().ok()?,
            instance_id: InstanceId::parse(id).ok()?,
        })
    })
}
