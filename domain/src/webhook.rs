//! Outbound webhooks: the events a tenant's endpoints can subscribe to, how an event is
//! identified, which destinations an endpoint may have, and the settings of their delivery.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What happened, as an endpoint subscribes to it and a payload's `type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum WebhookEventType {
    /// A request ended with every delivery final.
    RequestCompleted,
    /// A request was cancelled.
    RequestCancelled,
    /// A request failed as a whole (its audience could not be resolved, say).
    RequestFailed,
    /// A provider accepted a delivery, or it was written to the inbox.
    DeliveryDelivered,
    /// A delivery was rejected for good, or ran out of retries.
    DeliveryFailed,
    /// A delivery was not sent on purpose: no address, opted out, suppressed, unknown user.
    DeliverySuppressed,
    /// A failed delivery went on the dead-letter list, from where it can be re-driven.
    DeliveryDeadLettered,
    /// A provider said a push token is dead; it left the user's devices.
    TokenInvalidated,
}

impl WebhookEventType {
    /// Every event type, in the order the API lists them.
    pub const ALL: [Self; 8] = [
        Self::RequestCompleted,
        Self::RequestCancelled,
        Self::RequestFailed,
        Self::DeliveryDelivered,
        Self::DeliveryFailed,
        Self::DeliverySuppressed,
        Self::DeliveryDeadLettered,
        Self::TokenInvalidated,
    ];

    /// The wire name (`delivery.delivered`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestCompleted => "request.completed",
            Self::RequestCancelled => "request.cancelled",
            Self::RequestFailed => "request.failed",
            Self::DeliveryDelivered => "delivery.delivered",
            Self::DeliveryFailed => "delivery.failed",
            Self::DeliverySuppressed => "delivery.suppressed",
            Self::DeliveryDeadLettered => "delivery.dead_lettered",
            Self::TokenInvalidated => "token.invalidated",
        }
    }
}

impl fmt::Display for WebhookEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WebhookEventType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|t| t.as_str()).collect();
                format!("unknown event type '{s}'; known: {}", known.join(", "))
            })
    }
}

impl From<WebhookEventType> for String {
    fn from(t: WebhookEventType) -> Self {
        t.as_str().to_owned()
    }
}

impl TryFrom<String> for WebhookEventType {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The id of an event (`evt_` and 32 hex digits), derived from what happened (`parts`: the
/// event type, then what identifies the fact, such as a delivery instance and its status). A
/// write repeated by a retry derives the same id, so the outbox keeps one copy, and receivers
/// use it as their idempotency key.
pub fn event_id(kind: WebhookEventType, parts: &[&str]) -> String {
    let mut all = Vec::with_capacity(parts.len() + 1);
    all.push(kind.as_str());
    all.extend_from_slice(parts);
    format!("evt_{}", &crate::ids::hash_parts(&all)[..32])
}

/// Why an address may not receive webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForbiddenDestination {
    /// `127.0.0.0/8`, `::1`.
    #[error("a loopback address")]
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`, `fc00::/7`, `100.64/10` (carrier-grade NAT).
    #[error("a private address")]
    Private,
    /// `169.254/16` (cloud metadata services live here), `fe80::/10`.
    #[error("a link-local address")]
    LinkLocal,
    /// `0.0.0.0`, `::`, multicast, broadcast and other addresses no endpoint has.
    #[error("an address that is not a unicast host")]
    NotUnicast,
}

/// Whether `ip` may receive webhooks without the operator's leave: public unicast addresses
/// only, so a tenant cannot make the platform call into its own network (SSRF). An IPv4 address
/// inside IPv6 (`::ffff:10.0.0.1`) is judged as the IPv4 address it is.
pub fn check_destination(ip: IpAddr) -> Result<(), ForbiddenDestination> {
    match ip {
        IpAddr::V4(v4) => check_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => check_v4(v4),
            None => check_v6(v6),
        },
    }
}

fn check_v4(ip: Ipv4Addr) -> Result<(), ForbiddenDestination> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Err(ForbiddenDestination::Loopback)
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Err(ForbiddenDestination::Private)
    } else if ip.is_link_local() {
        Err(ForbiddenDestination::LinkLocal)
    } else if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || a == 0 || a >= 240 {
        Err(ForbiddenDestination::NotUnicast)
    } else {
        Ok(())
    }
}

fn check_v6(ip: Ipv6Addr) -> Result<(), ForbiddenDestination> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Err(ForbiddenDestination::Loopback)
    } else if first & 0xfe00 == 0xfc00 {
        Err(ForbiddenDestination::Private)
    } else if first & 0xffc0 == 0xfe80 {
        Err(ForbiddenDestination::LinkLocal)
    } else if ip.is_unspecified() || ip.is_multicast() {
        Err(ForbiddenDestination::NotUnicast)
    } else {
        Ok(())
    }
}

/// How webhooks are delivered (`FANOUT_WEBHOOKS__*`), read by the API (which checks the
/// destinations endpoints are registered with) and the worker (which delivers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhooksConfig {
    /// Whether this process delivers webhooks (workers only; any number may).
    pub deliver: bool,
    /// `host:port` destinations allowed even though they are loopback or private (the
    /// sandbox's receiver in development). Everything else must be a public address.
    pub allowed_private: Vec<String>,
    /// Events one HTTP call carries at most.
    pub batch_size: u32,
    /// How long a partial batch waits for more events before it is sent, in milliseconds:
    /// until no event has been added to it for this long.
    pub batch_wait_ms: u64,
    /// How often the outbox is looked at for due events, in milliseconds.
    pub poll_ms: u64,
    /// A call's time limit, in milliseconds; a slower answer is a failure.
    pub timeout_ms: u64,
    /// The longest wait before retrying a failing endpoint, in seconds (full jitter below it).
    pub max_backoff_seconds: u64,
    /// An endpoint failing without a success for this long is disabled, in seconds.
    pub disable_after_seconds: u64,
    /// How long a rotated-out secret still signs (beside the new one), in seconds.
    pub rotation_grace_seconds: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            deliver: true,
            allowed_private: Vec::new(),
            batch_size: 100,
            batch_wait_ms: 1_000,
            poll_ms: 250,
            timeout_ms: 10_000,
            max_backoff_seconds: 3_600,
            disable_after_seconds: 86_400,
            rotation_grace_seconds: 86_400,
        }
    }
}

impl WebhooksConfig {
    /// The most events one call may carry, whatever is configured.
    pub const MAX_BATCH: u32 = 1_000;

    /// Whether the operator allowed `host:port` though it is not a public address.
    pub fn allows_private(&self, host: &str, port: u16) -> bool {
        let wanted = format!(
            "{}:{port}",
            host.trim_start_matches('[').trim_end_matches(']')
        );
        self.allowed_private.iter().any(|allowed| {
            allowed
                .trim()
                .trim_start_matches('[')
                .replace("]:", ":")
                .eq_ignore_ascii_case(&wanted)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip_their_wire_names() {
        for t in WebhookEventType::ALL {
            assert_eq!(t.as_str().parse::<WebhookEventType>(), Ok(t));
        }
        let err = "delivery.bounced".parse::<WebhookEventType>().unwrap_err();
        assert!(err.contains("delivery.delivered"), "{err}");
    }

    #[test]
    fn event_ids_follow_the_fact_not_the_call() {
        let a = event_id(WebhookEventType::DeliveryDelivered, &["in_1", "delivered"]);
        assert_eq!(
            a,
            event_id(WebhookEventType::DeliveryDelivered, &["in_1", "delivered"])
        );
        assert_ne!(
            a,
            event_id(WebhookEventType::DeliveryFailed, &["in_1", "delivered"])
        );
        assert_ne!(
            a,
            event_id(WebhookEventType::DeliveryDelivered, &["in_2", "delivered"])
        );
        assert!(a.starts_with("evt_") && a.len() == 36, "{a}");
    }

    #[test]
    fn only_public_unicast_addresses_pass() {
        let judge = |s: &str| check_destination(s.parse().unwrap());
        assert_eq!(judge("93.184.216.34"), Ok(()));
        assert_eq!(judge("2606:2800:220:1::1"), Ok(()));
        assert_eq!(judge("127.0.0.1"), Err(ForbiddenDestination::Loopback));
        assert_eq!(judge("::1"), Err(ForbiddenDestination::Loopback));
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "fd00::1",
        ] {
            assert_eq!(
                judge(private),
                Err(ForbiddenDestination::Private),
                "{private}"
            );
        }
        assert_eq!(
            judge("169.254.169.254"),
            Err(ForbiddenDestination::LinkLocal)
        );
        assert_eq!(judge("fe80::1"), Err(ForbiddenDestination::LinkLocal));
        assert_eq!(judge("::ffff:10.0.0.1"), Err(ForbiddenDestination::Private));
        for odd in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "240.0.0.1"] {
            assert_eq!(judge(odd), Err(ForbiddenDestination::NotUnicast), "{odd}");
        }
    }

    #[test]
    fn private_destinations_are_allowed_by_host_and_port_only() {
        let config = WebhooksConfig {
            allowed_private: vec!["127.0.0.1:8025".into(), "[::1]:9000".into()],
            ..WebhooksConfig::default()
        };
        assert!(config.allows_private("127.0.0.1", 8025));
        assert!(!config.allows_private("127.0.0.1", 8026));
        assert!(config.allows_private("[::1]", 9000));
        assert!(config.allows_private("::1", 9000));
        assert!(!WebhooksConfig::default().allows_private("127.0.0.1", 8025));
    }
}
