//! `messages:send`: authenticating, validating a message like FCM does, and Google's error
//! bodies.
//!
//! Validation follows FCM HTTP v1's `Message` resource: unknown fields, values of the wrong
//! type, non-string `data` values, reserved `data` keys, a bad Android priority or TTL, and a
//! missing or malformed token are `400 INVALID_ARGUMENT`, with a `BadRequest` detail naming
//! the field. Only token targets are supported; `topic` and `condition` are refused.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::fcm::fault::FcmErrorCode;

/// Largest `data` plus notification text FCM accepts, in bytes.
const MAX_PAYLOAD_BYTES: usize = 4096;

/// Longest Android TTL FCM accepts: 28 days.
const MAX_TTL_S: u64 = 28 * 24 * 60 * 60;

/// Longest registration token the sandbox takes (real ones are about 160 bytes).
const MAX_TOKEN_LEN: usize = 4096;

/// `data` keys FCM keeps for itself.
const RESERVED_KEYS: [&str; 3] = ["from", "notification", "message_type"];

/// `data` key prefixes FCM keeps for itself.
const RESERVED_PREFIXES: [&str; 2] = ["google", "gcm"];

/// Body of `messages:send`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendRequest {
    message: Option<Message>,
    #[serde(default)]
    pub validate_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
// Fields never read are parsed to check their shape.
#[allow(dead_code)]
struct Message {
    name: Option<String>,
    token: Option<String>,
    topic: Option<String>,
    condition: Option<String>,
    notification: Option<Notification>,
    data: Option<Map<String, Value>>,
    android: Option<AndroidConfig>,
    apns: Option<ApnsConfig>,
    webpush: Option<Map<String, Value>>,
    fcm_options: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
// Fields never read are parsed to check their shape.
#[allow(dead_code)]
struct Notification {
    title: Option<String>,
    body: Option<String>,
    image: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
// Fields never read are parsed to check their shape.
#[allow(dead_code)]
struct AndroidConfig {
    collapse_key: Option<String>,
    priority: Option<String>,
    ttl: Option<String>,
    restricted_package_name: Option<String>,
    data: Option<Map<String, Value>>,
    notification: Option<Map<String, Value>>,
    fcm_options: Option<Map<String, Value>>,
    direct_boot_ok: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
// Fields never read are parsed to check their shape.
#[allow(dead_code)]
struct ApnsConfig {
    headers: Option<Map<String, Value>>,
    payload: Option<Map<String, Value>>,
    fcm_options: Option<Map<String, Value>>,
    live_activity_token: Option<String>,
}

/// A request refused with a Google error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GoogleError {
    pub status: StatusCode,
    pub message: String,
    /// The `errorCode` of an `FcmError` detail.
    pub fcm_code: Option<&'static str>,
    /// The field a `BadRequest` detail names.
    pub field: Option<String>,
    pub retry_after_s: Option<u64>,
}

impl GoogleError {
    /// `400 INVALID_ARGUMENT` about `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
            fcm_code: Some(FcmErrorCode::InvalidArgument.as_str()),
            field: Some(field.into()),
            retry_after_s: None,
        }
    }

    /// `400 INVALID_ARGUMENT` for a body that is not a `SendMessageRequest`.
    pub fn payload(error: serde_json::Error) -> Self {
        Self {
            field: None,
            ..Self::invalid("", format!("Invalid JSON payload received. {error}"))
        }
    }

    /// A request without a valid access token.
    pub fn unauthenticated() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: "Request had invalid authentication credentials. Expected an OAuth 2 \
                      access token from the token endpoint."
                .to_owned(),
            fcm_code: None,
            field: None,
            retry_after_s: None,
        }
    }

    /// A project the caller's service account cannot send for.
    pub fn permission_denied(project: &str) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "Permission 'cloudmessaging.messages.create' denied on project '{project}' \
                 (or it may not exist)"
            ),
            fcm_code: None,
            field: None,
            retry_after_s: None,
        }
    }

    /// The answer of an injected fault.
    pub fn fault(code: FcmErrorCode, retry_after_s: Option<u64>) -> Self {
        Self {
            status: code.status(),
            message: code.message().to_owned(),
            fcm_code: Some(code.as_str()),
            field: (code == FcmErrorCode::InvalidArgument).then(|| "message.token".to_owned()),
            retry_after_s,
        }
    }
}

/// The canonical `status` string Google gives with an HTTP status.
fn canonical_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

impl IntoResponse for GoogleError {
    fn into_response(self) -> Response {
        let mut details = Vec::new();
        if let Some(code) = self.fcm_code {
            details.push(json!({
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": code,
            }));
        }
        if let Some(field) = &self.field {
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{ "field": field, "description": self.message }],
            }));
        }
        let mut error = json!({
            "code": self.status.as_u16(),
            "message": self.message,
            "status": canonical_status(self.status),
        });
        if !details.is_empty() {
            error["details"] = Value::Array(details);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED && self.fcm_code.is_none() {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
            );
        }
        response
    }
}

/// A message that passed validation.
#[derive(Debug)]
pub(crate) struct Valid {
    pub token: String,
    /// The `message` object as sent.
    pub message: Value,
    pub validate_only: bool,
}

/// Parses and validates a `messages:send` body.
pub(crate) fn validate(body: &[u8]) -> Result<Valid, GoogleError> {
    let raw: Value = serde_json::from_slice(body).map_err(GoogleError::payload)?;
    let request: SendRequest = serde_json::from_value(raw.clone()).map_err(GoogleError::payload)?;
    let Some(message) = request.message else {
        return Err(GoogleError::invalid("message", "message is required"));
    };
    if message.topic.is_some() || message.condition.is_some() {
        return Err(GoogleError::invalid(
            "message",
            "the sandbox delivers to registration tokens only, not to a topic or condition",
        ));
    }
    let token = message.token.unwrap_or_default();
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || token.chars().any(char::is_whitespace) {
        return Err(GoogleError::fault(FcmErrorCode::InvalidArgument, None));
    }
    let mut payload_bytes = 0;
    if let Some(data) = &message.data {
        payload_bytes += check_data("message.data", data)?;
    }
    if let Some(notification) = &message.notification {
        payload_bytes += notification.title.as_deref().map_or(0, str::len);
        payload_bytes += notification.body.as_deref().map_or(0, str::len);
    }
    if payload_bytes > MAX_PAYLOAD_BYTES {
        return Err(GoogleError::invalid(
            "message",
            format!(
                "Message is too big: {payload_bytes} bytes of data and notification, at most {MAX_PAYLOAD_BYTES}"
            ),
        ));
    }
    if let Some(android) = &message.android {
        check_android(android)?;
    }
    if let Some(apns) = &message.apns {
        check_apns(apns)?;
    }
    Ok(Valid {
        token,
        message: raw["message"].clone(),
        validate_only: request.validate_only,
    })
}

/// Checks that a data map holds strings under unreserved keys; returns its size in bytes.
fn check_data(field: &str, data: &Map<String, Value>) -> Result<usize, GoogleError> {
    let mut bytes = 0;
    for (key, value) in data {
        let lower = key.to_ascii_lowercase();
        if RESERVED_KEYS.contains(&lower.as_str())
            || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p))
        {
            return Err(GoogleError::invalid(
                format!("{field}[{key}]"),
                format!("Invalid data payload key: {key}"),
            ));
        }
        let Value::String(value) = value else {
            return Err(GoogleError::invalid(
                format!("{field}[{key}].value"),
                format!("Invalid value at '{field}[{key}].value' (TYPE_STRING), {value}"),
            ));
        };
        bytes += key.len() + value.len();
    }
    Ok(bytes)
}

fn check_android(android: &AndroidConfig) -> Result<(), GoogleError> {
    if let Some(priority) = &android.priority
        && priority != "HIGH"
        && priority != "NORMAL"
    {
        return Err(GoogleError::invalid(
            "message.android.priority",
            format!(
                "Invalid value at 'message.android.priority' \
                 (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), \"{priority}\""
            ),
        ));
    }
    if let Some(ttl) = &android.ttl {
        match parse_duration_s(ttl) {
            Some(seconds) if seconds <= MAX_TTL_S as f64 => {}
            Some(_) => {
                return Err(GoogleError::invalid(
                    "message.android.ttl",
                    format!("message.android.ttl must be at most {MAX_TTL_S}s"),
                ));
            }
            None => {
                return Err(GoogleError::invalid(
                    "message.android.ttl",
                    format!(
                        "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), \"{ttl}\""
                    ),
                ));
            }
        }
    }
    if let Some(data) = &android.data {
        check_data("message.android.data", data)?;
    }
    Ok(())
}

fn check_apns(apns: &ApnsConfig) -> Result<(), GoogleError> {
    for (name, value) in apns.headers.iter().flatten() {
        if !value.is_string() {
            return Err(GoogleError::invalid(
                format!("message.apns.headers[{name}].value"),
                format!(
                    "Invalid value at 'message.apns.headers[{name}].value' (TYPE_STRING), {value}"
                ),
            ));
        }
    }
    Ok(())
}

/// Parses a protobuf JSON duration, such as `3.5s` or `86400s`, into seconds.
fn parse_duration_s(text: &str) -> Option<f64> {
    let number = text.strip_suffix('s')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 {
        return None;
    }
    if number.ends_with('.') {
        return None;
    }
    number.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(message: Value) -> Result<Valid, GoogleError> {
        validate(json!({ "message": message }).to_string().as_bytes())
    }

    fn refused_field(message: Value) -> String {
        let error = check(message).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST, "{error:?}");
        error.field.unwrap_or_default()
    }

    #[test]
    fn accepts_a_full_message() {
        let valid = check(json!({
            "token": "tok-1",
            "notification": { "title": "Hi", "body": "There" },
            "data": { "k": "v" },
            "android": { "priority": "HIGH", "ttl": "3.5s", "collapse_key": "c" },
            "apns": { "headers": { "apns-priority": "10" }, "payload": { "aps": {} } },
        }))
        .unwrap();
        assert_eq!(valid.token, "tok-1");
        assert_eq!(valid.message["data"]["k"], "v");
        assert!(!valid.validate_only);
    }

    #[test]
    fn refuses_what_fcm_refuses() {
        let refused = [
            (
                json!({ "token": "t", "data": { "n": 1 } }),
                "message.data[n].value",
            ),
            (
                json!({ "token": "t", "data": { "from": "x" } }),
                "message.data[from]",
            ),
            (
                json!({ "token": "t", "data": { "google.x": "x" } }),
                "message.data[google.x]",
            ),
            (
                json!({ "token": "t", "android": { "priority": "high" } }),
                "message.android.priority",
            ),
            (
                json!({ "token": "t", "android": { "ttl": "10" } }),
                "message.android.ttl",
            ),
            (
                json!({ "token": "t", "android": { "ttl": "2419201s" } }),
                "message.android.ttl",
            ),
            (
                json!({ "token": "t", "apns": { "headers": { "apns-priority": 10 } } }),
                "message.apns.headers[apns-priority].value",
            ),
            (json!({ "notification": {} }), "message.token"),
            (json!({ "token": "a b" }), "message.token"),
            (json!({ "topic": "news" }), "message"),
            (
                json!({ "token": "t", "data": { "big": "x".repeat(4097) } }),
                "message",
            ),
            // Unknown fields and wrong types are refused as an invalid payload.
            (json!({ "token": "t", "colour": "red" }), ""),
            (json!({ "token": "t", "notification": { "title": 5 } }), ""),
        ];
        for (message, field) in refused {
            assert_eq!(refused_field(message.clone()), field, "{message}");
        }
        assert!(validate(b"{").is_err());
        assert_eq!(
            validate(b"{}").unwrap_err().field.as_deref(),
            Some("message")
        );
    }

    #[test]
    fn parses_protobuf_durations() {
        assert_eq!(parse_duration_s("3.5s"), Some(3.5));
        assert_eq!(parse_duration_s("0s"), Some(0.0));
        assert_eq!(parse_duration_s("86400s"), Some(86400.0));
        for bad in ["", "s", "3", "-1s", "1.s", ".5s", "1.0000000001s", "1e3s"] {
            assert_eq!(parse_duration_s(bad), None, "{bad}");
        }
    }
}
