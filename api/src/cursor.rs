//! Opaque pagination cursors: the position of the last item a page returned, base64url-encoded
//! so that clients pass it back unchanged instead of building one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ApiError;

/// Encodes a position.
pub fn encode(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position)
}

/// Decodes a cursor [`encode`] made and parses the position with `parse`; anything else is a
/// 422 on `cursor`.
pub fn decode<T>(cursor: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| parse(&text))
        .ok_or_else(|| {
            ApiError::field(
                "cursor",
                "cursor is not one this API returned; pass next_cursor unchanged",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_foreign_cursors_are_422() {
        let cursor = encode("17:in_abc");
        let parsed = decode(&cursor, |t| {
            t.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned()))
        });
        assert_eq!(parsed.unwrap(), ("17".to_owned(), "in_abc".to_owned()));
        for bad in ["%%%", &encode("no separator")] {
            let err = decode(bad, |t| t.split_once(':').map(|_| ())).unwrap_err();
            assert!(matches!(err, ApiError::InvalidField { ref field, .. } if field == "cursor"));
        }
    }
}
