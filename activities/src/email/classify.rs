//! How the relay's replies (and a connection that could not be had) become [`SendOutcome`]s:
//! a permanent (5xx) reply is final, anything else is worth retrying.

use super::pool::ConnectError;
use crate::outcome::SendOutcome;

impl ConnectError {
    pub(super) fn outcome(self) -> SendOutcome {
        match self {
            Self::Smtp(e) => classify(&e),
            Self::Io(e) => SendOutcome::transient("smtp_connection", e.to_string()),
            Self::Tls(e) => SendOutcome::transient("smtp_tls", e.to_string()),
            // Transient: a relay that usually offers it may be misbehaving, or someone on the
            // path stripped it; either way the message waits rather than going out in clear.
            Self::StartTlsUnavailable => SendOutcome::transient(
                "smtp_starttls_unavailable",
                "the relay does not offer starttls, which is required",
            ),
            Self::AuthUnavailable => SendOutcome::transient(
                "smtp_auth_unavailable",
                "the relay offers no supported auth mechanism (plain, login)",
            ),
            Self::Timeout => timed_out("connecting to the relay timed out"),
        }
    }
}

/// Picks the relay's queue id out of a "250 ... queued as X" reply.
pub(super) fn queue_id<'a>(lines: impl Iterator<Item = &'a str>) -> Option<String> {
    lines
        .filter_map(|l| l.split_once("queued as "))
        .map(|(_, id)| id.trim().to_owned())
        .find(|id| !id.is_empty())
}

pub(super) fn timed_out(message: &str) -> SendOutcome {
    SendOutcome::transient("smtp_timeout", message)
}

pub(super) fn classify(e: &lettre::transport::smtp::Error) -> SendOutcome {
    let code = e
        .status()
        .map_or_else(|| "smtp_connection".to_owned(), |c| format!("smtp_{c}"));
    let message = e.to_string();
    if e.is_permanent() {
        SendOutcome::Permanent { code, message }
    } else {
        SendOutcome::transient(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids_are_read_from_replies() {
        assert_eq!(queue_id(["OK queued as 42"].into_iter()), Some("42".into()));
        assert_eq!(queue_id(["OK"].into_iter()), None);
    }
}
