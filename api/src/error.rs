//! The one place errors become HTTP responses.
//!
//! Every handler returns [`ApiError`]; its `IntoResponse` picks the status and writes a JSON body
//! `{"error": {"code", "message", "field"?}}`. Internal failures are logged with their cause and
//! answered with a generic message, so nothing internal leaks.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fanout_domain::ids::InvalidId;
use fanout_domain::limits::TooLarge;
use fanout_domain::render::TemplateProblem;
use serde::Serialize;
use utoipa::ToSchema;

/// A JSON body whose rejections become [`ApiError`]s (400 syntax, 415 type, 422 fields).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// A query string whose rejections become [`ApiError`]s (422 naming the parameter), so a bad
/// `?limit=` answers in the same JSON shape as everything else.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The body of every error answer: `{"error": {"code", "message", "field"?, "problems"?}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code; one per status (see [`ApiError`]).
    pub code: ErrorCode,
    /// What is wrong and how to fix it, in words.
    pub message: String,
    /// The offending field as a dotted path (`recipients_query.user_ids[3]`, `data.order.id`,
    /// `limit`), for `invalid_field`, `invalid_template` (the first problem's path) and
    /// `payload_too_large` (`body`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `invalid_template`: every problem found, located.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<ListedProblem>>,
}

/// The codes of [`ErrorDetail::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 401: no API key, inbox token or admin key, or one that is not valid.
    Unauthorized,
    /// 404.
    NotFound,
    /// 400: the body is not JSON.
    BadRequest,
    /// 413: the body is over the router's limit.
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 422: a field or query parameter is missing or invalid.
    InvalidField,
    /// 400: template content does not parse, uses unknown variables, or cannot render.
    InvalidTemplate,
    /// 409.
    Conflict,
    /// 429.
    RateLimited,
    /// 503: Temporal is unreachable, or the request ran past the timeout.
    Unavailable,
    /// 500.
    Internal,
}

/// A template problem as an error lists it: the problem and where it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListedProblem {
    /// The problem.
    #[serde(flatten)]
    pub problem: TemplateProblem,
    /// The part's path in the template as written, e.g. `locales.fr.email.subject`.
    pub path: String,
}

/// An API failure, mapped to a status code in exactly one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No API key, or one that is not valid.
    #[error("missing or invalid API key: send 'Authorization: Bearer <key>'")]
    Unauthorized,
    /// The resource does not exist (or belongs to another tenant).
    #[error("{0}")]
    NotFound(String),
    /// The body is not valid JSON, or a query parameter is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The body is over the router's limit.
    #[error("the body is over {0}; send less (see the README's limits)")]
    PayloadTooLarge(String),
    /// The body must be JSON.
    #[error("expected a JSON body with 'Content-Type: application/json'")]
    UnsupportedMediaType,
    /// A field is missing or invalid.
    #[error("{message}")]
    InvalidField {
        /// The field, as a dotted path.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Template content that does not parse or uses unknown variables: 400 listing each problem
    /// (`field` names the first).
    #[error("template content is invalid: {}", list_problems(.0))]
    InvalidTemplate(Vec<TemplateProblem>),
    /// The resource is not in a state that allows this (e.g. pausing a finished request).
    #[error("{0}")]
    Conflict(String),
    /// Over a rate or concurrency limit; nothing was done.
    #[error("{0}")]
    TooManyRequests(String),
    /// A dependency (Temporal) is not reachable; the request was not accepted.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else; the cause is logged, not returned.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// Shorthand for a 422 on `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Shorthand for an internal failure.
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    fn parts(&self) -> (StatusCode, ErrorCode) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            ApiError::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge)
            }
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
            ),
            ApiError::InvalidField { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidField)
            }
            ApiError::InvalidTemplate(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidTemplate),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        }
    }
}

fn list_problems(problems: &[TemplateProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<InvalidId> for ApiError {
    fn from(e: InvalidId) -> Self {
        ApiError::InvalidField {
            field: e.field.to_owned(),
            message: e.to_string(),
        }
    }
}

impl From<TooLarge> for ApiError {
    fn from(e: TooLarge) -> Self {
        ApiError::InvalidField {
            field: e.field.clone(),
            message: e.to_string(),
        }
    }
}

impl From<crate::inbox::hub::SubscribeError> for ApiError {
    fn from(e: crate::inbox::hub::SubscribeError) -> Self {
        use crate::inbox::hub::SubscribeError;
        match e {
            SubscribeError::Store(e) => e.into(),
            too_many @ SubscribeError::TooMany { .. } => {
                ApiError::TooManyRequests(too_many.to_string())
            }
        }
    }
}

impl From<fanout_store::StoreError> for ApiError {
    fn from(e: fanout_store::StoreError) -> Self {
        ApiError::internal(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge("the router's body limit".into())
            }
            JsonRejection::JsonDataError(e) => ApiError::InvalidField {
                field: data_error_path(&e.body_text()),
                message: e.body_text(),
            },
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        let text = rejection.body_text();
        // "Failed to deserialize query string: missing field `request_id`" or
        // "...: limit: invalid digit found in string".
        let detail = text
            .split_once("query string: ")
            .map_or(text.as_str(), |(_, d)| d);
        ApiError::InvalidField {
            field: field_path(detail).unwrap_or_else(|| "query".to_owned()),
            message: format!("query string: {detail}"),
        }
    }
}

/// Names the field in axum's "...target type: a.b[0]: reason" message. For a missing field the
/// path is its parent, so the field's own name is appended.
fn data_error_path(text: &str) -> String {
    text.split_once("target type: ")
        .and_then(|(_, detail)| field_path(detail))
        .unwrap_or_else(|| "body".to_owned())
}

/// The field serde's error `detail` is about ("a.b[0]: reason", "missing field `x`", or both),
/// if it names one.
fn field_path(detail: &str) -> Option<String> {
    let (path, reason) = match detail.split_once(": ") {
        Some((path, reason)) if !path.contains(' ') => (Some(path), reason),
        _ => (None, detail),
    };
    let named = reason
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, named) {
        (Some(path), Some(name)) => Some(format!("{path}.{name}")),
        (None, Some(name)) => Some(name.to_owned()),
        (Some(path), None) => Some(path.to_owned()),
        (None, None) => None,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = self.to_string();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = ?cause, "internal error");
        }
        let (field, problems) = match &self {
            ApiError::InvalidField { field, .. } => (Some(field.clone()), None),
            ApiError::PayloadTooLarge(_) => (Some("body".to_owned()), None),
            ApiError::InvalidTemplate(problems) => (
                problems.first().map(TemplateProblem::path),
                Some(
                    problems
                        .iter()
                        .map(|p| ListedProblem {
                            path: p.path(),
                            problem: p.clone(),
                        })
                        .collect(),
                ),
            ),
            _ => (None, None),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                field,
                problems,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_come_from_serde_messages() {
        assert_eq!(
            data_error_path(
                "Failed to deserialize the JSON body into the target type: recipients_query.user_ids[1]: invalid type"
            ),
            "recipients_query.user_ids[1]"
        );
        assert_eq!(
            data_error_path(
                "Failed to deserialize the JSON body into the target type: missing field `template_id` at line 1"
            ),
            "template_id"
        );
        assert_eq!(
            data_error_path(
                "Failed to deserialize the JSON body into the target type: recipients_query: missing field `user_ids` at line 1"
            ),
            "recipients_query.user_ids"
        );
        assert_eq!(data_error_path("something else"), "body");
    }
}
