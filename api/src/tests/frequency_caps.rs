//! Frequency caps per category, as the API sets, lists and removes them.

use fanout_domain::frequency::FrequencyCap;

use super::*;

#[tokio::test]
async fn caps_are_set_listed_replaced_and_removed_per_tenant() {
    let h = harness().await;
    let uri = "/v1/frequency-caps/marketing";
    let (status, body) = h
        .call(
            "PUT",
            uri,
            Some(h.key(0)),
            Some(json!({"max": 3, "period_seconds": 86400})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["category"], "marketing");
    assert_eq!(
        (&body["max"], &body["period_seconds"]),
        (&json!(3), &json!(86400))
    );
    let (status, body) = h
        .call(
            "PUT",
            "/v1/frequency-caps/digest.weekly",
            Some(h.key(0)),
            Some(json!({"max": 1, "period_seconds": 60})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Delivery reads what the API wrote.
    let tenant = TenantId::parse("a").unwrap();
    let stored = h.store.frequency_cap(&tenant, "marketing").await.unwrap();
    assert_eq!(
        stored.map(|s| s.cap),
        Some(FrequencyCap {
            max: 3,
            period_seconds: 86_400
        })
    );

    let (status, body) = h
        .call("GET", "/v1/frequency-caps", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed: Vec<(&str, u64)> = body["frequency_caps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["category"].as_str().unwrap(), c["max"].as_u64().unwrap()))
        .collect();
    assert_eq!(listed, vec![("digest.weekly", 1), ("marketing", 3)]);

    // Tenant b sees none of it and cannot remove it.
    let (_, body) = h
        .call("GET", "/v1/frequency-caps", Some(h.key(1)), None)
        .await;
    assert_eq!(body["frequency_caps"], json!([]));
    let (status, _) = h.call("DELETE", uri, Some(h.key(1)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A second PUT replaces the cap.
    let (status, body) = h
        .call(
            "PUT",
            uri,
            Some(h.key(0)),
            Some(json!({"max": 5, "period_seconds": 3600})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = h
        .call("GET", "/v1/frequency-caps", Some(h.key(0)), None)
        .await;
    assert_eq!(body["frequency_caps"][1]["max"], 5);
    assert_eq!(body["frequency_caps"][1]["period_seconds"], 3600);

    let (status, _) = h.call("DELETE", uri, Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = h.call("DELETE", uri, Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        h.store.frequency_cap(&tenant, "marketing").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn cap_writes_out_of_bounds_are_422s_naming_the_field() {
    let h = harness().await;
    let put = |category: &'static str, body: Value| {
        let h = &h;
        async move {
            h.call(
                "PUT",
                &format!("/v1/frequency-caps/{category}"),
                Some(h.key(0)),
                Some(body),
            )
            .await
        }
    };
    for (category, body, field) in [
        (
            "marketing",
            json!({"max": 0, "period_seconds": 86400}),
            "max",
        ),
        (
            "marketing",
            json!({"max": 10_001, "period_seconds": 86400}),
            "max",
        ),
        (
            "marketing",
            json!({"max": -1, "period_seconds": 86400}),
            "max",
        ),
        (
            "marketing",
            json!({"max": 2, "period_seconds": 59}),
            "period_seconds",
        ),
        (
            "marketing",
            json!({"max": 2, "period_seconds": 31 * 86400 + 1}),
            "period_seconds",
        ),
        ("marketing", json!({"period_seconds": 60}), "max"),
        ("marketing", json!({"max": 2}), "period_seconds"),
        (
            "marketing",
            json!({"max": 2, "period_seconds": 60, "per": 1}),
            "per",
        ),
        (
            "Marketing",
            json!({"max": 2, "period_seconds": 60}),
            "category",
        ),
        (
            "bad%20name",
            json!({"max": 2, "period_seconds": 60}),
            "category",
        ),
    ] {
        let (status, answer) = put(category, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{category} {body}: {answer}"
        );
        assert_eq!(
            answer["error"]["field"], field,
            "{category} {body}: {answer}"
        );
    }
    // The bounds themselves are accepted.
    for body in [
        json!({"max": 1, "period_seconds": 60}),
        json!({"max": 10_000, "period_seconds": 31 * 86400}),
    ] {
        let (status, answer) = put("marketing", body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (status, answer) = h
        .call("DELETE", "/v1/frequency-caps/NOPE", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "category");
    let (status, _) = h.call("GET", "/v1/frequency-caps", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
