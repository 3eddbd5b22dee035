//! `/v1/users/{user_id}/followers`: who follows a user, the audience of a `followers` request.
//!
//! The followed user must exist (a typo would otherwise collect followers nobody notifies);
//! followers need not, as a request counts followers without a profile as suppressed.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fanout_domain::{TenantId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::audience::{Added, PageQuery, next_cursor, parse_user_ids};
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};

/// The follower routes, merged into the app's router.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add, list))
        .routes(routes!(remove))
}

/// Body of `POST /v1/users/{user_id}/followers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FollowersInput)]
pub struct FollowersBody {
    /// The followers (1 to 10,000 a call); they need not exist as users yet, and must not
    /// include the followed user.
    #[schema(value_type = Vec<UserId>, min_items = 1, max_items = 10000)]
    // audience::MAX_IDS_PER_CALL
    follower_ids: Vec<String>,
}

/// A page of followers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FollowersPage {
    /// Follower ids in ascending order.
    pub followers: Vec<UserId>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn user_not_found(raw_id: &str) -> ApiError {
    ApiError::NotFound(format!("user '{raw_id}' not found"))
}

/// Parses a user id from the path and checks that the user exists in the caller's tenant.
async fn existing_user(
    state: &AppState,
    tenant: &TenantId,
    raw_id: &str,
) -> Result<UserId, ApiError> {
    // A malformed id cannot name any user: answer as for any unknown one.
    let user_id = UserId::parse(raw_id).map_err(|_| user_not_found(raw_id))?;
    match state.store.get_user(tenant, &user_id).await? {
        Some(_) => Ok(user_id),
        None => Err(user_not_found(raw_id)),
    }
}

/// `POST /v1/users/{user_id}/followers`: adds followers; following twice is a no-op.
#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/followers",
    tag = "audiences",
    summary = "Add followers to a user (1 to 10,000 ids a call); following twice is a no-op",
    params(("user_id" = UserId, Path, description = "The followed user")),
    request_body = FollowersBody,
    responses(
        (status = 200, description = "How many were new", body = Added),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "follower_ids is empty, too long, holds an invalid id (follower_ids[i]) or the user itself", body = ErrorBody),
    )
)]
pub async fn add(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<FollowersBody>,
) -> Result<Json<Added>, ApiError> {
    let followers = parse_user_ids("follower_ids", &body.follower_ids)?;
    let of = existing_user(&state, &tenant, &raw_id).await?;
    if followers.binary_search(&of).is_ok() {
        return Err(ApiError::InvalidField {
            field: "follower_ids".into(),
            message: format!("follower_ids must not include '{of}' itself"),
        });
    }
    let added = state.store.add_followers(&tenant, &of, &followers).await?;
    Ok(Json(Added { added }))
}

/// `DELETE /v1/users/{user_id}/followers/{follower_id}`.
#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}/followers/{follower_id}",
    tag = "audiences",
    summary = "Stop a follower following a user",
    params(("user_id" = UserId, Path, description = "The followed user"), ("follower_id" = UserId, Path, description = "The follower")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "The follower does not follow the user", body = ErrorBody),
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path((raw_id, raw_follower)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let not_following =
        || ApiError::NotFound(format!("user '{raw_follower}' does not follow '{raw_id}'"));
    let of = UserId::parse(&raw_id).map_err(|_| not_following())?;
    let follower = UserId::parse(&raw_follower).map_err(|_| not_following())?;
    if state.store.remove_follower(&tenant, &of, &follower).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_following())
    }
}

/// `GET /v1/users/{user_id}/followers?cursor=&limit=`.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/followers",
    tag = "audiences",
    summary = "A user's followers in id order, cursor-paginated",
    params(("user_id" = UserId, Path, description = "The followed user"), PageQuery),
    responses(
        (status = 200, description = "A page of followers", body = FollowersPage),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "A query parameter is invalid (limit, cursor); field names it", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<FollowersPage>, ApiError> {
    let (after, limit) = query.parse()?;
    let of = existing_user(&state, &tenant, &raw_id).await?;
    let followers = state
        .store
        .list_followers(&tenant, &of, after.as_ref(), limit)
        .await?;
    Ok(Json(FollowersPage {
        next_cursor: next_cursor(&followers, limit),
        followers,
    }))
}
