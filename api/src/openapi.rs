//! The OpenAPI document, generated from the code.
//!
//! Each handler carries a `#[utoipa::path]` (method, path, parameters, body, every response)
//! and is routed with `utoipa_axum::routes!`, so registering a route and documenting it are one
//! act (see [`crate::routes`]). The request and response types derive `ToSchema`; their
//! constraints come from the constants the code checks (`fanout_domain::limits`, the id
//! rules), either directly or as literals a test here holds to those constants. What is
//! document-wide lives here: the info, the tags, the five security schemes, and the responses
//! the router's layers add to every operation they wrap ([`within_bounds`],
//! [`under_body_limit`]).
//!
//! `GET /openapi.json` serves [`json`]; `api/openapi.json` is the same text, written by
//! `make openapi` (`fanout-api openapi --out api/openapi.json`) and held to the code by a test.

use std::sync::OnceLock;

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;

/// The document's fixed part; the paths and schemas come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Fanout API",
        description = "Multi-tenant notification fanout on Temporal. Authenticate with \
            `Authorization: Bearer <api key>`. Errors are `{\"error\": {\"code\", \"message\", \
            \"field\"?, \"problems\"?}}` (the `Error` schema). This document is generated from \
            the code (`make openapi`)."
    ),
    security(("bearer" = [])),
    modifiers(&SecuritySchemes),
    // Schemas referenced by name from a hand-built schema (`schema_with`), which utoipa does
    // not follow, are registered here.
    components(schemas(ErrorBody, fanout_store::estimate::ChannelEstimate)),
    tags(
        (name = "health", description = "Liveness and this document"),
        (name = "requests", description = "Triggers, their status, receipts and controls"),
        (name = "users", description = "Recipient profiles and their addresses"),
        (name = "inbox", description = "The in-app inbox: tenant routes and the user's own, with an inbox token"),
        (name = "templates", description = "Versioned per-channel content with locale variants"),
        (name = "audiences", description = "Followers and segments"),
        (name = "dead letters", description = "Deliveries that failed for good, and re-driving them"),
        (name = "preferences", description = "Which channels and categories a user hears from"),
        (name = "suppressions", description = "Addresses no channel sends to"),
        (name = "kill-switches", description = "Stopping a channel or a template at once"),
        (name = "settings", description = "The tenant's own settings"),
        (name = "admin", description = "The operator's routes (admin key)"),
        (name = "quotas", description = "Delivery rate caps"),
        (name = "frequency-caps", description = "How many deliveries of a template category one user gets per channel and window"),
        (name = "webhooks", description = "Endpoints that hear about deliveries and requests, signed"),
    )
)]
pub struct ApiDoc;

/// The five ways to authenticate, by the names operations refer to.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: Option<&str>| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(description.map(str::to_owned))
                    .build(),
            )
        };
        components.add_security_scheme(
            "bearer",
            bearer(Some("A tenant API key (issued by the operator)")),
        );
        components.add_security_scheme(
            "inbox_token",
            bearer(Some(
                "An inbox token from POST /v1/users/{user_id}/inbox-token",
            )),
        );
        components.add_security_scheme(
            "inbox_token_query",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The inbox token as ?token=, for EventSource and WebSocket clients written \
                 before stream tickets; only the two stream routes take it. Prefer stream_ticket: \
                 a URL ends up in logs",
            ))),
        );
        components.add_security_scheme(
            "stream_ticket",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "ticket",
                "A single-use ticket from POST /v1/inbox/stream-ticket as ?ticket=, for \
                 EventSource and WebSocket clients, which cannot set headers; it opens one \
                 stream within a minute",
            ))),
        );
        components.add_security_scheme(
            "admin_key",
            bearer(Some(
                "The operator's admin key (FANOUT_ADMIN_KEY), for /v1/admin/ routes only",
            )),
        );
    }
}

/// A response with the shared `Error` body.
fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build()
}

fn operations(openapi: &mut Document) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
        ]
        .into_iter()
        .flatten()
    })
}

/// Documents what [`crate::bounds::bound`] adds to every operation it wraps: a 503 when the
/// request runs past the timeout (a handler's own 503 keeps its description).
pub fn within_bounds(openapi: &mut Document) {
    for operation in operations(openapi) {
        operation
            .responses
            .responses
            .entry("503".to_owned())
            .or_insert_with(|| {
                error_response(
                    "The request did not complete within the request timeout (30 s by default, \
                     FANOUT_HTTP__REQUEST_TIMEOUT_SECONDS), code unavailable; retry it",
                )
                .into()
            });
    }
}

/// Documents what `DefaultBodyLimit` adds to every operation that reads a body: a 413 for a
/// body over the limit.
pub fn under_body_limit(openapi: &mut Document) {
    for operation in operations(openapi) {
        if operation.request_body.is_some() {
            operation.responses.responses.insert(
                "413".to_owned(),
                error_response(
                    "The body is over the router's limit (2 MiB by default, \
                     FANOUT_HTTP__MAX_BODY_BYTES), code payload_too_large, field body",
                )
                .into(),
            );
        }
    }
}

/// The document, built from the routes.
pub fn document() -> Document {
    let mut document = crate::routes(&crate::bounds::HttpConfig::default()).into_openapi();
    qualify_operation_ids(&mut document);
    document
}

/// Prefixes each operation id (the handler's name, which repeats across modules: `list`,
/// `get_template`) with its tag, so ids are unique as OpenAPI requires: `inbox_list`,
/// `quotas_get_template`.
fn qualify_operation_ids(openapi: &mut Document) {
    for operation in operations(openapi) {
        let tag = operation
            .tags
            .as_ref()
            .and_then(|tags| tags.first())
            .map(|tag| tag.replace([' ', '-'], "_"));
        if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut()) {
            *id = format!("{tag}_{id}");
        }
    }
}

/// The document as served and checked in: pretty JSON with a final newline, built once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut text = document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        text
    })
}

#[cfg(test)]
mod tests {
    use fanout_domain::limits::{
        DEFAULT_MAX_DATA_BYTES, MAX_DATA_BYTES_CEILING, MAX_DEVICES_PER_USER, MAX_LOCALE_BYTES,
        MAX_TEMPLATE_NAME_BYTES, MAX_TEMPLATE_PART_BYTES, MAX_USER_NAME_BYTES,
    };
    use fanout_domain::request::{MAX_EXPLICIT_RECIPIENTS, MAX_TTL_SECONDS};
    use serde_json::Value;

    use super::*;

    fn generated() -> Value {
        serde_json::from_str(json()).unwrap()
    }

    #[test]
    fn the_checked_in_document_is_what_the_code_generates() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == json(),
            "api/openapi.json differs from the document the code generates; regenerate it with \
             `make openapi` (cargo run -p fanout-api -- openapi --out api/openapi.json)"
        );
    }

    /// The constraints utoipa takes only as literals, held to the constants the code checks.
    #[test]
    fn the_documented_limits_are_the_constants_the_code_checks() {
        let doc = generated();
        let schemas = "/components/schemas";
        let pins: Vec<(String, f64)> = vec![
            (
                format!("{schemas}/RawRecipients/oneOf/0/properties/user_ids/maxItems"),
                MAX_EXPLICIT_RECIPIENTS as f64,
            ),
            (
                format!("{schemas}/NotifyRequest/properties/ttl_seconds/maximum"),
                f64::from(MAX_TTL_SECONDS),
            ),
            (
                format!("{schemas}/NotifyRequest/properties/dedupe_key/maxLength"),
                fanout_domain::DedupeKey::MAX_LEN as f64,
            ),
            (
                format!("{schemas}/UserInput/properties/name/maxLength"),
                MAX_USER_NAME_BYTES as f64,
            ),
            (
                format!("{schemas}/UserInput/properties/locale/maxLength"),
                MAX_LOCALE_BYTES as f64,
            ),
            (
                format!("{schemas}/UserInput/properties/devices/maxItems"),
                MAX_DEVICES_PER_USER as f64,
            ),
            (
                format!("{schemas}/EmailContent/properties/subject/maxLength"),
                MAX_TEMPLATE_PART_BYTES as f64,
            ),
            (
                format!("{schemas}/InAppContent/properties/action_url/maxLength"),
                MAX_TEMPLATE_PART_BYTES as f64,
            ),
            (
                format!("{schemas}/PushContent/properties/title/maxLength"),
                MAX_TEMPLATE_PART_BYTES as f64,
            ),
            (
                format!("{schemas}/TemplateInput/properties/name/maxLength"),
                MAX_TEMPLATE_NAME_BYTES as f64,
            ),
            (
                format!("{schemas}/FollowersInput/properties/follower_ids/maxItems"),
                crate::audience::MAX_IDS_PER_CALL as f64,
            ),
            (
                format!("{schemas}/MembersInput/properties/user_ids/maxItems"),
                crate::audience::MAX_IDS_PER_CALL as f64,
            ),
            (
                format!("{schemas}/SegmentInput/properties/name/maxLength"),
                fanout_domain::audience::MAX_SEGMENT_NAME as f64,
            ),
            (
                format!("{schemas}/SuppressionInput/properties/detail/maxLength"),
                crate::suppressions::MAX_DETAIL as f64,
            ),
            (
                format!("{schemas}/TenantSettings/properties/ingest_per_second/maximum"),
                f64::from(crate::admin::MAX_INGEST_PER_SECOND),
            ),
            (
                format!("{schemas}/TenantPatch/properties/ingest_burst/maximum"),
                f64::from(crate::admin::MAX_INGEST_BURST),
            ),
            (
                format!("{schemas}/TenantPatch/properties/fairness_weight/minimum"),
                *crate::admin::FAIRNESS_WEIGHTS.start(),
            ),
            (
                format!("{schemas}/TenantPatch/properties/fairness_weight/maximum"),
                *crate::admin::FAIRNESS_WEIGHTS.end(),
            ),
            (
                format!("{schemas}/TenantSettings/properties/max_data_bytes/maximum"),
                MAX_DATA_BYTES_CEILING as f64,
            ),
            (
                format!("{schemas}/TenantPatch/properties/max_data_bytes/maximum"),
                MAX_DATA_BYTES_CEILING as f64,
            ),
        ];
        let mut wrong = Vec::new();
        for (pointer, expected) in &pins {
            let documented = doc.pointer(pointer).and_then(Value::as_f64);
            if documented != Some(*expected) {
                wrong.push(format!(
                    "{pointer}: {documented:?}, the code says {expected}"
                ));
            }
        }
        let limits = [
            ("/v1/receipts", "get", crate::requests::MAX_PAGE),
            ("/v1/users/{user_id}/inbox", "get", crate::inbox::MAX_PAGE),
            ("/v1/inbox", "get", crate::inbox::MAX_PAGE),
            (
                "/v1/users/{user_id}/followers",
                "get",
                crate::audience::MAX_PAGE,
            ),
            ("/v1/suppressions", "get", crate::suppressions::MAX_PAGE),
            (
                "/v1/templates/{template_id}/versions",
                "get",
                fanout_store::templates::MAX_VERSIONS_PER_PAGE,
            ),
        ];
        for (path, method, max) in limits {
            let parameters = &doc["paths"][path][method]["parameters"];
            let limit = parameters
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == "limit"));
            let documented = limit.and_then(|p| p["schema"]["maximum"].as_f64());
            if documented != Some(f64::from(max)) {
                wrong.push(format!(
                    "{method} {path} limit: {documented:?}, the code says {max}"
                ));
            }
        }
        assert!(wrong.is_empty(), "documented limits drifted: {wrong:#?}");
        // The data cap is a runtime setting; its default is named in the description.
        let data =
            doc["components"]["schemas"]["NotifyRequest"]["properties"]["data"]["description"]
                .as_str()
                .unwrap_or_default();
        assert!(data.contains(&DEFAULT_MAX_DATA_BYTES.to_string()), "{data}");
    }

    #[test]
    fn every_reference_resolves() {
        fn refs(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        out.push(target.clone());
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = generated();
        let mut targets = Vec::new();
        refs(&doc, &mut targets);
        assert!(!targets.is_empty());
        let dangling: Vec<_> = targets
            .iter()
            .filter(|t| {
                t.strip_prefix('#')
                    .and_then(|pointer| doc.pointer(pointer))
                    .is_none()
            })
            .collect();
        assert!(dangling.is_empty(), "unresolvable references: {dangling:?}");
    }

    #[test]
    fn a_templates_content_schema_has_the_channel_contents_properties() {
        let doc = generated();
        let properties = |name: &str| {
            let mut keys: Vec<String> = doc["components"]["schemas"][name]["properties"]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            keys.sort();
            keys
        };
        assert_eq!(properties("TemplateContent"), properties("ChannelContent"));
        assert!(!properties("ChannelContent").is_empty());
    }

    #[test]
    fn every_operation_names_its_security_and_its_errors_use_the_error_schema() {
        let doc = generated();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let security = operation.get("security");
                let expected = match path.as_str() {
                    "/healthz" | "/readyz" | "/metrics" | "/openapi.json" => {
                        Some(serde_json::json!([{}]))
                    }
                    "/v1/inbox/stream" | "/v1/inbox/ws" => Some(serde_json::json!([
                        {"inbox_token": []},
                        {"stream_ticket": []},
                        {"inbox_token_query": []}
                    ])),
                    p if p.starts_with("/v1/inbox") => {
                        Some(serde_json::json!([{"inbox_token": []}]))
                    }
                    p if p.starts_with("/v1/admin/") => {
                        Some(serde_json::json!([{"admin_key": []}]))
                    }
                    _ => None,
                };
                assert_eq!(security, expected.as_ref(), "{method} {path}");
                let responses = operation["responses"].as_object().unwrap();
                assert!(
                    path.starts_with("/v1/inbox/")
                        && ["/v1/inbox/stream", "/v1/inbox/ws"].contains(&path.as_str())
                        || responses.contains_key("503"),
                    "{method} {path} lacks the timeout's 503"
                );
            }
        }
    }
}
