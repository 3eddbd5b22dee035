//! How an APNs answer becomes a [`SendOutcome`]: a dead token, worth retrying, or refused for
//! good, with refusals of the operator's own credentials told to tenants generically.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use crate::credentials::operator_failure;
use crate::outcome::SendOutcome;
use crate::push::answer::{retryable, unanswered};

/// What APNs answered to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) apns_id: Option<String>,
    pub(super) reason: Option<String>,
    /// Milliseconds since the epoch at which a 410 token stopped being valid.
    pub(super) timestamp: Option<u64>,
    pub(super) retry_after: Option<Duration>,
}

/// The JSON body APNs sends with a refusal.
#[derive(Deserialize)]
pub(super) struct ErrorBody {
    pub(super) reason: Option<String>,
    pub(super) timestamp: Option<u64>,
}

/// Classifies an APNs answer.
pub(super) fn classify(answer: &Answer) -> SendOutcome {
    let status = answer.status;
    if status.is_success() {
        return SendOutcome::Accepted {
            provider_message_id: answer.apns_id.clone().unwrap_or_default(),
        };
    }
    let code = match &answer.reason {
        Some(reason) => format!("apns_{reason}"),
        None => format!("apns_{}", status.as_u16()),
    };
    let mut message = format!(
        "apns answered {} {}",
        status.as_u16(),
        answer.reason.as_deref().unwrap_or("without a reason")
    );
    if let Some(timestamp) = answer.timestamp {
        message.push_str(&format!(" (token invalid since {timestamp} ms)"));
    }
    let dead_token = status == StatusCode::GONE
        || (status == StatusCode::BAD_REQUEST
            && matches!(
                answer.reason.as_deref(),
                Some("BadDeviceToken" | "DeviceTokenNotForTopic")
            ));
    if dead_token {
        SendOutcome::InvalidAddress { code, message }
    } else if retryable(status) {
        SendOutcome::Transient {
            code,
            message,
            retry_after: answer.retry_after,
        }
    } else if status.is_client_error() {
        SendOutcome::Permanent { code, message }
    } else {
        // Informational or redirect answers are not part of the protocol: try again later.
        SendOutcome::transient(code, message)
    }
}

/// APNs refusals of the operator's credentials (the provider token, the certificate), told to
/// tenants generically (see [`operator_failure`]); other outcomes pass through.
pub(super) fn operator_side(outcome: SendOutcome) -> SendOutcome {
    match &outcome {
        SendOutcome::Permanent { code, message }
            if matches!(
                code.as_str(),
                "apns_InvalidProviderToken"
                    | "apns_ExpiredProviderToken"
                    | "apns_MissingProviderToken"
                    | "apns_BadCertificate"
                    | "apns_BadCertificateEnvironment"
            ) =>
        {
            operator_failure("APNs", &format!("{code}: {message}"), None)
        }
        _ => outcome,
    }
}

pub(super) fn request_failed(e: &reqwest::Error) -> SendOutcome {
    // The source chain says why (refused, reset, TLS), which the top-level text does not.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    unanswered("apns", e, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_status_and_reason() {
        let answer = |status: u16, reason: Option<&str>| Answer {
            status: StatusCode::from_u16(status).unwrap(),
            apns_id: Some("id".into()),
            reason: reason.map(str::to_owned),
            timestamp: None,
            retry_after: None,
        };
        let kind = |outcome: SendOutcome| match outcome {
            SendOutcome::Accepted { .. } => "accepted".to_owned(),
            SendOutcome::Permanent { code, .. } => format!("permanent {code}"),
            SendOutcome::InvalidAddress { code, .. } => format!("invalid {code}"),
            SendOutcome::Transient { code, .. } => format!("transient {code}"),
        };
        let cases = [
            (200, None, "accepted"),
            (410, Some("Unregistered"), "invalid apns_Unregistered"),
            (410, Some("ExpiredToken"), "invalid apns_ExpiredToken"),
            (400, Some("BadDeviceToken"), "invalid apns_BadDeviceToken"),
            (
                400,
                Some("DeviceTokenNotForTopic"),
                "invalid apns_DeviceTokenNotForTopic",
            ),
            (400, Some("BadCollapseId"), "permanent apns_BadCollapseId"),
            (
                400,
                Some("TopicDisallowed"),
                "permanent apns_TopicDisallowed",
            ),
            (
                403,
                Some("InvalidProviderToken"),
                "permanent apns_InvalidProviderToken",
            ),
            (
                413,
                Some("PayloadTooLarge"),
                "permanent apns_PayloadTooLarge",
            ),
            (
                429,
                Some("TooManyRequests"),
                "transient apns_TooManyRequests",
            ),
            (
                429,
                Some("TooManyProviderTokenUpdates"),
                "transient apns_TooManyProviderTokenUpdates",
            ),
            (
                500,
                Some("InternalServerError"),
                "transient apns_InternalServerError",
            ),
            (503, None, "transient apns_503"),
            (404, None, "permanent apns_404"),
        ];
        for (status, reason, expected) in cases {
            assert_eq!(
                kind(classify(&answer(status, reason))),
                expected,
                "{status} {reason:?}"
            );
        }
        let accepted = classify(&answer(200, None));
        assert_eq!(
            accepted,
            SendOutcome::Accepted {
                provider_message_id: "id".into()
            }
        );
        let gone = classify(&Answer {
            timestamp: Some(1234),
            ..answer(410, Some("Unregistered"))
        });
        let SendOutcome::InvalidAddress { message, .. } = gone else {
            panic!("{gone:?}")
        };
        assert_eq!(
            message,
            "apns answered 410 Unregistered (token invalid since 1234 ms)"
        );
    }
}
