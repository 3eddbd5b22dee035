//! The OpenAPI document against the router and the bodies the handlers write.

use super::*;

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let h = harness().await;
    let (status, doc) = h.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths: HashSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let routed = [
        "/healthz",
        "/openapi.json",
        "/v1/notify",
        "/v1/status/{request_id}",
        "/v1/receipts",
        "/v1/cancel",
        "/v1/dead-letters",
        "/v1/dead-letters/redrive",
        "/v1/requests/{request_id}/pause",
        "/v1/requests/{request_id}/resume",
        "/v1/requests/{request_id}/rate",
        "/v1/users/{user_id}",
        "/v1/users/{user_id}/inbox",
        "/v1/templates",
        "/v1/users/{user_id}/inbox-token",
        "/v1/users/{user_id}/inbox-tokens",
        "/v1/users/{user_id}/inbox-tokens/{token_id}",
        "/v1/inbox",
        "/v1/inbox/unread-count",
        "/v1/inbox/messages/{message_id}/read",
        "/v1/inbox/read-all",
        "/v1/inbox/stream",
        "/v1/inbox/ws",
        "/v1/templates/{template_id}",
        "/v1/templates/{template_id}/versions",
        "/v1/templates/{template_id}/versions/{version}",
        "/v1/templates/{template_id}/rollback",
        "/v1/users/{user_id}/followers",
        "/v1/users/{user_id}/followers/{follower_id}",
        "/v1/segments/{segment_id}",
        "/v1/segments/{segment_id}/members",
        "/v1/segments/{segment_id}/members/{user_id}",
        "/v1/users/{user_id}/preferences",
        "/v1/users/{user_id}/preferences/opt-out",
        "/v1/users/{user_id}/preferences/opt-in",
        "/v1/suppressions",
        "/v1/suppressions/{channel}/{address}",
        "/v1/kill-switches/channels",
        "/v1/kill-switches/channels/{channel}",
        "/v1/templates/{template_id}/disable",
        "/v1/templates/{template_id}/enable",
        "/v1/settings/blast-radius",
        "/v1/admin/tenants",
        "/v1/admin/tenants/{tenant_id}",
        "/v1/admin/tenants/{tenant_id}/keys",
        "/v1/admin/tenants/{tenant_id}/keys/{key_id}",
        "/v1/admin/kill-switches/channels/{channel}",
        "/v1/quotas",
        "/v1/quotas/tenant",
        "/v1/quotas/templates/{template_id}",
    ];
    assert_eq!(paths, routed.into_iter().collect());
    let (status, health) = h.call("GET", "/healthz", None, None).await;
    assert_eq!((status, health), (StatusCode::OK, json!({"status": "ok"})));
}

/// The names of a schema's properties in the OpenAPI document.
fn schema_properties(doc: &Value, schema: &str) -> HashSet<String> {
    doc["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {schema}"))
        .keys()
        .cloned()
        .collect()
}

fn keys(object: &Value) -> HashSet<String> {
    object.as_object().unwrap().keys().cloned().collect()
}

/// The document is written by hand: every field a status or tenant answer carries must be in
/// its schema, so a new field cannot ship undocumented.
#[tokio::test]
async fn the_openapi_schemas_name_every_field_of_a_status_and_a_tenant() {
    let h = harness().await;
    let (_, doc) = h.call("GET", "/openapi.json", None, None).await;
    let (_, accepted) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("doc")))
        .await;
    let status_uri = accepted["status_url"].as_str().unwrap();
    let (status, body) = h.call("GET", status_uri, Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let documented = schema_properties(&doc, "Status");
    assert!(
        keys(&body).is_subset(&documented),
        "undocumented: {:?}",
        keys(&body).difference(&documented).collect::<Vec<_>>()
    );

    let (status, tenant) = h
        .call("GET", "/v1/admin/tenants/a", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{tenant}");
    assert_eq!(keys(&tenant), schema_properties(&doc, "Tenant"));
    let settings = schema_properties(&doc, "TenantSettings");
    assert_eq!(keys(&tenant["settings"]), settings);
    assert_eq!(keys(&tenant["effective"]), settings);
    let patchable: HashSet<String> = settings.into_iter().chain(["name".to_owned()]).collect();
    assert_eq!(schema_properties(&doc, "TenantPatch"), patchable);
}
