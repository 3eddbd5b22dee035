//! How a request to the sandbox's own API fails: one error type, mapped to a status code and an
//! [`ErrorResponse`] body in one place. The simulated providers' protocol routes answer in their
//! provider's shapes instead (see `fcm::send` and `fcm::oauth`).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::apns::CredentialsError;

/// Body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong, in lowercase prose.
    pub error: String,
}

/// Every way a request to the sandbox's API can fail.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// `404`: the named thing (`email`, `fault`, `route`, ...) does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// `422`: the fault rule asked for is invalid.
    #[error(transparent)]
    InvalidFault(Box<dyn std::error::Error + Send + Sync>),
    /// `500`: the APNs credentials could not be made.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// A refusal with a status of its own, such as a malformed path, query or body.
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
}

/// What a handler of the sandbox's API returns.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn invalid_fault(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::InvalidFault(Box::new(error))
    }

    pub fn rejected(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Rejected {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::InvalidFault(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Credentials(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Rejected { status, .. } => *status,
        };
        let body = ErrorResponse {
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

macro_rules! from_rejection {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for ApiError {
            fn from(rejection: $rejection) -> Self {
                Self::rejected(rejection.status(), rejection.body_text())
            }
        }
    )*};
}

from_rejection!(JsonRejection, PathRejection, QueryRejection);
