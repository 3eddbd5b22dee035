//! What one provider call came to, classified for retries, invalidation and receipts.
//!
//! Every channel adapter (email, APNs, FCM) answers with a [`SendOutcome`]; the delivery loop
//! turns it into a receipt and decides whether the instance is retried.

use std::time::Duration;

/// The outcome of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The provider took the message; carries its id for it (or ours when it gives none).
    Accepted {
        /// The provider's id for the message.
        provider_message_id: String,
    },
    /// The provider refused the message for good (SMTP 5xx, a payload it cannot take).
    Permanent {
        /// Stable code, e.g. `smtp_550` or `apns_PayloadTooLarge`.
        code: String,
        /// The provider's words.
        message: String,
    },
    /// The address itself is dead (APNs 410 Unregistered or 400 BadDeviceToken, FCM
    /// UNREGISTERED): permanent, and the address must never be used again.
    InvalidAddress {
        /// Stable code, e.g. `apns_Unregistered` or `fcm_UNREGISTERED`.
        code: String,
        /// The provider's words.
        message: String,
    },
    /// Worth retrying (SMTP 4xx, 429, 5xx, connection trouble, timeouts).
    Transient {
        /// Stable code, e.g. `smtp_451`, `apns_TooManyRequests` or `fcm_UNAVAILABLE`.
        code: String,
        /// What happened.
        message: String,
        /// How long the provider asked us to wait (`Retry-After`), if it said.
        retry_after: Option<Duration>,
    },
}

impl SendOutcome {
    /// A transient failure without a provider-given delay.
    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Transient {
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent failure.
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Permanent {
            code: code.into(),
            message: message.into(),
        }
    }
}
