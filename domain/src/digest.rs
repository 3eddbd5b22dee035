//! Digests: a template that declares [`DigestSpec`] does not deliver each trigger by itself.
//!
//! Triggers of the same tenant, template and key value (the trigger's `data.<key>`, when the
//! spec names a key) that arrive while a digest is open are collected into it; when its window
//! ends the digest closes into one request, and each recipient gets one notification whose
//! render context carries `digest.items` (the `data` of every collected trigger addressed to
//! them, newest first, at most `max_items`) and `digest.count` (all of them, uncapped).

use serde::{Deserialize, Serialize};

/// The shortest digest window, in seconds.
pub const MIN_DIGEST_WINDOW_SECONDS: u32 = 1;
/// The longest digest window, in seconds: a day.
pub const MAX_DIGEST_WINDOW_SECONDS: u32 = 24 * 3600;
/// The fewest items a digest may render.
pub const MIN_DIGEST_ITEMS: u32 = 1;
/// The most items a digest renders per recipient (`digest.count` still counts every trigger).
pub const MAX_DIGEST_ITEMS: u32 = 100;
/// The items a digest renders when its spec does not say.
pub const DEFAULT_DIGEST_ITEMS: u32 = 20;
/// The longest key name (a top-level field of the trigger's `data`).
pub const MAX_DIGEST_KEY_BYTES: usize = 128;
/// The longest key value a digest is grouped by; a longer `data.<key>` is refused.
pub const MAX_DIGEST_KEY_VALUE_BYTES: usize = 256;

/// How a template's triggers are collected into digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DigestSpec {
    /// How long a digest stays open after its first trigger, in seconds (1 to 86400).
    #[schema(minimum = 1, maximum = 86400)] // MIN/MAX_DIGEST_WINDOW_SECONDS
    pub window_seconds: u32,
    /// A top-level field of the trigger's `data` whose value separates digests (e.g.
    /// `post_id`: one digest per post). Without it every trigger of the template shares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)] // MAX_DIGEST_KEY_BYTES
    pub key: Option<String>,
    /// The most items rendered per recipient (1 to 100, default 20).
    #[serde(default = "default_items")]
    #[schema(minimum = 1, maximum = 100, default = 20)] // MIN/MAX_DIGEST_ITEMS
    pub max_items: u32,
}

fn default_items() -> u32 {
    DEFAULT_DIGEST_ITEMS
}

/// A field of a [`DigestSpec`] out of its bounds: the field's name under `digest` and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidDigest {
    /// `window_seconds`, `key` or `max_items`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl DigestSpec {
    /// Checks every bound.
    pub fn check(&self) -> Result<(), InvalidDigest> {
        if !(MIN_DIGEST_WINDOW_SECONDS..=MAX_DIGEST_WINDOW_SECONDS).contains(&self.window_seconds) {
            return Err(InvalidDigest {
                field: "window_seconds",
                reason: format!(
                    "must be between {MIN_DIGEST_WINDOW_SECONDS} and {MAX_DIGEST_WINDOW_SECONDS}"
                ),
            });
        }
        if !(MIN_DIGEST_ITEMS..=MAX_DIGEST_ITEMS).contains(&self.max_items) {
            return Err(InvalidDigest {
                field: "max_items",
                reason: format!("must be between {MIN_DIGEST_ITEMS} and {MAX_DIGEST_ITEMS}"),
            });
        }
        if let Some(key) = &self.key
            && (key.is_empty()
                || key.len() > MAX_DIGEST_KEY_BYTES
                || key.chars().any(char::is_control))
        {
            return Err(InvalidDigest {
                field: "key",
                reason: format!(
                    "must be a data field name of 1 to {MAX_DIGEST_KEY_BYTES} bytes without \
                     control characters"
                ),
            });
        }
        Ok(())
    }

    /// The value a trigger's `data` is grouped by: `data.<key>` as text (a string as it is,
    /// anything else as its JSON), or empty when the spec has no key or the field is absent.
    pub fn key_value(
        &self,
        data: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, InvalidDigest> {
        let Some(key) = &self.key else {
            return Ok(String::new());
        };
        let value = match data.get(key) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        if value.len() > MAX_DIGEST_KEY_VALUE_BYTES {
            return Err(InvalidDigest {
                field: "key",
                reason: format!(
                    "data.{key} is the digest key and must be at most \
                     {MAX_DIGEST_KEY_VALUE_BYTES} bytes"
                ),
            });
        }
        Ok(value)
    }
}

/// What one recipient's rendering of a digest sees as `digest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DigestView {
    /// The `data` of the recipient's triggers, newest first, at most the spec's `max_items`.
    pub items: Vec<serde_json::Value>,
    /// How many triggers the recipient's digest collected (not capped).
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(window: u32, key: Option<&str>, items: u32) -> DigestSpec {
        DigestSpec {
            window_seconds: window,
            key: key.map(str::to_owned),
            max_items: items,
        }
    }

    #[test]
    fn bounds_are_checked_field_by_field() {
        assert!(spec(600, Some("post_id"), 20).check().is_ok());
        assert!(spec(1, None, 1).check().is_ok());
        assert!(spec(86_400, None, 100).check().is_ok());
        assert_eq!(
            spec(0, None, 20).check().unwrap_err().field,
            "window_seconds"
        );
        assert_eq!(
            spec(86_401, None, 20).check().unwrap_err().field,
            "window_seconds"
        );
        assert_eq!(spec(60, None, 0).check().unwrap_err().field, "max_items");
        assert_eq!(spec(60, None, 101).check().unwrap_err().field, "max_items");
        assert_eq!(spec(60, Some(""), 5).check().unwrap_err().field, "key");
    }

    #[test]
    fn max_items_defaults_and_unknown_fields_are_refused() {
        let parsed: DigestSpec = serde_json::from_value(json!({"window_seconds": 5})).unwrap();
        assert_eq!(parsed, spec(5, None, DEFAULT_DIGEST_ITEMS));
        assert!(
            serde_json::from_value::<DigestSpec>(json!({"window_seconds": 5, "wat": 1})).is_err()
        );
    }

    #[test]
    fn key_values_come_from_top_level_data() {
        let by_post = spec(60, Some("post_id"), 5);
        let data = |v: serde_json::Value| v.as_object().unwrap().clone();
        assert_eq!(
            by_post.key_value(&data(json!({"post_id": "p1"}))).unwrap(),
            "p1"
        );
        assert_eq!(
            by_post.key_value(&data(json!({"post_id": 7}))).unwrap(),
            "7"
        );
        assert_eq!(by_post.key_value(&data(json!({}))).unwrap(), "");
        let long = "x".repeat(MAX_DIGEST_KEY_VALUE_BYTES + 1);
        assert!(by_post.key_value(&data(json!({"post_id": long}))).is_err());
        assert_eq!(
            spec(60, None, 5)
                .key_value(&data(json!({"post_id": "p1"})))
                .unwrap(),
            ""
        );
    }
}
