//! Where the guardrails meet: preflight's estimate follows the delivery quotas, and the operator
//! switches a channel off for every tenant at once.

use super::*;

async fn estimate(h: &Harness) -> Value {
    let (status, body) = h
        .call(
            "POST",
            "/v1/notify?dry_run=true",
            Some(h.key(0)),
            Some(preflight::promo("dry")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["estimated_completion"].clone()
}

#[tokio::test]
async fn the_completion_estimate_follows_the_tightest_quota() {
    let h = preflight::seeded().await;
    assert_eq!(estimate(&h).await["limited_by"], "platform_throughput");
    let (status, body) = h
        .call(
            "PUT",
            "/v1/quotas/tenant",
            Some(h.key(0)),
            Some(json!({"per_second": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h
        .call(
            "PUT",
            "/v1/quotas/templates/promo",
            Some(h.key(0)),
            Some(json!({"per_second": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tight = estimate(&h).await;
    assert_eq!(
        (
            &tight["limited_by"],
            &tight["deliveries_per_second"],
            &tight["seconds"]
        ),
        (&json!("quota"), &json!(2), &json!(3.0)),
        "6 deliverable at the template's 2/s: {tight}"
    );
}

#[tokio::test]
async fn the_operator_switches_a_channel_off_for_every_tenant() {
    let h = harness().await;
    let uri = "/v1/admin/kill-switches/channels/push";
    let off = json!({"disabled": true, "reason": "provider incident"});
    let (status, _) = h.call("POST", uri, Some(h.key(0)), Some(off.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a tenant key cannot");
    let (status, body) = h.call("POST", uri, Some(ADMIN_KEY), Some(off)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["scope"], &body["disabled"]),
        (&json!("global"), &json!(true))
    );
    for tenant in 0..2 {
        let (_, listed) = h
            .call(
                "GET",
                "/v1/kill-switches/channels",
                Some(h.key(tenant)),
                None,
            )
            .await;
        let global = listed["switches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["scope"] == "global" && s["channel"] == "push")
            .cloned();
        assert_eq!(
            global.map(|s| s["disabled"].clone()),
            Some(json!(true)),
            "{listed}"
        );
    }
    let (status, body) = h
        .call(
            "POST",
            uri.replace("push", "sms").as_str(),
            Some(ADMIN_KEY),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("channel"))
    );
}
