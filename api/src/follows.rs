//! `/v1/users/{user_id}/followers`: who follows a user, the audience of a `followers` request.
//!
//! The followed user must exist (a typo would otherwise collect followers nobody notifies);
//! followers need not, as a request counts followers without a profile as suppressed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use fanout_domain::{TenantId, UserId};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::audience::{Added, PageQuery, next_cursor, parse_user_ids};
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery};

/// The follower routes, merged into the app's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/users/{user_id}/followers", post(add).get(list))
        .route(
            "/v1/users/{user_id}/followers/{follower_id}",
            delete(remove),
        )
}

/// Body of `POST /v1/users/{user_id}/followers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowersBody {
    follower_ids: Vec<String>,
}

/// A page of followers.
#[derive(Debug, Serialize, Deserialize)]
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
