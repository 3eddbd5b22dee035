//! Delivery quotas per tenant and per template, as the API sets and shows them.

use super::*;

#[tokio::test]
async fn template_quotas_are_stored_per_tenant_and_signal_running_requests() {
    let h = harness().await;
    let (status, body) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("q1")))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let uri = "/v1/quotas/templates/welcome";
    let (status, body) = h
        .call("PUT", uri, Some(h.key(0)), Some(json!({"per_second": 7})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "template");
    assert_eq!(body["template_id"], "welcome");
    assert_eq!(body["per_second"], 7);
    assert_eq!(body["signalled"], 1, "the running request was signalled");
    let signals = h.orchestrator.quota_signals.lock().unwrap().clone();
    assert_eq!(
        signals,
        vec![(
            TemplateId::parse("welcome").unwrap(),
            TemplateQuota {
                per_second: Some(7)
            }
        )]
    );
    // Deliveries read the same bucket.
    let tenant = TenantId::parse("a").unwrap();
    let key = fanout_store::limits::template_key(&tenant, &TemplateId::parse("welcome").unwrap());
    let bucket = h.store.bucket(&key).await.unwrap().unwrap();
    assert_eq!(bucket.ceiling_per_second, 7);

    // Tenant b sees none of it, and has its own.
    let (status, _) = h.call("GET", uri, Some(h.key(1)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = h.call("GET", "/v1/quotas", Some(h.key(1)), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["quotas"], json!([]));

    let (status, body) = h
        .call(
            "PUT",
            "/v1/quotas/tenant",
            Some(h.key(0)),
            Some(json!({"per_second": 100})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "tenant");
    let (_, body) = h.call("GET", "/v1/quotas", Some(h.key(0)), None).await;
    let listed: Vec<(String, u64)> = body["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["scope"].as_str().unwrap().to_owned(),
                q["per_second"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![("template".to_owned(), 7), ("tenant".to_owned(), 100)]
    );

    // Removing the template quota signals the lift.
    let (status, _) = h.call("DELETE", uri, Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let last = h.orchestrator.quota_signals.lock().unwrap().last().cloned();
    assert_eq!(last.map(|(_, q)| q.per_second), Some(None));
    let (status, _) = h.call("DELETE", uri, Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .call("DELETE", "/v1/quotas/tenant", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn quota_writes_are_validated() {
    let h = harness().await;
    let (status, body) = h
        .call(
            "PUT",
            "/v1/quotas/templates/welcome",
            Some(h.key(0)),
            Some(json!({"per_second": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "per_second");
    let (status, _) = h
        .call(
            "PUT",
            "/v1/quotas/templates/nope",
            Some(h.key(0)),
            Some(json!({"per_second": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .call(
            "PUT",
            "/v1/quotas/tenant",
            None,
            Some(json!({"per_second": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(h.orchestrator.quota_signals.lock().unwrap().is_empty());
}
