//! The priority and fairness every workflow start carries, as the orchestrator receives them.

use std::time::Duration;

use axum::http::StatusCode;
use fanout_domain::TenantId;
use serde_json::{Value, json};

use super::{ADMIN_KEY, Harness, harness, harness_with, trigger};
use crate::scheduling::{SchedulingConfig, TaskPriority};

/// Triggers a request as tenant `key` with `priority` (absent: the default) and returns the
/// priority its start was given.
async fn start_priority(
    h: &Harness,
    key: usize,
    dedupe: &str,
    priority: Option<&str>,
) -> TaskPriority {
    let mut body = trigger(dedupe);
    if let Some(p) = priority {
        body["priority"] = json!(p);
    }
    let (status, answer) = h
        .call("POST", "/v1/notify", Some(h.key(key)), Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let started = h.orchestrator.started.lock().unwrap();
    let index = started
        .iter()
        .position(|s| answer["request_id"] == s.request_id.as_str())
        .expect("the request was started");
    h.orchestrator.priorities.lock().unwrap()[index].clone()
}

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

async fn patch_weight(h: &Harness, tenant: &str, weight: Value) -> Value {
    let (status, body) = h
        .call(
            "PATCH",
            &format!("/v1/admin/tenants/{tenant}"),
            Some(ADMIN_KEY),
            Some(json!({ "fairness_weight": weight })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn high_normal_and_low_requests_start_with_priority_keys_1_3_and_5() {
    let h = harness().await;
    for (dedupe, priority, key) in [
        ("p-high", Some("high"), 1),
        ("p-normal", Some("normal"), 3),
        ("p-default", None, 3),
        ("p-low", Some("low"), 5),
    ] {
        let started = start_priority(&h, 0, dedupe, priority).await;
        assert_eq!(
            started,
            TaskPriority {
                priority_key: Some(key),
                fairness_key: Some(tenant("a")),
                fairness_weight: None,
            },
            "{dedupe}"
        );
    }
}

#[tokio::test]
async fn the_tenants_fairness_weight_reaches_its_starts_and_no_other_tenants() {
    let h = harness().await;
    // The first trigger caches a's settings; a change through this process applies at once.
    assert_eq!(
        start_priority(&h, 0, "w-0", None).await.fairness_weight,
        None
    );
    let tenant_view = patch_weight(&h, "a", json!(2.5)).await;
    assert_eq!(tenant_view["settings"]["fairness_weight"], 2.5);
    assert_eq!(tenant_view["effective"]["fairness_weight"], 2.5);
    let (_, got) = h
        .call("GET", "/v1/admin/tenants/a", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(got["settings"]["fairness_weight"], 2.5, "{got}");

    let a = start_priority(&h, 0, "w-1", Some("low")).await;
    assert_eq!(
        a,
        TaskPriority {
            priority_key: Some(5),
            fairness_key: Some(tenant("a")),
            fairness_weight: Some(2.5),
        }
    );
    let b = start_priority(&h, 1, "w-1", None).await;
    assert_eq!(
        (b.fairness_key, b.fairness_weight),
        (Some(tenant("b")), None)
    );

    // Null returns the tenant to the server's default weight.
    let cleared = patch_weight(&h, "a", Value::Null).await;
    assert_eq!(cleared["settings"]["fairness_weight"], Value::Null);
    assert_eq!(cleared["effective"]["fairness_weight"], 1.0);
    assert_eq!(
        start_priority(&h, 0, "w-2", None).await.fairness_weight,
        None
    );
}

#[tokio::test]
async fn switched_off_scheduling_starts_without_keys_or_weight() {
    let off = SchedulingConfig {
        priority: false,
        fairness: false,
    };
    let h = harness_with(Duration::from_secs(3600), off).await;
    patch_weight(&h, "a", json!(4)).await;
    assert_eq!(
        start_priority(&h, 0, "off", Some("high")).await,
        TaskPriority::default()
    );

    let fairness_only = SchedulingConfig {
        priority: false,
        fairness: true,
    };
    let h = harness_with(Duration::from_secs(3600), fairness_only).await;
    patch_weight(&h, "a", json!(4)).await;
    assert_eq!(
        start_priority(&h, 0, "fair", Some("high")).await,
        TaskPriority {
            priority_key: None,
            fairness_key: Some(tenant("a")),
            fairness_weight: Some(4.0),
        }
    );
}

#[tokio::test]
async fn a_fairness_weight_out_of_range_is_422_naming_the_field_and_range() {
    let h = harness().await;
    for weight in [json!(0), json!(1001), json!(true)] {
        let (status, body) = h
            .call(
                "PATCH",
                "/v1/admin/tenants/a",
                Some(ADMIN_KEY),
                Some(json!({ "fairness_weight": weight })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{weight}: {body}");
        assert_eq!(body["error"]["field"], "fairness_weight");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("0.001 to 1000"), "{message}");
    }
    // The bounds themselves are accepted.
    for weight in [0.001, 1000.0] {
        let body = patch_weight(&h, "a", json!(weight)).await;
        assert_eq!(body["settings"]["fairness_weight"], weight);
    }
}

#[test]
fn the_switches_come_from_the_environment_and_default_to_on() {
    let config: crate::Config = fanout_runtime::config::load(None, &Default::default()).unwrap();
    assert_eq!(config.scheduling, SchedulingConfig::default());
    assert!(config.scheduling.priority && config.scheduling.fairness);
    let env = std::collections::HashMap::from([
        ("FANOUT_SCHEDULING__PRIORITY".to_owned(), "false".to_owned()),
        ("FANOUT_SCHEDULING__FAIRNESS".to_owned(), "false".to_owned()),
    ]);
    let config: crate::Config = fanout_runtime::config::load(None, &env).unwrap();
    assert_eq!(
        config.scheduling,
        SchedulingConfig {
            priority: false,
            fairness: false,
        }
    );
}
