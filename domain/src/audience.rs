//! Stored audiences: segments, named sets of users that a request can target as a whole (see
//! [`RecipientsQuery::Segment`](crate::request::RecipientsQuery::Segment)). Followers need no
//! type of their own: they are a relation between two [`UserId`](crate::UserId)s.

use serde::{Deserialize, Serialize};

use crate::ids::InvalidId;
use crate::{SegmentId, UnixMillis};

/// The longest segment name, in bytes.
pub const MAX_SEGMENT_NAME: usize = 200;

/// A segment as the store describes it: its name and how many members it has now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Segment {
    /// The tenant's id for the segment.
    pub segment_id: SegmentId,
    /// A human-readable name.
    pub name: String,
    /// How many users are members.
    pub members: u64,
    /// When the segment or its membership last changed.
    #[schema(value_type = i64)]
    pub updated_at_ms: UnixMillis,
}

impl Segment {
    /// Checks a segment name: 1 to [`MAX_SEGMENT_NAME`] bytes, no control characters.
    pub fn check_name(name: &str) -> Result<(), InvalidId> {
        let bad = |reason: String| InvalidId {
            field: "name",
            reason,
        };
        if name.trim().is_empty() || name.len() > MAX_SEGMENT_NAME {
            return Err(bad(format!(
                "must be between 1 and {MAX_SEGMENT_NAME} bytes and not blank"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(bad("must not contain control characters".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_are_short_printable_text() {
        assert!(Segment::check_name("Beta testers (EU)").is_ok());
        for bad in ["", "  ", "a\tb", &"n".repeat(MAX_SEGMENT_NAME + 1)] {
            assert_eq!(
                Segment::check_name(bad).unwrap_err().field,
                "name",
                "{bad:?}"
            );
        }
    }
}
