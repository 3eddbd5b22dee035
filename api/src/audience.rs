//! What the follower and segment endpoints share: lists of user ids in request bodies, and
//! pages of user ids behind an opaque cursor.

use fanout_domain::UserId;
use fanout_domain::ids::InvalidId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::cursor;
use crate::error::ApiError;

/// The most user ids one call may add.
pub const MAX_IDS_PER_CALL: usize = 10_000;

/// The most ids one page lists.
pub const MAX_PAGE: u32 = 1000;

/// How many ids a page lists when the caller does not say.
const DEFAULT_PAGE: u32 = 100;

/// Parses a body's list of 1 to [`MAX_IDS_PER_CALL`] user ids into a sorted, deduplicated
/// list; errors name `field` and the index of the offending id.
pub(crate) fn parse_user_ids(field: &'static str, raw: &[String]) -> Result<Vec<UserId>, ApiError> {
    let invalid = |reason: String| ApiError::from(InvalidId { field, reason });
    if raw.is_empty() {
        return Err(invalid("must list at least one user".into()));
    }
    if raw.len() > MAX_IDS_PER_CALL {
        return Err(invalid(format!(
            "must list at most {MAX_IDS_PER_CALL} users per call"
        )));
    }
    let mut ids = raw
        .iter()
        .enumerate()
        .map(|(i, id)| UserId::parse(id).map_err(|e| invalid(format!("[{i}]: {}", e.reason))))
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// How many ids were new.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Added {
    /// Ids that were not there before; repeating a call adds 0.
    pub added: u64,
}

/// `?cursor=&limit=` of a listing of user ids.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
    /// Page size.
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000, default = 100)] // MAX_PAGE, DEFAULT_PAGE
    limit: Option<u32>,
}

impl PageQuery {
    /// Returns the id to list after and the page size, or a 422 naming `cursor` or `limit`.
    pub(crate) fn parse(&self) -> Result<(Option<UserId>, u32), ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::InvalidField {
                field: "limit".into(),
                message: format!("limit must be between 1 and {MAX_PAGE}"),
            });
        }
        let after = self.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok((after, limit))
    }
}

/// The cursor of the page after `page`, or `None` when `page` was the last.
pub(crate) fn next_cursor(page: &[UserId], limit: u32) -> Option<String> {
    // A short page is the last one; a full page may or may not be.
    if page.len() < limit as usize {
        return None;
    }
    page.last().map(|id| cursor::encode(id.as_str()))
}

fn decode_cursor(raw: &str) -> Result<UserId, ApiError> {
    cursor::decode(raw, |text| UserId::parse(text).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_short_pages_have_none() {
        let page = vec![
            UserId::parse("a").unwrap(),
            UserId::parse("user:ü 2").unwrap(),
        ];
        let cursor = next_cursor(&page, 2).unwrap();
        let query = PageQuery {
            cursor: Some(cursor),
            limit: None,
        };
        assert_eq!(
            query.parse().unwrap(),
            (Some(page[1].clone()), DEFAULT_PAGE)
        );
        assert_eq!(next_cursor(&page, 3), None);
        assert_eq!(next_cursor(&[], 1), None);
    }
}
