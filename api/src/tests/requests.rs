//! Requests once accepted: receipts, the controls that reach a running workflow, and dead letters.

use super::*;

#[tokio::test]
async fn receipts_reject_bad_cursors_and_limits() {
    let h = harness().await;
    let (_, a) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("r")))
        .await;
    let id = a["request_id"].as_str().unwrap();
    let (status, page) = h
        .call(
            "GET",
            &format!("/v1/receipts?request_id={id}"),
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page, json!({"receipts": [], "next_cursor": null}));
    for (query, field) in [
        ("&limit=0", "limit"),
        ("&limit=5000", "limit"),
        ("&cursor=!!", "cursor"),
    ] {
        let uri = format!("/v1/receipts?request_id={id}{query}");
        let (status, answer) = h.call("GET", &uri, Some(h.key(0)), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert_eq!(answer["error"]["field"], field);
    }
}

#[tokio::test]
async fn controls_reach_the_workflow_and_cancel_is_written_through() {
    let h = harness().await;
    let (_, a) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("c1")))
        .await;
    let id = a["request_id"].as_str().unwrap().to_owned();

    let (status, body) = h
        .call(
            "POST",
            &format!("/v1/requests/{id}/pause"),
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _) = h
        .call(
            "POST",
            &format!("/v1/requests/{id}/rate"),
            Some(h.key(0)),
            Some(json!({"per_second": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = h
        .call(
            "POST",
            &format!("/v1/requests/{id}/rate"),
            Some(h.key(0)),
            Some(json!({"per_second": 0})),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("per_second"))
    );
    let (status, _) = h
        .call(
            "POST",
            &format!("/v1/requests/{id}/pause"),
            Some(h.key(1)),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another tenant cannot pause it"
    );
    let sent: Vec<Control> = h
        .orchestrator
        .controls
        .lock()
        .unwrap()
        .iter()
        .map(|(_, c)| *c)
        .collect();
    assert_eq!(sent, vec![Control::Pause, Control::SetRate(Some(5))]);

    for body in [json!({}), json!({"request_id": id, "dedupe_key": "c1"})] {
        let (status, answer) = h
            .call("POST", "/v1/cancel", Some(h.key(0)), Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    }
    let (status, _) = h
        .call(
            "POST",
            "/v1/cancel",
            Some(h.key(1)),
            Some(json!({"dedupe_key": "c1"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "dedupe keys are per tenant");
    let (status, body) = h
        .call(
            "POST",
            "/v1/cancel",
            Some(h.key(0)),
            Some(json!({"dedupe_key": "c1"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["request_id"], id.as_str());
    let request_id = RequestId::parse(&id).unwrap();
    assert_eq!(
        h.orchestrator.cancelled.lock().unwrap().clone(),
        vec![request_id.clone()]
    );
    assert!(h.store.get_controls(&request_id).await.unwrap().cancelled);

    h.store
        .finalize_request(
            &request_id,
            fanout_domain::receipt::RequestState::Cancelled,
            &Progress::default(),
        )
        .await
        .unwrap();
    let (status, body) = h
        .call(
            "POST",
            &format!("/v1/requests/{id}/resume"),
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn dead_letters_are_listed_per_tenant_and_redriven_once_finished() {
    use fanout_domain::receipt::{DeliveryStatus, Receipt, RequestState};
    use fanout_domain::{Channel, InstanceId, UserId};

    let h = harness().await;
    let (_, a) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("dl1")))
        .await;
    let id = a["request_id"].as_str().unwrap().to_owned();
    let request_id = RequestId::parse(&id).unwrap();
    let tenant = TenantId::parse("a").unwrap();
    let failed = |user: &str, code: &str| Receipt {
        instance_id: InstanceId::derive(&request_id, &UserId::parse(user).unwrap(), Channel::Email),
        request_id: request_id.clone(),
        user_id: UserId::parse(user).unwrap(),
        channel: Channel::Email,
        status: DeliveryStatus::Failed,
        provider_message_id: None,
        provider: None,
        attempts: 1,
        latency_ms: None,
        error_code: Some(code.into()),
        error_message: Some("550 mailbox unavailable".into()),
        updated_at_ms: 1,
        release_at_ms: None,
    };
    h.store
        .record_page_deliveries(
            &tenant,
            3,
            &mut [failed("u1", "smtp_550"), failed("u2", "smtp_552")],
            &mut vec![],
        )
        .await
        .unwrap();

    let (status, body) = h
        .call(
            "GET",
            &format!("/v1/dead-letters?request_id={id}"),
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = body["dead_letters"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{body}");
    let u1 = listed.iter().find(|d| d["user_id"] == "u1").unwrap();
    assert_eq!(
        (u1["page"].as_u64(), &u1["error_code"]),
        (Some(3), &json!("smtp_550"))
    );
    let (_, other) = h
        .call("GET", "/v1/dead-letters", Some(h.key(1)), None)
        .await;
    assert_eq!(other["dead_letters"], json!([]), "another tenant sees none");
    let (status, _) = h
        .call("GET", "/v1/dead-letters?channel=sms", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let redrive = json!({"request_id": id});
    let (status, body) = h
        .call(
            "POST",
            "/v1/dead-letters/redrive",
            Some(h.key(0)),
            Some(redrive.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "still running: {body}");
    h.store
        .finalize_request(&request_id, RequestState::Completed, &Progress::default())
        .await
        .unwrap();
    let (status, _) = h
        .call(
            "POST",
            "/v1/dead-letters/redrive",
            Some(h.key(1)),
            Some(redrive.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's request");
    let (status, body) = h
        .call(
            "POST",
            "/v1/dead-letters/redrive",
            Some(h.key(0)),
            Some(json!({"request_id": id, "instance_ids": ["nope"]})),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("instance_ids[0]"))
    );
    let (status, body) = h
        .call(
            "POST",
            "/v1/dead-letters/redrive",
            Some(h.key(0)),
            Some(redrive.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["instances"], 2);
    let started = h.orchestrator.redrives.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    let (input, priority) = &started[0];
    assert_eq!(input.request.request_id, request_id);
    assert_eq!(input.request.template_id.as_str(), "welcome");
    assert_eq!(Some(input.redrive_id.as_str()), body["redrive_id"].as_str());
    // A re-drive runs at its request's priority, in its tenant's share of the queue.
    assert_eq!(
        priority,
        &TaskPriority {
            priority_key: Some(3),
            fairness_key: Some(tenant),
            fairness_weight: None,
        }
    );
}
