//! What the push providers' HTTP answers have in common, whoever gave them: the `Retry-After`
//! header, which statuses are worth retrying, and a request that got no answer at all.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::outcome::SendOutcome;

/// Reads `Retry-After` given in seconds (the form APNs and FCM use).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse().ok().map(Duration::from_secs)
}

/// Whether a refusal with this status is worth retrying: throttled (429) or the provider's
/// own trouble (5xx).
pub(crate) fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// A request that got no HTTP answer (it timed out, or the connection failed): always worth
/// retrying, coded `{provider}_timeout` or `{provider}_connection`.
pub(crate) fn unanswered(provider: &str, error: &reqwest::Error, message: String) -> SendOutcome {
    let kind = if error.is_timeout() {
        "timeout"
    } else {
        "connection"
    };
    SendOutcome::transient(format!("{provider}_{kind}"), message)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        // The HTTP-date form is not one the providers send.
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn throttling_and_server_errors_are_retryable() {
        for status in [429, 500, 503] {
            assert!(retryable(StatusCode::from_u16(status).unwrap()), "{status}");
        }
        for status in [200, 400, 403, 410] {
            assert!(
                !retryable(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
    }
}
