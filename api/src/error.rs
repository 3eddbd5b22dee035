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
use serde_json::json;

/// A JSON body whose rejections become [`ApiError`]s (400 syntax, 415 type, 422 fields).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// A query string whose rejections become [`ApiError`]s (422 naming the parameter), so a bad
/// `?limit=` answers in the same JSON shape as everything else.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

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

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::InvalidField { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
            ApiError::InvalidTemplate(_) => (StatusCode::BAD_REQUEST, "invalid_template"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
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
        let mut body = json!({"error": {"code": code, "message": message}});
        if let ApiError::InvalidField { field, .. } = &self {
            body["error"]["field"] = json!(field);
        }
        if let ApiError::PayloadTooLarge(_) = &self {
            body["error"]["field"] = json!("body");
        }
        if let ApiError::InvalidTemplate(problems) = &self {
            body["error"]["field"] = json!(problems.first().map(TemplateProblem::path));
            body["error"]["problems"] = problems
                .iter()
                .map(|p| {
                    let mut listed = json!(p);
                    listed["path"] = json!(p.path());
                    listed
                })
                .collect();
        }
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
