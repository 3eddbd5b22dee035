//! How an FCM answer becomes a [`SendOutcome`], by the `errorCode` in Google's error body.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::outcome::SendOutcome;
use crate::push::answer::{retryable, unanswered};

/// A request that got no HTTP answer: always worth retrying.
pub(super) fn request_failed(error: &reqwest::Error) -> SendOutcome {
    unanswered("fcm", error, error.to_string())
}

/// The parts of Google's error body that classify a failure.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ErrorBody {
    /// `errorCode` of the `FcmError` detail.
    pub(super) fcm_code: Option<String>,
    /// The canonical status, e.g. `NOT_FOUND`.
    pub(super) status: Option<String>,
    pub(super) message: String,
    /// Whether a `BadRequest` detail blames `message.token`.
    pub(super) about_token: bool,
}

impl ErrorBody {
    pub(super) fn parse(bytes: &[u8]) -> Self {
        let Ok(body) = serde_json::from_slice::<Value>(bytes) else {
            return Self {
                message: String::from_utf8_lossy(bytes).into_owned(),
                ..Self::default()
            };
        };
        let error = &body["error"];
        let details = error["details"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let fcm_code = details
            .iter()
            .filter(|detail| {
                detail["@type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("google.firebase.fcm.v1.FcmError"))
            })
            .find_map(|detail| detail["errorCode"].as_str())
            .map(str::to_owned);
        let about_token = details
            .iter()
            .filter_map(|detail| detail["fieldViolations"].as_array())
            .flatten()
            .any(|violation| violation["field"] == "message.token");
        Self {
            fcm_code,
            status: error["status"].as_str().map(str::to_owned),
            message: error["message"].as_str().unwrap_or_default().to_owned(),
            about_token,
        }
    }
}

/// Classifies a refused send.
pub(super) fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    error: &ErrorBody,
) -> SendOutcome {
    let name = error
        .fcm_code
        .clone()
        .or_else(|| error.status.clone())
        .unwrap_or_else(|| format!("HTTP_{}", status.as_u16()));
    let code = format!("fcm_{name}");
    let message = if error.message.is_empty() {
        status.to_string()
    } else {
        error.message.clone()
    };
    let invalid_address = match name.as_str() {
        "UNREGISTERED" | "SENDER_ID_MISMATCH" => true,
        "INVALID_ARGUMENT" => error.about_token,
        _ => false,
    };
    if invalid_address {
        return SendOutcome::InvalidAddress { code, message };
    }
    let transient =
        matches!(name.as_str(), "QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL") || retryable(status);
    if transient {
        SendOutcome::Transient {
            code,
            message,
            retry_after,
        }
    } else {
        SendOutcome::Permanent { code, message }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn google_error(status: &str, fcm_code: Option<&str>, field: Option<&str>) -> ErrorBody {
        let mut details = Vec::new();
        if let Some(code) = fcm_code {
            details.push(json!({
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": code,
            }));
        }
        if let Some(field) = field {
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{ "field": field, "description": "bad" }],
            }));
        }
        let body = json!({ "error": {
                "code": 400, "message": "words", "status": status, "details": details,
            } });
        ErrorBody::parse(body.to_string().as_bytes())
    }

    #[test]
    fn invalid_argument_blames_the_address_only_when_about_the_token() {
        let token = google_error(
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            Some("message.token"),
        );
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None, &token),
            SendOutcome::InvalidAddress { code, .. } if code == "fcm_INVALID_ARGUMENT"
        ));
        let payload = google_error(
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            Some("message.data[from]"),
        );
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, None, &payload),
            SendOutcome::permanent("fcm_INVALID_ARGUMENT", "words")
        );
    }

    #[test]
    fn falls_back_to_the_status_then_the_http_code() {
        let denied = google_error("PERMISSION_DENIED", None, None);
        assert_eq!(
            classify(StatusCode::FORBIDDEN, None, &denied),
            SendOutcome::permanent("fcm_PERMISSION_DENIED", "words")
        );
        let gateway = ErrorBody::parse(b"<html>bad gateway</html>");
        assert_eq!(
            classify(
                StatusCode::BAD_GATEWAY,
                Some(Duration::from_secs(3)),
                &gateway
            ),
            SendOutcome::Transient {
                code: "fcm_HTTP_502".into(),
                message: "<html>bad gateway</html>".into(),
                retry_after: Some(Duration::from_secs(3)),
            }
        );
    }
}
