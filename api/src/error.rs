//! The one place errors become HTTP responses.
//!
//! Every handler returns [`ApiError`]; its `IntoResponse` picks the status and writes a JSON body
//! `{"error": {"code", "message", "field"?}}`. Internal failures are logged with their cause and
//! answered with a generic message, so nothing internal leaks.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fanout_domain::ids::InvalidId;
use fanout_domain::limits::TooLarge;
use fanout_domain::render::TemplateProblem;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

/// A JSON body whose rejections become [`ApiError`]s: 415 without a JSON content type, 413
/// over the router's body limit, 400 for text that is not JSON, 422 naming the field whose
/// value has the wrong shape. The field comes from the path the deserializer was at
/// (`serde_path_to_error`), not from an error's wording.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::PayloadTooLarge("the router's body limit".into())
                }
                _ => ApiError::BadRequest(rejection.body_text()),
            }
        })?;
        let not_json = |e: serde_json::Error| ApiError::BadRequest(format!("not valid JSON: {e}"));
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let field = located_field(&e.path().to_string(), &e.inner().to_string());
            match e.inner().classify() {
                serde_json::error::Category::Data => invalid_field(field, "body", e.into_inner()),
                _ => not_json(e.into_inner()),
            }
        })?;
        deserializer.end().map_err(not_json)?;
        Ok(Self(value))
    }
}

/// A query string whose rejections become [`ApiError`]s (422 naming the parameter), so a bad
/// `?limit=` answers in the same JSON shape as everything else.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Self)
            .map_err(|e| {
                let field = located_field(&e.path().to_string(), &e.inner().to_string());
                let reason = e.into_inner();
                ApiError::InvalidField {
                    field: field.unwrap_or_else(|| "query".to_owned()),
                    message: format!("query string: {reason}"),
                }
            })
    }
}

/// Whether the request says its body is JSON: `application/json` or `application/<x>+json`,
/// parameters (`; charset=utf-8`) aside.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let essence = essence.to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A 422 for a value of the wrong shape at `field` (`whole` when it is the document itself).
fn invalid_field(field: Option<String>, whole: &str, reason: impl std::fmt::Display) -> ApiError {
    let field = field.unwrap_or_else(|| whole.to_owned());
    ApiError::InvalidField {
        message: format!("{field}: {reason}"),
        field,
    }
}

/// The field a deserialization error is about: the path the deserializer was at (`a.b[0]`;
/// `.` is the document itself) and, for a missing field, that field's own name, which serde
/// gives only in its message (`missing field \`x\``, `serde::de::Error::missing_field`).
fn located_field(path: &str, message: &str) -> Option<String> {
    let path = (path != "." && !path.is_empty()).then_some(path);
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, missing) {
        (Some(path), Some(name)) => Some(format!("{path}.{name}")),
        (None, Some(name)) => Some(name.to_owned()),
        (Some(path), None) => Some(path.to_owned()),
        (None, None) => None,
    }
}

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
    fn fields_come_from_the_deserializer_path() {
        assert_eq!(
            located_field("recipients_query.user_ids[1]", "invalid type: integer"),
            Some("recipients_query.user_ids[1]".to_owned())
        );
        assert_eq!(
            located_field(".", "missing field `template_id` at line 1 column 2"),
            Some("template_id".to_owned())
        );
        assert_eq!(
            located_field("recipients_query", "missing field `user_ids` at line 1"),
            Some("recipients_query.user_ids".to_owned())
        );
        assert_eq!(located_field(".", "invalid type: string"), None);
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        recipients: Recipients,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Recipients {
        user_ids: Vec<u32>,
    }

    async fn extract(content_type: &str, body: &str) -> Result<Body, ApiError> {
        let request = Request::builder()
            .header(header::CONTENT_TYPE, content_type)
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap();
        ApiJson::<Body>::from_request(request, &())
            .await
            .map(|b| b.0)
    }

    #[tokio::test]
    async fn bodies_are_refused_with_the_field_and_status_they_deserve() {
        let field = |e: ApiError| match e {
            ApiError::InvalidField { field, .. } => field,
            other => panic!("expected a 422, got {other:?}"),
        };
        let json = "application/json; charset=utf-8";
        let wrong = extract(json, r#"{"recipients": {"user_ids": [1, "x"]}}"#).await;
        assert_eq!(field(wrong.unwrap_err()), "recipients.user_ids[1]");
        let missing = extract(json, r#"{"recipients": {}}"#).await;
        assert_eq!(field(missing.unwrap_err()), "recipients.user_ids");
        assert!(matches!(
            extract(json, r#"{"recipients": "#).await,
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            extract(json, r#"{"recipients": {"user_ids": []}} trailing"#).await,
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            extract("text/plain", "{}").await,
            Err(ApiError::UnsupportedMediaType)
        ));
        assert!(
            extract(
                "application/merge-patch+json",
                r#"{"recipients": {"user_ids": [1]}}"#
            )
            .await
            .is_ok()
        );
    }
}
