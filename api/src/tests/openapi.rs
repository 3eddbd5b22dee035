//! The OpenAPI document against the router and the bodies the handlers write.

use super::*;

/// A path of the document with every `{parameter}` filled in with a value the router accepts.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{channel}" => "email",
            "{version}" => "1",
            s if s.starts_with('{') => "x",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The routes and the document come from the same `routes!` calls; this walks the real router
/// with every documented path and proves it agrees: each documented operation is routed (not
/// the router's own 404, not 405), and each method a documented path does not document is 405,
/// so no path has an undocumented method.
#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let h = harness().await;
    let (status, doc) = h.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(crate::openapi::json()).unwrap()
    );
    let mut operations = 0;
    let mut wrong = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            let documented = item.get(method.to_lowercase()).is_some();
            let request = Request::builder()
                .method(method)
                .uri(concrete(path))
                .body(Body::empty())
                .unwrap();
            let (status, body) = h.send(request).await;
            // The router's own 404 has no body; every handler's 404 is a JSON error.
            let routed = status != StatusCode::METHOD_NOT_ALLOWED
                && !(status == StatusCode::NOT_FOUND && body.is_null());
            if documented {
                operations += 1;
                if !routed {
                    wrong.push(format!(
                        "{method} {path} is documented but not routed ({status})"
                    ));
                }
            } else if status != StatusCode::METHOD_NOT_ALLOWED {
                wrong.push(format!(
                    "{method} {path} is not documented but answers {status}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Every `#[utoipa::path]` registered is one operation: 84 over 61 paths.
    assert_eq!(
        (doc["paths"].as_object().unwrap().len(), operations),
        (61, 84)
    );
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

/// Every field a status or tenant answer carries is in its schema, so a new field cannot ship
/// undocumented (the schemas are derived from the types, so this holds the derivation to the
/// answers the handlers really write).
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
