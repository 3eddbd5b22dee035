//! A notification request once the API has parsed it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::InvalidId;
use crate::{Channel, DedupeKey, DigestId, SegmentId, TemplateId, TenantId, UserId};

/// The most explicit user ids one request may list. Larger audiences are followers or segments,
/// which are paged from the store instead of travelling in the request.
pub const MAX_EXPLICIT_RECIPIENTS: usize = 10_000;

/// The longest time-to-live a request may ask for: 30 days.
pub const MAX_TTL_SECONDS: u32 = 30 * 24 * 3600;

/// Who a request goes to.
///
/// It travels in workflow inputs, so its JSON is a stored schema: variants may be added, never
/// reshaped. Only [`RecipientsQuery::Users`] carries its members; the others name a set the store
/// holds, which is read in pages when the request runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RecipientsQuery {
    /// An explicit list of users, deduplicated and in a stable order.
    Users {
        /// The users, each at most once.
        user_ids: Vec<UserId>,
    },
    /// Everyone who follows a user, as the store knows it when the audience is resolved.
    Followers {
        /// The followed user.
        of: UserId,
    },
    /// The members of a stored segment, as of when the audience is resolved.
    Segment {
        /// The segment.
        segment_id: SegmentId,
    },
    /// Every user a closed digest's triggers were addressed to; only a digest's own request
    /// has it (the API never accepts it from a client).
    Digest {
        /// The digest.
        digest_id: DigestId,
    },
}

impl RecipientsQuery {
    /// Builds an explicit audience: duplicates are dropped, the order is made stable, and the
    /// size is checked against [`MAX_EXPLICIT_RECIPIENTS`].
    pub fn users(mut user_ids: Vec<UserId>) -> Result<Self, InvalidId> {
        user_ids.sort();
        user_ids.dedup();
        if user_ids.is_empty() {
            return Err(InvalidId {
                field: "recipients_query.user_ids",
                reason: "must list at least one user".into(),
            });
        }
        if user_ids.len() > MAX_EXPLICIT_RECIPIENTS {
            return Err(InvalidId {
                field: "recipients_query.user_ids",
                reason: format!("must list at most {MAX_EXPLICIT_RECIPIENTS} users"),
            });
        }
        Ok(Self::Users { user_ids })
    }
}

/// The largest explicit audience the API sends down the direct path by default: a request to
/// at most this many listed users runs in one workflow execution (see [`DeliveryPath`]). Two
/// hundred recipients over three channels are a few hundred provider calls, which one local
/// activity finishes in well under a second on the sandbox; above it the tree's paging and
/// sliding window pay for themselves.
pub const DIRECT_MAX_RECIPIENTS: usize = 200;

/// How a request's workflow delivers. Chosen by the API when it accepts the request and
/// recorded in the workflow input, so replay always takes the same path.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryPath {
    /// Resolution and pages as child workflows: any audience size. Inputs recorded before the
    /// path existed deserialize as this.
    #[default]
    Tree,
    /// Resolution and delivery inside the request's own workflow, in one local activity: a
    /// small explicit audience.
    Direct,
}

impl DeliveryPath {
    /// The path for an audience: direct for an explicit list of at most `max_direct` users.
    pub fn for_audience(recipients: &RecipientsQuery, max_direct: usize) -> Self {
        match recipients {
            RecipientsQuery::Users { user_ids } if user_ids.len() <= max_direct => Self::Direct,
            _ => Self::Tree,
        }
    }

    /// The name status reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tree => "tree",
            Self::Direct => "direct",
        }
    }
}

impl std::str::FromStr for DeliveryPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tree" => Ok(Self::Tree),
            "direct" => Ok(Self::Direct),
            other => Err(format!("unknown delivery path '{other}'")),
        }
    }
}

/// Operator controls of one running request. The workflow owns them (signals change them) and
/// writes them through to the store, where delivery activities read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestControls {
    /// Start no new pages and hold in-flight deliveries.
    #[serde(default)]
    pub paused: bool,
    /// Deliveries per second for the whole request; `None` is unlimited.
    #[serde(default)]
    pub rate_per_second: Option<u32>,
    /// The request was cancelled: deliver nothing more.
    #[serde(default)]
    pub cancelled: bool,
}

/// How urgent a request is; maps onto provider priorities (e.g. APNs 10 vs 5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Can wait behind other traffic.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Time-sensitive.
    High,
}

impl Priority {
    /// The name the API takes (`low`, `normal`, `high`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
        }
    }
}

/// A validated notification request. Built by the API from a request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationRequest {
    /// The tenant the request belongs to; scopes every other id.
    pub dedupe_key: DedupeKey,
    /// Who triggered it, if anyone (e.g. the commenter).
    pub actor_id: Option<UserId>,
    /// The template that renders every channel's content.
    pub template_id: TemplateId,
    /// The audience.
    pub recipients: RecipientsQuery,
    /// The channels to deliver over, deduplicated, never empty.
    pub channels: Vec<Channel>,
    /// Template variables.
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Urgency.
    pub priority: Priority,
    /// How long delivery stays worth attempting.
    pub ttl_seconds: Option<u32>,
    /// Free-form labels echoed back in status.
    pub metadata: BTreeMap<String, String>,
}

impl NotificationRequest {
    /// Returns the tenant, which the dedupe key carries.
    pub fn tenant_id(&self) -> &TenantId {
        self.dedupe_key.tenant_id()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn explicit_audiences_are_sorted_deduplicated_and_bounded() {
        let query = RecipientsQuery::users(vec![user("b"), user("a"), user("b")]).unwrap();
        assert_eq!(
            query,
            RecipientsQuery::Users {
                user_ids: vec![user("a"), user("b")]
            }
        );
        assert!(RecipientsQuery::users(Vec::new()).is_err());
        let too_many = (0..=MAX_EXPLICIT_RECIPIENTS)
            .map(|i| user(&format!("u{i}")))
            .collect();
        assert!(RecipientsQuery::users(too_many).is_err());
    }

    #[test]
    fn the_json_shape_of_every_kind_is_stable() {
        // Workflow histories hold these: a changed shape would break replay of running requests.
        let cases = [
            (
                RecipientsQuery::users(vec![user("u1")]).unwrap(),
                json!({"type": "users", "user_ids": ["u1"]}),
            ),
            (
                RecipientsQuery::Followers { of: user("u1") },
                json!({"type": "followers", "of": "u1"}),
            ),
            (
                RecipientsQuery::Segment {
                    segment_id: SegmentId::parse("s1").unwrap(),
                },
                json!({"type": "segment", "segment_id": "s1"}),
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(serde_json::to_value(&query).unwrap(), expected);
            assert_eq!(
                serde_json::from_value::<RecipientsQuery>(expected).unwrap(),
                query
            );
        }
        assert!(
            serde_json::from_value::<RecipientsQuery>(
                json!({"type": "segment", "segment_id": "not valid"})
            )
            .is_err()
        );
    }
}
