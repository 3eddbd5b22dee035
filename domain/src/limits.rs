//! Every size limit the platform enforces on what tenants and end users send, in one place.
//!
//! A limit is a documented number, not an accident: the README's "Limits" table lists each of
//! these with its default and how to change it, and every refusal names the field and the
//! limit. Limits an operator may tune per deployment or per tenant live in the API's
//! configuration and the tenant settings; their defaults are here.

use std::fmt;

/// The default largest `data` object a notify may carry, in bytes of its JSON. It travels in
/// workflow and activity inputs, so every byte is stored in Temporal's history several times.
/// The operator may raise or lower it per tenant (`max_data_bytes` in the tenant settings).
pub const DEFAULT_MAX_DATA_BYTES: usize = 64 * 1024;

/// The largest per-tenant `data` cap the operator may set: well under Temporal's 2 MB payload
/// limit, which a page input holding `data` must stay below.
pub const MAX_DATA_BYTES_CEILING: usize = 512 * 1024;

/// The most `metadata` labels on one notify.
pub const MAX_METADATA_ENTRIES: usize = 32;

/// The longest `metadata` key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 64;

/// The longest `metadata` value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 512;

/// The longest user display name, in bytes.
pub const MAX_USER_NAME_BYTES: usize = 256;

/// The longest locale tag, in bytes (BCP 47 tags in practice stay under 35).
pub const MAX_LOCALE_BYTES: usize = 35;

/// The most devices one user may register; a user's 21st device is refused. Providers retire
/// dead tokens, so a real user stays far below it.
pub const MAX_DEVICES_PER_USER: usize = 20;

/// The most locale variants one template may hold.
pub const MAX_TEMPLATE_LOCALES: usize = 50;

/// The most custom data keys a push template may declare.
pub const MAX_PUSH_DATA_KEYS: usize = 32;

/// The most key/value pairs an in-app template's `payload` may declare.
pub const MAX_INBOX_PAYLOAD_KEYS: usize = 16;

/// The most an inbox message's rendered `payload` may hold, keys and values, in bytes: it is
/// stored with every recipient's message.
pub const MAX_INBOX_PAYLOAD_BYTES: usize = 4 * 1024;

/// The largest source of one template part (a subject, a body, one push data value), in bytes.
pub const MAX_TEMPLATE_PART_BYTES: usize = 64 * 1024;

/// The most versions one template keeps; a write past it is refused until the template is
/// deleted and recreated. Every write is a version, so this bounds what one template stores.
pub const MAX_TEMPLATE_VERSIONS: i64 = 1_000;

/// The longest template name and category, in bytes.
pub const MAX_TEMPLATE_NAME_BYTES: usize = 200;

/// The schema of an in-app template's `payload`: at most [`MAX_INBOX_PAYLOAD_KEYS`] keys, each
/// value a template part.
pub fn inbox_payload_schema() -> utoipa::openapi::Object {
    template_map_schema(MAX_INBOX_PAYLOAD_KEYS)
}

/// The schema of a push template's `data`: at most [`MAX_PUSH_DATA_KEYS`] keys, each value a
/// template part.
pub fn push_data_schema() -> utoipa::openapi::Object {
    template_map_schema(MAX_PUSH_DATA_KEYS)
}

fn template_map_schema(max_keys: usize) -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(max_keys))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(MAX_TEMPLATE_PART_BYTES)),
        ))
        .build()
}

/// The schema of a notify's `metadata` (see [`check_metadata`]).
pub fn metadata_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(MAX_METADATA_ENTRIES))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(MAX_METADATA_KEY_BYTES)),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(MAX_METADATA_VALUE_BYTES)),
        ))
        .description(Some(format!(
            "Free-form labels echoed back in status: at most {MAX_METADATA_ENTRIES}, keys up to \
             {MAX_METADATA_KEY_BYTES} bytes, values up to {MAX_METADATA_VALUE_BYTES}"
        )))
        .build()
}

/// One limit exceeded: the field, and what the limit is. The API answers it as a 422 naming
/// both.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TooLarge {
    /// The field, as a dotted path the API user knows (`data`, `metadata.team`, `devices`).
    pub field: String,
    /// The limit, in words (`at most 65536 bytes of JSON`).
    pub limit: String,
    /// What was sent, in the same unit, when it helps.
    pub actual: Option<String>,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} must be {}", self.field, self.limit)?;
        if let Some(actual) = &self.actual {
            write!(f, " (got {actual})")?;
        }
        Ok(())
    }
}

impl TooLarge {
    /// A refusal of `field` over `limit`, with what was sent.
    pub fn new(field: impl Into<String>, limit: impl Into<String>, actual: impl ToString) -> Self {
        Self {
            field: field.into(),
            limit: limit.into(),
            actual: Some(actual.to_string()),
        }
    }
}

/// Checks a string field against a byte limit.
pub fn check_bytes(field: &str, value: &str, max: usize) -> Result<(), TooLarge> {
    if value.len() > max {
        return Err(TooLarge::new(
            field,
            format!("at most {max} bytes"),
            format!("{} bytes", value.len()),
        ));
    }
    Ok(())
}

/// Checks a count against a limit.
pub fn check_count(field: &str, count: usize, max: usize, what: &str) -> Result<(), TooLarge> {
    if count > max {
        return Err(TooLarge::new(
            field,
            format!("at most {max} {what}"),
            format!("{count}"),
        ));
    }
    Ok(())
}

/// Checks a notify's `data` against `max` bytes of JSON.
pub fn check_data(
    data: &serde_json::Map<String, serde_json::Value>,
    max: usize,
) -> Result<(), TooLarge> {
    // Serializing a map of JSON values cannot fail.
    let size = serde_json::to_vec(data).map_or(usize::MAX, |v| v.len());
    if size > max {
        return Err(TooLarge::new(
            "data",
            format!(
                "at most {max} bytes of JSON; send ids and let the template or your app look the rest up"
            ),
            format!("{size} bytes"),
        ));
    }
    Ok(())
}

/// Checks a notify's `metadata` labels.
pub fn check_metadata(
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<(), TooLarge> {
    check_count("metadata", metadata.len(), MAX_METADATA_ENTRIES, "entries")?;
    for (key, value) in metadata {
        check_bytes("metadata (a key)", key, MAX_METADATA_KEY_BYTES)?;
        check_bytes(&format!("metadata.{key}"), value, MAX_METADATA_VALUE_BYTES)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn data_over_the_cap_names_the_field_and_the_limit() {
        let big = json!({"blob": "x".repeat(DEFAULT_MAX_DATA_BYTES)});
        let err = check_data(big.as_object().unwrap(), DEFAULT_MAX_DATA_BYTES).unwrap_err();
        assert_eq!(err.field, "data");
        assert!(err.to_string().contains("at most 65536 bytes"), "{err}");
        let small = json!({"blob": "x".repeat(1000)});
        check_data(small.as_object().unwrap(), DEFAULT_MAX_DATA_BYTES).unwrap();
    }

    #[test]
    fn metadata_is_bounded_in_entries_keys_and_values() {
        let many: std::collections::BTreeMap<_, _> = (0..=MAX_METADATA_ENTRIES)
            .map(|i| (format!("k{i}"), "v".to_owned()))
            .collect();
        assert_eq!(check_metadata(&many).unwrap_err().field, "metadata");
        let long = [("team".to_owned(), "v".repeat(MAX_METADATA_VALUE_BYTES + 1))].into();
        assert_eq!(check_metadata(&long).unwrap_err().field, "metadata.team");
        let ok = [("team".to_owned(), "growth".to_owned())].into();
        check_metadata(&ok).unwrap();
    }
}
