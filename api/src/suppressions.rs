//! `/v1/suppressions`: the tenant's list of addresses no channel sends to.
//!
//! Entries are `{"channel", "address", "reason", "detail", "created_at_ms"}`: an email address
//! (compared case-insensitively, shown lowercased) for `email`, a device token for `push`.
//! Delivery adds `hard_bounce`, `invalid_token` and `complaint` entries itself; operators add
//! (`manual` by default) and remove them here. `in_app` has no address, so it has no entries.
//! In `DELETE /v1/suppressions/{channel}/{address}` the address is percent-encoded (a token may
//! hold `/`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fanout_domain::Channel;
use fanout_domain::user::{DeviceToken, EmailAddress};
use fanout_store::suppressions::{
    Suppression, SuppressionChannel, SuppressionCursor, SuppressionReason,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::cursor;
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};

/// The most entries one page lists.
pub const MAX_PAGE: u32 = 1000;

/// How many entries a page lists when the caller does not say.
const DEFAULT_PAGE: u32 = 100;

/// The most bytes of `detail` kept with an entry.
pub const MAX_DETAIL: usize = 1024;

/// The suppression routes, merged into the app's router.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(get_one, remove))
}

/// `?channel=&address=&cursor=&limit=` of the listing. Taken as text so that every malformed
/// value is a 422 naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this channel's entries.
    #[serde(default)]
    #[param(value_type = Option<SuppressionChannel>)]
    channel: Option<String>,
    /// Only this address (email addresses match without regard to case).
    #[serde(default)]
    address: Option<String>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
    /// Page size.
    #[serde(default)]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000, default = 100)] // MAX_PAGE
    limit: Option<String>,
}

/// Body of `POST /v1/suppressions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SuppressionInput)]
pub struct SuppressionBody {
    /// `email` or `push`.
    #[schema(value_type = SuppressionChannel)]
    channel: String,
    /// An email address for email, a device token for push.
    #[schema(min_length = 1, max_length = 4096)] // DeviceToken::MAX_LEN
    address: String,
    /// Defaults to `manual`.
    #[serde(default)]
    #[schema(value_type = Option<SuppressionReason>)]
    reason: Option<String>,
    /// What the provider said, or an operator's note.
    #[serde(default)]
    #[schema(max_length = 1024)] // MAX_DETAIL
    detail: Option<String>,
}

/// A page of entries.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SuppressionsPage {
    /// Entries in (channel, address) order.
    pub suppressions: Vec<Suppression>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Parses a channel that can have suppressed addresses.
fn parse_channel(raw: &str) -> Result<Channel, ApiError> {
    match raw.parse::<Channel>() {
        Ok(Channel::InApp) => Err(ApiError::field(
            "channel",
            "channel in_app has no addresses to suppress (expected email or push)",
        )),
        Ok(channel) => Ok(channel),
        Err(e) => Err(ApiError::field("channel", format!("channel: {e}"))),
    }
}

/// Checks that `address` is one `channel` sends to.
fn check_address(channel: Channel, address: &str) -> Result<(), ApiError> {
    let checked = match channel {
        Channel::Email => EmailAddress::parse(address).map(drop),
        Channel::InApp | Channel::Push => DeviceToken::parse(address).map(drop),
    };
    checked.map_err(|e| ApiError::field("address", format!("address {}", e.reason)))
}

// Addresses and tokens hold no whitespace, so a newline cannot occur inside either part.
fn encode_cursor(last: &Suppression) -> String {
    cursor::encode(&format!("{}\n{}", last.channel, last.address))
}

fn decode_cursor(raw: &str) -> Result<SuppressionCursor, ApiError> {
    cursor::decode(raw, |text| {
        let (channel, address) = text.split_once('\n')?;
        Some(SuppressionCursor {
            channel: channel.parse().ok()?,
            address: address.to_owned(),
        })
    })
}

/// `GET /v1/suppressions?channel=&address=&cursor=&limit=`.
#[utoipa::path(
    get,
    path = "/v1/suppressions",
    tag = "suppressions",
    summary = "The tenant's suppression list in (channel, address) order, cursor-paginated",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of entries", body = SuppressionsPage),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 422, description = "A query parameter is invalid (channel, limit, cursor); field names it", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<SuppressionsPage>, ApiError> {
    let channel = query.channel.as_deref().map(parse_channel).transpose()?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::field("limit", format!("limit must be between 1 and {MAX_PAGE}"))
            })?,
    };
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let suppressions = state
        .store
        .list_suppressions(
            &tenant,
            channel,
            query.address.as_deref(),
            after.as_ref(),
            limit,
        )
        .await?;
    // A short page is the last one; a full page may or may not be.
    let next_cursor = suppressions
        .last()
        .filter(|_| suppressions.len() == limit as usize)
        .map(encode_cursor);
    Ok(Json(SuppressionsPage {
        suppressions,
        next_cursor,
    }))
}

/// `POST /v1/suppressions`: adds an entry. 201 with it when new; 200 with the entry already
/// there (first reason kept) otherwise.
#[utoipa::path(
    post,
    path = "/v1/suppressions",
    tag = "suppressions",
    summary = "Suppress an address: 201 when new, 200 with the existing entry (its first reason kept) otherwise",
    request_body = SuppressionBody,
    responses(
        (status = 201, description = "Created", body = Suppression),
        (status = 200, description = "Already suppressed: the existing entry", body = Suppression),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 409, description = "The entry was removed while being added; retry", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "A field is invalid (channel in_app or unknown, an address the channel cannot send to, an unknown reason, a detail over 1024 bytes); field names it", body = ErrorBody),
    )
)]
pub async fn add(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiJson(body): ApiJson<SuppressionBody>,
) -> Result<(StatusCode, Json<Suppression>), ApiError> {
    let channel = parse_channel(&body.channel)?;
    check_address(channel, &body.address)?;
    let reason = match body.reason.as_deref() {
        None => SuppressionReason::Manual,
        Some(raw) => raw
            .parse()
            .map_err(|e| ApiError::field("reason", format!("reason: {e}")))?,
    };
    if body.detail.as_ref().is_some_and(|d| d.len() > MAX_DETAIL) {
        return Err(ApiError::field(
            "detail",
            format!("detail must be at most {MAX_DETAIL} bytes"),
        ));
    }
    let added = state
        .store
        .suppress(
            &tenant,
            channel,
            &body.address,
            reason,
            body.detail.as_deref(),
        )
        .await?;
    let entry = state
        .store
        .get_suppression(&tenant, channel, &body.address)
        .await?
        // Only a concurrent DELETE gets here; the caller can simply retry.
        .ok_or_else(|| ApiError::Conflict("the entry was removed while being added".into()))?;
    if added {
        tracing::info!(tenant = %tenant, channel = %channel, reason = %reason, "address suppressed");
    }
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(entry)))
}

fn entry_not_found(channel: &str, address: &str) -> ApiError {
    ApiError::NotFound(format!(
        "'{address}' is not suppressed on channel '{channel}'"
    ))
}

/// `GET /v1/suppressions/{channel}/{address}`: one entry, or 404.
#[utoipa::path(
    get,
    path = "/v1/suppressions/{channel}/{address}",
    tag = "suppressions",
    summary = "One suppression entry",
    params(("channel" = SuppressionChannel, Path, description = "email or push"), ("address" = String, Path, description = "The percent-encoded email address or device token")),
    responses(
        (status = 200, description = "The entry", body = Suppression),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "The address is not suppressed on the channel", body = ErrorBody),
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path((raw_channel, address)): Path<(String, String)>,
) -> Result<Json<Suppression>, ApiError> {
    let not_found = || entry_not_found(&raw_channel, &address);
    let channel = raw_channel.parse::<Channel>().map_err(|_| not_found())?;
    state
        .store
        .get_suppression(&tenant, channel, &address)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

/// `DELETE /v1/suppressions/{channel}/{address}`: 204, or 404 if the address was not on the
/// list.
#[utoipa::path(
    delete,
    path = "/v1/suppressions/{channel}/{address}",
    tag = "suppressions",
    summary = "Take an address off the suppression list",
    params(("channel" = SuppressionChannel, Path, description = "email or push"), ("address" = String, Path, description = "The percent-encoded email address or device token")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "The address is not suppressed on the channel", body = ErrorBody),
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path((raw_channel, address)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let not_found = || entry_not_found(&raw_channel, &address);
    let channel = raw_channel.parse::<Channel>().map_err(|_| not_found())?;
    if state.store.unsuppress(&tenant, channel, &address).await? {
        tracing::info!(tenant = %tenant, channel = %channel, "address unsuppressed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let last = Suppression {
            channel: Channel::Push,
            address: "tok/with:odd+chars".into(),
            reason: SuppressionReason::InvalidToken,
            detail: None,
            created_at_ms: 1,
        };
        let cursor = decode_cursor(&encode_cursor(&last)).unwrap();
        assert_eq!(
            cursor,
            SuppressionCursor {
                channel: Channel::Push,
                address: last.address.clone()
            }
        );
        for bad in ["%%%", "bm8tbmV3bGluZQ", "c21zCngK"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
