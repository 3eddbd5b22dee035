//! The operator's API: tenants, their settings and API keys, and what one tenant can never see of another.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use fanout_domain::inbox::InboxMessage;
use fanout_domain::receipt::{DeliveryStatus, Receipt};
use fanout_domain::{Channel, InstanceId, RequestId, TenantId, UserId};
use futures::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{ADMIN_KEY, Harness, harness, trigger};
use crate::{AppState, app};

/// Marks every piece of tenant `a`'s data: no answer to tenant `b` may contain it.
const MARK: &str = "alpha-secret";

#[tokio::test]
async fn the_operator_creates_tenants_issues_and_revokes_keys() {
    let h = harness().await;
    let admin = Some(ADMIN_KEY);
    let (status, created) = h
        .call(
            "POST",
            "/v1/admin/tenants",
            admin,
            Some(json!({"tenant_id": "acme", "name": "Acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["tenant_id"], "acme");
    assert_eq!(
        created["settings"],
        json!({"ingest_per_second": null, "ingest_burst": null, "fairness_weight": null, "max_data_bytes": null})
    );
    assert_eq!(
        created["effective"],
        json!({"ingest_per_second": 50, "ingest_burst": 100, "fairness_weight": 1.0, "max_data_bytes": 65536})
    );
    let (status, again) = h
        .call(
            "POST",
            "/v1/admin/tenants",
            admin,
            Some(json!({"tenant_id": "acme", "name": "Other"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    let (status, got) = h.call("GET", "/v1/admin/tenants/acme", admin, None).await;
    assert_eq!((status, &got["name"]), (StatusCode::OK, &json!("Acme")));
    let (status, page) = h
        .call("GET", "/v1/admin/tenants?limit=2", admin, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids: Vec<&str> = page["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        (ids, &page["next_after"]),
        (vec!["a", "acme"], &json!("acme"))
    );
    let (_, rest) = h
        .call("GET", "/v1/admin/tenants?after=acme", admin, None)
        .await;
    assert_eq!(rest["tenants"][0]["tenant_id"], "b");
    assert_eq!(rest["next_after"], Value::Null);
    let (status, _) = h.call("GET", "/v1/admin/tenants/nope", admin, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Two keys, one labelled; each acts as the tenant.
    let keys_uri = "/v1/admin/tenants/acme/keys";
    let (status, ci) = h
        .call("POST", keys_uri, admin, Some(json!({"label": "ci"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ci}");
    let (status, plain) = h.call("POST", keys_uri, admin, None).await;
    assert_eq!(status, StatusCode::CREATED, "{plain}");
    let ci_key = ci["key"].as_str().unwrap();
    let plain_key = plain["key"].as_str().unwrap();
    assert!(ci_key.starts_with(ci["prefix"].as_str().unwrap()));
    assert_eq!(
        (&ci["label"], &plain["label"]),
        (&json!("ci"), &Value::Null)
    );
    for key in [ci_key, plain_key] {
        let (status, body) = h
            .call("PUT", "/v1/users/u1", Some(key), Some(json!({"name": "U"})))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // The listing names keys and never shows them.
    let (status, listed) = h.call("GET", keys_uri, admin, None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let text = listed.to_string();
    assert!(
        !text.contains(ci_key) && !text.contains(plain_key),
        "{text}"
    );
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .all(|k| k["revoked"] == false && k.get("key").is_none())
    );

    // Revoking is immediate, touches only that key, and is repeatable.
    let revoke = format!("{keys_uri}/{}", ci["key_id"].as_str().unwrap());
    let (status, _) = h.call("DELETE", &revoke, admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.call("GET", "/v1/users/u1", Some(ci_key), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = h.call("GET", "/v1/users/u1", Some(plain_key), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.call("DELETE", &revoke, admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, listed) = h.call("GET", keys_uri, admin, None).await;
    let revoked: Vec<bool> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["revoked"].as_bool().unwrap())
        .collect();
    assert_eq!(revoked.iter().filter(|r| **r).count(), 1, "{listed}");
    // Another tenant's path cannot reach the key; unknown keys and tenants are 404.
    let foreign = format!(
        "/v1/admin/tenants/a/keys/{}",
        plain["key_id"].as_str().unwrap()
    );
    for uri in [
        foreign.as_str(),
        "/v1/admin/tenants/acme/keys/key_0000000000000000",
        "/v1/admin/tenants/nope/keys/key_0000000000000000",
    ] {
        let (status, body) = h.call("DELETE", uri, admin, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
    }
    let (status, _) = h.call("GET", "/v1/users/u1", Some(plain_key), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .call("POST", "/v1/admin/tenants/nope/keys", admin, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_and_tenant_keys_do_not_open_each_others_routes() {
    let h = harness().await;
    for key in [
        None,
        Some(h.key(0)),
        Some("wrong"),
        Some("test-admin-key-0123456788"),
    ] {
        for (method, uri) in [
            ("GET", "/v1/admin/tenants"),
            ("GET", "/v1/admin/tenants/a"),
            ("GET", "/v1/admin/tenants/a/keys"),
            ("POST", "/v1/admin/tenants/a/keys"),
        ] {
            let (status, body) = h.call(method, uri, key, None).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} {key:?}: {body}"
            );
        }
    }
    for (method, uri) in [("GET", "/v1/users/u1"), ("GET", "/v1/suppressions")] {
        let (status, _) = h.call(method, uri, Some(ADMIN_KEY), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    let (status, _) = h
        .call("POST", "/v1/notify", Some(ADMIN_KEY), Some(trigger("k")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Without a configured key the admin API is off, and says why.
    let off = app(AppState {
        store: h.store.clone(),
        orchestrator: h.orchestrator.clone(),
        dedupe_window: Duration::from_secs(60),
        inbox: crate::inbox::InboxHub::new(h.store.clone(), Default::default()),
        admin_key: None,
        ingest: crate::ingest::IngestLimiter::new(h.store.clone(), Default::default()),
        preflight: Default::default(),
        direct_max_recipients: fanout_domain::request::DIRECT_MAX_RECIPIENTS,
        scheduling: Default::default(),
        http: Default::default(),
        running_status: crate::requests::running_status_cache(),
        webhooks: fanout_domain::webhook::WebhooksConfig::default(),
    });
    let request = Request::get("/v1/admin/tenants")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_KEY}"))
        .body(Body::empty())
        .unwrap();
    let response = off.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("FANOUT_ADMIN_KEY"), "{message}");
}

#[tokio::test]
async fn tenant_settings_are_validated_field_by_field_and_written_only_when_all_are_valid() {
    let h = harness().await;
    let uri = "/v1/admin/tenants/a";
    let admin = Some(ADMIN_KEY);
    for (body, field) in [
        (json!({"ingest_per_second": 0}), "ingest_per_second"),
        (json!({"ingest_per_second": 100_001}), "ingest_per_second"),
        (json!({"ingest_per_second": 1.5}), "ingest_per_second"),
        (json!({"ingest_per_second": "5"}), "ingest_per_second"),
        (json!({"ingest_burst": -1}), "ingest_burst"),
        (json!({"ingest_burst": 2_000_000}), "ingest_burst"),
        (
            json!({"ingest_per_second": 5, "ingest_burst": 0}),
            "ingest_burst",
        ),
        (json!({"name": "  "}), "name"),
        (json!({"name": 7}), "name"),
        (json!({"fairness_weight": 0}), "fairness_weight"),
        (
            json!({"fairness_weight": 0.0009, "max_data_bytes": 65536}),
            "fairness_weight",
        ),
        (
            json!({"fairness_weight": 1000.5, "max_data_bytes": 65536}),
            "fairness_weight",
        ),
        (json!({"fairness_weight": -1}), "fairness_weight"),
        (json!({"fairness_weight": "2"}), "fairness_weight"),
        (
            json!({"ingest_per_second": 5, "fairness_weight": 1e6}),
            "fairness_weight",
        ),
    ] {
        let (status, answer) = h.call("PATCH", uri, admin, Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    let (status, answer) = h
        .call("PATCH", uri, admin, Some(json!({"ingest_rate": 5})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    // None of the refused patches wrote anything.
    let (_, tenant) = h.call("GET", uri, admin, None).await;
    assert_eq!(
        tenant["settings"],
        json!({"ingest_per_second": null, "ingest_burst": null, "fairness_weight": null, "max_data_bytes": null})
    );

    let (status, tenant) = h
        .call(
            "PATCH",
            uri,
            admin,
            Some(json!({"name": "Alpha", "ingest_per_second": 5, "ingest_burst": 20})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tenant}");
    assert_eq!(tenant["name"], "Alpha");
    assert_eq!(
        tenant["effective"],
        json!({"ingest_per_second": 5, "ingest_burst": 20, "fairness_weight": 1.0, "max_data_bytes": 65536})
    );
    // Absent fields stay; null returns one to the platform default.
    let (_, tenant) = h
        .call("PATCH", uri, admin, Some(json!({"ingest_burst": null})))
        .await;
    assert_eq!(
        tenant["settings"],
        json!({"ingest_per_second": 5, "ingest_burst": null, "fairness_weight": null, "max_data_bytes": null})
    );
    assert_eq!(
        tenant["effective"],
        json!({"ingest_per_second": 5, "ingest_burst": 100, "fairness_weight": 1.0, "max_data_bytes": 65536})
    );
    let (status, _) = h
        .call("PATCH", "/v1/admin/tenants/nope", admin, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_burst_over_the_quota_is_429_with_retry_after_and_records_nothing() {
    let h = harness().await;
    let (status, _) = h
        .call(
            "PATCH",
            "/v1/admin/tenants/a",
            Some(ADMIN_KEY),
            Some(json!({"ingest_per_second": 1, "ingest_burst": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Sequential triggers: two fit the burst, then one a second refills. The bounds below
    // hold however slowly the machine runs the loop.
    let started_at = std::time::Instant::now();
    let (mut accepted, mut refused) = (0usize, Vec::new());
    for i in 0..6 {
        let request = Request::post("/v1/notify")
            .header(header::AUTHORIZATION, format!("Bearer {}", h.key(0)))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(trigger(&format!("burst-{i}")).to_string()))
            .unwrap();
        let response = h.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        if status == StatusCode::ACCEPTED {
            accepted += 1;
            continue;
        }
        assert!(i >= 2, "the burst of 2 is refused at {i}: {body}");
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        // One token a second: the next one is under a second away.
        assert_eq!(retry_after.unwrap(), "1");
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(
            (&body["error"]["rate_per_second"], &body["error"]["burst"]),
            (&json!(1), &json!(2))
        );
        assert_eq!(body["error"]["retry_after_seconds"], 1);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("notify requests of 1 per second"),
            "{message}"
        );
        refused.push(format!("burst-{i}"));
    }
    let refilled = started_at.elapsed().as_secs() as usize;
    assert!(
        accepted <= 2 + refilled,
        "{accepted} accepted in {refilled} s"
    );
    assert!(!refused.is_empty(), "nothing refused in {refilled} s");
    // Refused triggers were neither recorded nor started.
    assert_eq!(h.orchestrator.started.lock().unwrap().len(), accepted);
    let tenant = TenantId::parse("a").unwrap();
    for key in &refused {
        let found = h
            .store
            .find_request_by_dedupe_key(&tenant, key)
            .await
            .unwrap();
        assert!(found.is_none(), "{key} was recorded");
    }
    // The quota is per tenant: b still has its whole (default) burst.
    let (status, body) = h
        .call("POST", "/v1/notify", Some(h.key(1)), Some(trigger("b-1")))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // Authentication still comes first.
    let (status, _) = h
        .call("POST", "/v1/notify", Some("fo_wrong"), Some(trigger("x")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn the_admin_key_and_default_quota_come_from_the_environment() {
    let env = std::collections::HashMap::from([
        ("FANOUT_ADMIN_KEY".to_owned(), "s3cret".to_owned()),
        ("FANOUT_INGEST__PER_SECOND".to_owned(), "7".to_owned()),
    ]);
    let config: crate::Config = fanout_runtime::config::load(None, &env).unwrap();
    assert_eq!(config.admin_key.unwrap().expose(), "s3cret");
    assert_eq!((config.ingest.per_second, config.ingest.burst), (7, 100));
    let config: crate::Config = fanout_runtime::config::load(None, &Default::default()).unwrap();
    assert!(config.admin_key.is_none());
}

/// Whose credential a probe sends.
#[derive(Clone, Copy)]
enum As {
    /// Tenant b's API key.
    Key,
    /// An inbox token of tenant b's user.
    InboxToken,
}

/// What tenant b must get.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// 404: a's item does not exist for b.
    NotFound,
    /// Success on b's own data (a collection, or an upsert of b's own item): nothing of a's
    /// may appear, and a's data must be unchanged afterwards.
    Own(StatusCode),
    /// Refused before any data is read (a WebSocket route without an upgrade).
    Refused,
}

/// One call of a tenant route with tenant b's credentials.
struct Probe {
    method: &'static str,
    /// The route as the OpenAPI document names it.
    route: &'static str,
    uri: String,
    body: Option<Value>,
    by: As,
    expect: Expect,
}

fn probe(method: &'static str, route: &'static str, uri: String, expect: Expect) -> Probe {
    Probe {
        method,
        route,
        uri,
        body: None,
        by: As::Key,
        expect,
    }
}

impl Probe {
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn by(mut self, by: As) -> Self {
        self.by = by;
        self
    }
}

/// Ids of everything tenant a owns.
struct AlphaData {
    request_id: String,
    message_id: String,
    token_id: String,
    inbox_token: String,
    endpoint_id: String,
}

/// Gives tenant a one of every resource, each marked with [`MARK`].
async fn seed_alpha(h: &Harness) -> AlphaData {
    let a = Some(h.key(0));
    let ok = |status: StatusCode, body: &Value| {
        assert!(status.is_success(), "{status}: {body}");
    };
    for (method, uri, body) in [
        (
            "PUT",
            "/v1/users/alice",
            json!({"name": format!("{MARK} Alice"), "email": format!("{MARK}@a.test")}),
        ),
        (
            "PUT",
            "/v1/users/bob",
            json!({"name": format!("{MARK} Bob")}),
        ),
        (
            "POST",
            "/v1/users/alice/followers",
            json!({"follower_ids": ["bob"]}),
        ),
        (
            "POST",
            "/v1/templates",
            json!({"template_id": "alpha-tpl", "name": MARK,
                   "in_app": {"title": MARK, "body": "one"}}),
        ),
        (
            "PUT",
            "/v1/templates/alpha-tpl",
            json!({"name": MARK, "in_app": {"title": MARK, "body": "two"}}),
        ),
        (
            "PUT",
            "/v1/segments/alpha-seg",
            json!({"name": MARK, "user_ids": ["alice"]}),
        ),
        (
            "POST",
            "/v1/users/alice/preferences/opt-out",
            json!({"category": "marketing", "channel": "push"}),
        ),
        (
            "POST",
            "/v1/suppressions",
            json!({"channel": "email", "address": "alice@a.test", "reason": "hard_bounce", "detail": MARK}),
        ),
        (
            "POST",
            "/v1/kill-switches/channels/push",
            json!({"disabled": true, "reason": MARK}),
        ),
        (
            "PUT",
            "/v1/settings/blast-radius",
            json!({"max_audience": 7777}),
        ),
        ("PUT", "/v1/quotas/tenant", json!({"per_second": 7777})),
        (
            "PUT",
            "/v1/frequency-caps/alpha-secret",
            json!({"max": 7, "period_seconds": 3600}),
        ),
        (
            "PUT",
            "/v1/quotas/templates/alpha-tpl",
            json!({"per_second": 77}),
        ),
    ] {
        let (status, answer) = h.call(method, uri, a, Some(body)).await;
        ok(status, &answer);
    }
    let (status, accepted) = h
        .call(
            "POST",
            "/v1/notify",
            a,
            Some(json!({
                "template_id": "alpha-tpl",
                "recipients_query": {"type": "users", "user_ids": ["alice"]},
                "dedupe_key": "alpha",
                "metadata": {"note": MARK}
            })),
        )
        .await;
    ok(status, &accepted);
    let request_id = accepted["request_id"].as_str().unwrap().to_owned();
    let (status, token) = h.call("POST", "/v1/users/alice/inbox-token", a, None).await;
    ok(status, &token);

    let tenant = TenantId::parse("a").unwrap();
    let rid = RequestId::parse(&request_id).unwrap();
    let alice = UserId::parse("alice").unwrap();
    let message = InboxMessage {
        id: InstanceId::derive(&rid, &alice, Channel::InApp),
        user_id: alice.clone(),
        request_id: rid.clone(),
        title: MARK.into(),
        body: MARK.into(),
        action_url: None,
        data: json!({}),
        created_at_ms: fanout_store::now_ms(),
        read_at_ms: None,
    };
    h.store
        .record_deliveries(&tenant, &[], std::slice::from_ref(&message))
        .await
        .unwrap();
    let failed = Receipt {
        instance_id: InstanceId::derive(&rid, &alice, Channel::Email),
        request_id: rid,
        user_id: alice,
        channel: Channel::Email,
        status: DeliveryStatus::Failed,
        provider_message_id: None,
        provider: None,
        attempts: 1,
        latency_ms: None,
        error_code: Some("smtp_550".into()),
        error_message: Some(MARK.into()),
        updated_at_ms: 1,
        release_at_ms: None,
    };
    h.store
        .record_page_deliveries(&tenant, 0, &mut [failed], &mut vec![])
        .await
        .unwrap();
    let (status, endpoint) = h
        .call(
            "POST",
            "/v1/webhooks",
            a,
            Some(json!({"url": format!("https://93.184.216.34/{MARK}")})),
        )
        .await;
    ok(status, &endpoint);
    AlphaData {
        endpoint_id: endpoint["endpoint_id"].as_str().unwrap().to_owned(),
        request_id,
        message_id: message.id.to_string(),
        token_id: token["token_id"].as_str().unwrap().to_owned(),
        inbox_token: token["token"].as_str().unwrap().to_owned(),
    }
}

/// Everything tenant a can read about its data, to compare before and after b's calls.
async fn snapshot(h: &Harness, alpha: &AlphaData) -> BTreeMap<String, (StatusCode, Value)> {
    let rid = &alpha.request_id;
    let mut seen = BTreeMap::new();
    for uri in [
        "/v1/users/alice".to_owned(),
        "/v1/users/alice/followers".to_owned(),
        "/v1/users/alice/preferences".to_owned(),
        "/v1/kill-switches/channels".to_owned(),
        "/v1/settings/blast-radius".to_owned(),
        "/v1/quotas".to_owned(),
        "/v1/frequency-caps".to_owned(),
        "/v1/users/alice/inbox".to_owned(),
        "/v1/templates/alpha-tpl".to_owned(),
        "/v1/templates/alpha-tpl/versions".to_owned(),
        "/v1/segments/alpha-seg".to_owned(),
        "/v1/segments/alpha-seg/members".to_owned(),
        "/v1/suppressions".to_owned(),
        "/v1/dead-letters".to_owned(),
        format!("/v1/status/{rid}"),
        format!("/v1/receipts?request_id={rid}"),
        "/v1/webhooks".to_owned(),
        format!("/v1/webhooks/{}", alpha.endpoint_id),
    ] {
        let answer = h.call("GET", &uri, Some(h.key(0)), None).await;
        assert!(answer.0.is_success(), "{uri}: {answer:?}");
        seen.insert(uri, answer);
    }
    for uri in ["/v1/inbox", "/v1/inbox/unread-count"] {
        let answer = h.call("GET", uri, Some(&alpha.inbox_token), None).await;
        assert!(answer.0.is_success(), "{uri}: {answer:?}");
        seen.insert(format!("inbox {uri}"), answer);
    }
    seen
}

/// Reads tenant b's inbox stream from its start up to its `ready` event.
async fn read_stream_until_ready(h: &Harness, token: &str) -> (StatusCode, String) {
    let request = Request::get("/v1/inbox/stream")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("last-event-id", "0")
        .body(Body::empty())
        .unwrap();
    let response = h.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    if !status.is_success() {
        return (status, String::new());
    }
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    while !text.contains("event: ready") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("the stream says ready within 10 s")
            .expect("the stream stays open")
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    (status, text)
}

/// Every (method, route) of the OpenAPI document that acts for a tenant: all but the
/// public and operator routes.
async fn tenant_routes(h: &Harness) -> BTreeSet<(String, String)> {
    let (_, doc) = h.call("GET", "/openapi.json", None, None).await;
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if ["/healthz", "/readyz", "/metrics", "/openapi.json"].contains(&path.as_str())
            || path.starts_with("/v1/admin/")
        {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "patch", "delete"].contains(&method.as_str()) {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

#[tokio::test]
async fn no_tenant_route_shows_or_changes_another_tenants_data() {
    use Expect::{NotFound, Own, Refused};

    let h = harness().await;
    let alpha = seed_alpha(&h).await;
    // Tenant b has a user with an inbox token of its own, for the inbox routes.
    let (status, _) = h
        .call(
            "PUT",
            "/v1/users/bee",
            Some(h.key(1)),
            Some(json!({"name": "Bee"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, token) = h
        .call("POST", "/v1/users/bee/inbox-token", Some(h.key(1)), None)
        .await;
    let b_inbox = token["token"].as_str().unwrap().to_owned();
    let before = snapshot(&h, &alpha).await;
    let started = h.orchestrator.started.lock().unwrap().len();

    let rid = alpha.request_id.as_str();
    let suppressed = "/v1/suppressions/email/alice%40a.test".to_owned();
    let hook = format!("/v1/webhooks/{}", alpha.endpoint_id);
    let ok = StatusCode::OK;
    // Reads and actions on a's ids first; upserts (which create b's own items under the
    // same ids) last, so they cannot mask a 404.
    let probes =
        vec![
        probe("POST", "/v1/notify", "/v1/notify".into(), NotFound).body(json!({
            "template_id": "alpha-tpl",
            "recipients_query": {"type": "users", "user_ids": ["alice"]}
        })),
        probe("GET", "/v1/status/{request_id}", format!("/v1/status/{rid}"), NotFound),
        probe("GET", "/v1/receipts", format!("/v1/receipts?request_id={rid}"), NotFound),
        probe("POST", "/v1/cancel", "/v1/cancel".into(), NotFound)
            .body(json!({"request_id": rid})),
        probe("GET", "/v1/dead-letters", "/v1/dead-letters".into(), Own(ok)),
        probe("POST", "/v1/dead-letters/redrive", "/v1/dead-letters/redrive".into(), NotFound)
            .body(json!({"request_id": rid})),
        probe(
            "POST",
            "/v1/requests/{request_id}/pause",
            format!("/v1/requests/{rid}/pause"),
            NotFound,
        ),
        probe(
            "POST",
            "/v1/requests/{request_id}/resume",
            format!("/v1/requests/{rid}/resume"),
            NotFound,
        ),
        probe(
            "POST",
            "/v1/requests/{request_id}/rate",
            format!("/v1/requests/{rid}/rate"),
            NotFound,
        )
        .body(json!({"per_second": 5})),
        probe(
            "POST",
            "/v1/requests/{request_id}/schedule",
            format!("/v1/requests/{rid}/schedule"),
            NotFound,
        )
        .body(json!({"delay_seconds": 60})),
        probe("GET", "/v1/users/{user_id}", "/v1/users/alice".into(), NotFound),
        // User-keyed collections answer for b's own (empty) user of that id.
        probe("GET", "/v1/users/{user_id}/inbox", "/v1/users/alice/inbox".into(), Own(ok)),
        probe(
            "POST",
            "/v1/users/{user_id}/inbox-token",
            "/v1/users/alice/inbox-token".into(),
            NotFound,
        ),
        probe(
            "DELETE",
            "/v1/users/{user_id}/inbox-tokens/{token_id}",
            format!("/v1/users/alice/inbox-tokens/{}", alpha.token_id),
            NotFound,
        ),
        probe(
            "DELETE",
            "/v1/users/{user_id}/inbox-tokens",
            "/v1/users/alice/inbox-tokens".into(),
            Own(ok),
        ),
        probe("GET", "/v1/inbox", "/v1/inbox".into(), Own(ok)).by(As::InboxToken),
        probe("GET", "/v1/inbox/unread-count", "/v1/inbox/unread-count".into(), Own(ok))
            .by(As::InboxToken),
        probe(
            "POST",
            "/v1/inbox/messages/{message_id}/read",
            format!("/v1/inbox/messages/{}/read", alpha.message_id),
            NotFound,
        )
        .by(As::InboxToken),
        probe("POST", "/v1/inbox/read-all", "/v1/inbox/read-all".into(), Own(ok))
            .by(As::InboxToken),
        probe("GET", "/v1/inbox/stream", "/v1/inbox/stream".into(), Own(ok))
            .by(As::InboxToken),
        probe("GET", "/v1/inbox/ws", "/v1/inbox/ws".into(), Refused).by(As::InboxToken),
        probe(
            "POST",
            "/v1/inbox/stream-ticket",
            "/v1/inbox/stream-ticket".into(),
            Own(StatusCode::CREATED),
        )
        .by(As::InboxToken),
        probe("GET", "/v1/templates/{template_id}", "/v1/templates/alpha-tpl".into(), NotFound),
        probe(
            "GET",
            "/v1/templates/{template_id}/versions",
            "/v1/templates/alpha-tpl/versions".into(),
            NotFound,
        ),
        probe(
            "GET",
            "/v1/templates/{template_id}/versions/{version}",
            "/v1/templates/alpha-tpl/versions/1".into(),
            NotFound,
        ),
        probe(
            "POST",
            "/v1/templates/{template_id}/rollback",
            "/v1/templates/alpha-tpl/rollback".into(),
            NotFound,
        )
        .body(json!({"version": 1})),
        probe(
            "GET",
            "/v1/users/{user_id}/followers",
            "/v1/users/alice/followers".into(),
            NotFound,
        ),
        probe(
            "POST",
            "/v1/users/{user_id}/followers",
            "/v1/users/alice/followers".into(),
            NotFound,
        )
        .body(json!({"follower_ids": ["bob"]})),
        probe(
            "DELETE",
            "/v1/users/{user_id}/followers/{follower_id}",
            "/v1/users/alice/followers/bob".into(),
            NotFound,
        ),
        probe("GET", "/v1/segments/{segment_id}", "/v1/segments/alpha-seg".into(), NotFound),
        probe(
            "GET",
            "/v1/segments/{segment_id}/members",
            "/v1/segments/alpha-seg/members".into(),
            NotFound,
        ),
        probe(
            "POST",
            "/v1/segments/{segment_id}/members",
            "/v1/segments/alpha-seg/members".into(),
            NotFound,
        )
        .body(json!({"user_ids": ["alice"]})),
        probe(
            "DELETE",
            "/v1/segments/{segment_id}/members/{user_id}",
            "/v1/segments/alpha-seg/members/alice".into(),
            NotFound,
        ),
        probe(
            "GET",
            "/v1/users/{user_id}/preferences",
            "/v1/users/alice/preferences".into(),
            Own(ok),
        ),
        probe(
            "POST",
            "/v1/users/{user_id}/preferences/opt-out",
            "/v1/users/alice/preferences/opt-out".into(),
            Own(ok),
        )
        .body(json!({"category": "marketing", "channel": "email"})),
        probe(
            "POST",
            "/v1/users/{user_id}/preferences/opt-in",
            "/v1/users/alice/preferences/opt-in".into(),
            Own(ok),
        )
        .body(json!({"category": "marketing", "channel": "push"})),
        probe(
            "PUT",
            "/v1/users/{user_id}/preferences",
            "/v1/users/alice/preferences".into(),
            Own(ok),
        )
        .body(json!({})),
        probe("GET", "/v1/suppressions", "/v1/suppressions".into(), Own(ok)),
        probe("GET", "/v1/suppressions/{channel}/{address}", suppressed.clone(), NotFound),
        probe("DELETE", "/v1/suppressions/{channel}/{address}", suppressed, NotFound),
        probe("DELETE", "/v1/users/{user_id}", "/v1/users/alice".into(), NotFound),
        probe(
            "POST",
            "/v1/templates/{template_id}/disable",
            "/v1/templates/alpha-tpl/disable".into(),
            NotFound,
        )
        .body(json!({"running": "cancel"})),
        probe(
            "POST",
            "/v1/templates/{template_id}/enable",
            "/v1/templates/alpha-tpl/enable".into(),
            NotFound,
        ),
        probe(
            "GET",
            "/v1/quotas/templates/{template_id}",
            "/v1/quotas/templates/alpha-tpl".into(),
            NotFound,
        ),
        probe(
            "PUT",
            "/v1/quotas/templates/{template_id}",
            "/v1/quotas/templates/alpha-tpl".into(),
            NotFound,
        )
        .body(json!({"per_second": 1})),
        probe(
            "DELETE",
            "/v1/quotas/templates/{template_id}",
            "/v1/quotas/templates/alpha-tpl".into(),
            NotFound,
        ),
        probe("GET", "/v1/webhooks/{endpoint_id}", hook.clone(), NotFound),
        probe("PATCH", "/v1/webhooks/{endpoint_id}", hook.clone(), NotFound)
            .body(json!({"enabled": false})),
        probe("POST", "/v1/webhooks/{endpoint_id}/rotate", format!("{hook}/rotate"), NotFound),
        probe("DELETE", "/v1/webhooks/{endpoint_id}", hook, NotFound),
        probe("GET", "/v1/webhooks", "/v1/webhooks".into(), Own(ok)),
        // b has no tenant quota of its own: a's is not what it reads or removes.
        probe("GET", "/v1/quotas/tenant", "/v1/quotas/tenant".into(), NotFound),
        probe("DELETE", "/v1/quotas/tenant", "/v1/quotas/tenant".into(), NotFound),
        // b cannot remove a's frequency cap (its category is the mark), and has its own.
        probe(
            "DELETE",
            "/v1/frequency-caps/{category}",
            format!("/v1/frequency-caps/{MARK}"),
            NotFound,
        ),
        probe("GET", "/v1/frequency-caps", "/v1/frequency-caps".into(), Own(ok)),
        probe(
            "PUT",
            "/v1/frequency-caps/{category}",
            "/v1/frequency-caps/marketing".into(),
            Own(ok),
        )
        .body(json!({"max": 1, "period_seconds": 60})),
        // Settings, quotas and switches are per tenant: b reads and sets its own.
        probe("GET", "/v1/quotas", "/v1/quotas".into(), Own(ok)),
        probe("PUT", "/v1/quotas/tenant", "/v1/quotas/tenant".into(), Own(ok))
            .body(json!({"per_second": 3})),
        probe("GET", "/v1/kill-switches/channels", "/v1/kill-switches/channels".into(), Own(ok)),
        probe(
            "POST",
            "/v1/kill-switches/channels/{channel}",
            "/v1/kill-switches/channels/email".into(),
            Own(ok),
        )
        .body(json!({"disabled": false})),
        probe("GET", "/v1/settings/blast-radius", "/v1/settings/blast-radius".into(), Own(ok)),
        probe("PUT", "/v1/settings/blast-radius", "/v1/settings/blast-radius".into(), Own(ok))
            .body(json!({"max_audience": 5})),
        probe("GET", "/v1/settings/timezone", "/v1/settings/timezone".into(), Own(ok)),
        probe("PUT", "/v1/settings/timezone", "/v1/settings/timezone".into(), Own(ok))
            .body(json!({"default_timezone": "Asia/Tokyo"})),
        probe("GET", "/v1/settings/quiet-hours", "/v1/settings/quiet-hours".into(), Own(ok)),
        probe("PUT", "/v1/settings/quiet-hours", "/v1/settings/quiet-hours".into(), Own(ok))
            .body(json!({"default": {"start": "23:00", "end": "06:00"}})),
        // Upserts and creations: b gets its own item under the same id.
        probe("POST", "/v1/templates", "/v1/templates".into(), Own(StatusCode::CREATED)).body(
            json!({"template_id": "alpha-tpl", "name": "B", "in_app": {"title": "b", "body": "b"}}),
        ),
        probe(
            "PUT",
            "/v1/templates/{template_id}",
            "/v1/templates/alpha-tpl".into(),
            Own(ok),
        )
        .body(json!({"name": "B", "in_app": {"title": "b", "body": "b2"}})),
        probe("PUT", "/v1/segments/{segment_id}", "/v1/segments/alpha-seg".into(), Own(ok))
            .body(json!({"name": "B", "user_ids": ["bee"]})),
        probe("POST", "/v1/suppressions", "/v1/suppressions".into(), Own(StatusCode::CREATED))
            .body(json!({"channel": "email", "address": "alice@a.test"})),
        probe("PUT", "/v1/users/{user_id}", "/v1/users/alice".into(), Own(ok))
            .body(json!({"name": "B's alice"})),
        probe("POST", "/v1/webhooks", "/v1/webhooks".into(), Own(StatusCode::CREATED))
            .body(json!({"url": "https://93.184.216.34/b"})),
    ];

    // The probes cover exactly the tenant routes the API documents (and the OpenAPI test
    // holds the document to the router), so a new route fails here until it is probed.
    let probed: BTreeSet<(String, String)> = probes
        .iter()
        .map(|p| (p.method.to_owned(), p.route.to_owned()))
        .collect();
    let documented = tenant_routes(&h).await;
    let unprobed: Vec<_> = documented.difference(&probed).collect();
    let undocumented: Vec<_> = probed.difference(&documented).collect();
    assert!(
        unprobed.is_empty() && undocumented.is_empty(),
        "tenant routes without an isolation probe: {unprobed:?}; probes of routes not in openapi.json: {undocumented:?}"
    );

    let mut wrong = Vec::new();
    for p in &probes {
        let credential = match p.by {
            As::Key => h.key(1),
            As::InboxToken => b_inbox.as_str(),
        };
        let (status, text) = if p.route == "/v1/inbox/stream" {
            read_stream_until_ready(&h, credential).await
        } else {
            let (status, body) = h
                .call(p.method, &p.uri, Some(credential), p.body.clone())
                .await;
            (status, body.to_string())
        };
        let status_ok = match p.expect {
            NotFound => status == StatusCode::NOT_FOUND,
            Own(want) => status == want,
            Refused => status.is_client_error() && status != StatusCode::NOT_FOUND,
        };
        // A 404 may echo the id it was asked for; a success must not mention a's items.
        let mut leaked = text.contains(MARK);
        if matches!(p.expect, Own(_)) {
            leaked |= text.contains(rid) || text.contains(&alpha.message_id);
        }
        if !status_ok || leaked {
            wrong.push(format!(
                "{} {} -> {status} (want {:?}){}: {text}",
                p.method,
                p.uri,
                p.expect,
                if leaked { " LEAKED" } else { "" }
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "cross-tenant answers:\n{}",
        wrong.join("\n")
    );

    // Nothing b did changed a's data or reached a's workflow.
    assert_eq!(snapshot(&h, &alpha).await, before);
    assert_eq!(h.orchestrator.started.lock().unwrap().len(), started);
    assert!(h.orchestrator.controls.lock().unwrap().is_empty());
    assert!(h.orchestrator.cancelled.lock().unwrap().is_empty());
    assert!(h.orchestrator.redrives.lock().unwrap().is_empty());
}
