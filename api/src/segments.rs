//! `/v1/segments/{segment_id}`: named sets of users, the audience of a `segment` request.
//!
//! Members need not exist as users; a request counts members without a profile as suppressed.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fanout_domain::audience::Segment;
use fanout_domain::{SegmentId, TenantId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::audience::{Added, PageQuery, next_cursor, parse_user_ids};
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};

/// The segment routes, merged into the app's router.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_segment, get_segment))
        .routes(routes!(add_members, list_members))
        .routes(routes!(remove_member))
}

/// Body of `PUT /v1/segments/{segment_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SegmentInput)]
pub struct SegmentBody {
    /// A human-readable name, not blank.
    #[schema(min_length = 1, max_length = 200)] // audience::MAX_SEGMENT_NAME
    name: String,
    /// Members to add; existing members are kept (membership changes go through
    /// `/members`, so a rename never has to resend a million ids).
    #[serde(default)]
    #[schema(value_type = Option<Vec<UserId>>, max_items = 10000)]
    // audience::MAX_IDS_PER_CALL
    user_ids: Option<Vec<String>>,
}

/// Body of `POST /v1/segments/{segment_id}/members`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MembersInput)]
pub struct MembersBody {
    /// The members to add (1 to 10,000 a call); they need not exist as users yet.
    #[schema(value_type = Vec<UserId>, min_items = 1, max_items = 10000)]
    // audience::MAX_IDS_PER_CALL
    user_ids: Vec<String>,
}

/// A page of members.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MembersPage {
    /// Member ids in ascending order.
    pub members: Vec<UserId>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn segment_not_found(raw_id: &str) -> ApiError {
    ApiError::NotFound(format!("segment '{raw_id}' not found"))
}

/// Parses a segment id from the path of a read or an update of something that must exist.
fn known_segment_id(raw_id: &str) -> Result<SegmentId, ApiError> {
    // A malformed id cannot name any segment: answer as for any unknown one.
    SegmentId::parse(raw_id).map_err(|_| segment_not_found(raw_id))
}

async fn existing_segment(
    state: &AppState,
    tenant: &TenantId,
    raw_id: &str,
) -> Result<SegmentId, ApiError> {
    let segment_id = known_segment_id(raw_id)?;
    if state.store.segment_exists(tenant, &segment_id).await? {
        Ok(segment_id)
    } else {
        Err(segment_not_found(raw_id))
    }
}

/// `PUT /v1/segments/{segment_id}`: creates or renames a segment and adds any `user_ids`.
#[utoipa::path(
    put,
    path = "/v1/segments/{segment_id}",
    tag = "audiences",
    summary = "Create or rename a segment; user_ids are added to its members, existing members are kept",
    params(("segment_id" = SegmentId, Path, description = "The segment")),
    request_body = SegmentBody,
    responses(
        (status = 200, description = "The segment", body = Segment),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "The segment id, the name or a user id is invalid; field names it", body = ErrorBody),
    )
)]
pub async fn put_segment(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<SegmentBody>,
) -> Result<Json<Segment>, ApiError> {
    let segment_id = SegmentId::parse(&raw_id)?;
    Segment::check_name(&body.name)?;
    let members = match body.user_ids.as_deref() {
        None | Some([]) => Vec::new(),
        Some(raw) => parse_user_ids("user_ids", raw)?,
    };
    let segment = state
        .store
        .upsert_segment(&tenant, &segment_id, &body.name, &members)
        .await?;
    Ok(Json(segment))
}

/// `GET /v1/segments/{segment_id}`: the segment with its member count.
#[utoipa::path(
    get,
    path = "/v1/segments/{segment_id}",
    tag = "audiences",
    summary = "Read a segment with its member count",
    params(("segment_id" = SegmentId, Path, description = "The segment")),
    responses(
        (status = 200, description = "The segment", body = Segment),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such segment", body = ErrorBody),
    )
)]
pub async fn get_segment(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
) -> Result<Json<Segment>, ApiError> {
    let segment_id = known_segment_id(&raw_id)?;
    state
        .store
        .get_segment(&tenant, &segment_id)
        .await?
        .map(Json)
        .ok_or_else(|| segment_not_found(&raw_id))
}

/// `POST /v1/segments/{segment_id}/members`: adds members; adding one twice is a no-op.
#[utoipa::path(
    post,
    path = "/v1/segments/{segment_id}/members",
    tag = "audiences",
    summary = "Add members to a segment (1 to 10,000 ids a call); adding one twice is a no-op",
    params(("segment_id" = SegmentId, Path, description = "The segment")),
    request_body = MembersBody,
    responses(
        (status = 200, description = "How many were new", body = Added),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such segment", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "user_ids is empty, too long or holds an invalid id (user_ids[i])", body = ErrorBody),
    )
)]
pub async fn add_members(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<MembersBody>,
) -> Result<Json<Added>, ApiError> {
    let members = parse_user_ids("user_ids", &body.user_ids)?;
    let segment_id = known_segment_id(&raw_id)?;
    state
        .store
        .add_segment_members(&tenant, &segment_id, &members)
        .await?
        .map(|added| Json(Added { added }))
        .ok_or_else(|| segment_not_found(&raw_id))
}

/// `DELETE /v1/segments/{segment_id}/members/{user_id}`.
#[utoipa::path(
    delete,
    path = "/v1/segments/{segment_id}/members/{user_id}",
    tag = "audiences",
    summary = "Remove a member from a segment",
    params(("segment_id" = SegmentId, Path, description = "The segment"), ("user_id" = UserId, Path, description = "The member")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "The user is not a member of the segment", body = ErrorBody),
    )
)]
pub async fn remove_member(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path((raw_id, raw_user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let not_member = || {
        ApiError::NotFound(format!(
            "user '{raw_user}' is not a member of segment '{raw_id}'"
        ))
    };
    let segment_id = SegmentId::parse(&raw_id).map_err(|_| not_member())?;
    let user_id = UserId::parse(&raw_user).map_err(|_| not_member())?;
    if state
        .store
        .remove_segment_member(&tenant, &segment_id, &user_id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_member())
    }
}

/// `GET /v1/segments/{segment_id}/members?cursor=&limit=`.
#[utoipa::path(
    get,
    path = "/v1/segments/{segment_id}/members",
    tag = "audiences",
    summary = "A segment's members in id order, cursor-paginated",
    params(("segment_id" = SegmentId, Path, description = "The segment"), PageQuery),
    responses(
        (status = 200, description = "A page of members", body = MembersPage),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such segment", body = ErrorBody),
        (status = 422, description = "A query parameter is invalid (limit, cursor); field names it", body = ErrorBody),
    )
)]
pub async fn list_members(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<MembersPage>, ApiError> {
    let (after, limit) = query.parse()?;
    let segment_id = existing_segment(&state, &tenant, &raw_id).await?;
    let members = state
        .store
        .list_segment_members(&tenant, &segment_id, after.as_ref(), limit)
        .await?;
    Ok(Json(MembersPage {
        next_cursor: next_cursor(&members, limit),
        members,
    }))
}
