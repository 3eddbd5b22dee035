//! Kill switches: channels and templates switched off per tenant or globally, and what running requests do then.

use fanout_domain::{Channel, TemplateId};

use super::*;

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

async fn accepted(h: &Harness, key: usize, dedupe: &str) -> RequestId {
    let (status, body) = h
        .call(
            "POST",
            "/v1/notify",
            Some(h.key(key)),
            Some(trigger(dedupe)),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    RequestId::parse(body["request_id"].as_str().unwrap()).unwrap()
}

fn sorted(ids: &Value) -> Vec<String> {
    let mut ids: Vec<String> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_channel_switch_applies_to_the_callers_tenant_only() {
    let h = harness().await;
    let (status, body) = h
        .call(
            "POST",
            "/v1/kill-switches/channels/email",
            Some(h.key(0)),
            Some(json!({"disabled": true, "reason": "  bad campaign  "})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["channel"], "email");
    assert_eq!(body["scope"], "tenant");
    assert_eq!(body["disabled"], true);
    assert_eq!(body["reason"], "bad campaign");

    let held = h.store.disabled_channel(&tenant("a"), Channel::Email).await;
    assert!(held.unwrap().is_some());
    let other = h.store.disabled_channel(&tenant("b"), Channel::Email).await;
    assert_eq!(other.unwrap(), None);

    let (_, listed) = h
        .call("GET", "/v1/kill-switches/channels", Some(h.key(0)), None)
        .await;
    assert_eq!(listed["switches"].as_array().unwrap().len(), 1);
    let (_, listed) = h
        .call("GET", "/v1/kill-switches/channels", Some(h.key(1)), None)
        .await;
    assert_eq!(listed["switches"], json!([]));

    let (status, body) = h
        .call(
            "POST",
            "/v1/kill-switches/channels/email",
            Some(h.key(0)),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!((status, &body["disabled"]), (StatusCode::OK, &json!(false)));
    let held = h.store.disabled_channel(&tenant("a"), Channel::Email).await;
    assert_eq!(held.unwrap(), None);
}

#[tokio::test]
async fn channel_switches_are_validated_and_need_a_key() {
    let h = harness().await;
    let cases = [
        ("sms", json!({"disabled": true}), "channel"),
        ("email", json!({"reason": "x"}), "disabled"),
        ("email", json!({"disabled": true, "why": "x"}), "body"),
        (
            "push",
            json!({"disabled": true, "reason": "x".repeat(501)}),
            "reason",
        ),
    ];
    for (channel, body, field) in cases {
        let uri = format!("/v1/kill-switches/channels/{channel}");
        let (status, answer) = h.call("POST", &uri, Some(h.key(0)), Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        if field != "body" {
            assert_eq!(answer["error"]["field"], field, "{answer}");
        }
    }
    let (status, _) = h
        .call(
            "POST",
            "/v1/kill-switches/channels/email",
            None,
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let listed = h.store.list_channel_switches(&tenant("a")).await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

#[tokio::test]
async fn disabling_a_template_pauses_its_running_requests_and_enabling_resumes_them() {
    let h = harness().await;
    let first = accepted(&h, 0, "k1").await;
    let second = accepted(&h, 0, "k2").await;
    let other_tenant = accepted(&h, 1, "k1").await;

    let (status, body) = h
        .call(
            "POST",
            "/v1/templates/welcome/disable",
            Some(h.key(0)),
            Some(json!({"running": "pause", "reason": "wrong link"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], true);
    assert_eq!(body["running"], "pause");
    assert_eq!(body["failed"], json!([]));
    let mut expected = vec![first.to_string(), second.to_string()];
    expected.sort();
    assert_eq!(sorted(&body["request_ids"]), expected);
    {
        let controls = h.orchestrator.controls.lock().unwrap();
        assert_eq!(controls.len(), 2, "{controls:?}");
        assert!(
            controls
                .iter()
                .all(|(id, c)| *c == Control::Pause && id != &other_tenant)
        );
    }
    assert!(h.orchestrator.cancelled.lock().unwrap().is_empty());

    // New requests of the template are refused for this tenant only.
    let (status, body) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("k3")))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("disabled") && message.contains("wrong link"),
        "{message}"
    );
    accepted(&h, 1, "k3").await;

    let (status, body) = h
        .call("POST", "/v1/templates/welcome/enable", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], false);
    assert_eq!(sorted(&body["request_ids"]), expected);
    {
        let controls = h.orchestrator.controls.lock().unwrap();
        let resumed: Vec<_> = controls
            .iter()
            .filter(|(_, c)| *c == Control::Resume)
            .map(|(id, _)| id.to_string())
            .collect();
        assert_eq!(resumed.len(), 2);
        assert!(resumed.iter().all(|id| expected.contains(id)));
    }
    accepted(&h, 0, "k3").await;

    // Enabling again is a no-op: nothing is resumed twice.
    let (status, body) = h
        .call("POST", "/v1/templates/welcome/enable", Some(h.key(0)), None)
        .await;
    assert_eq!((status, &body["request_ids"]), (StatusCode::OK, &json!([])));
}

#[tokio::test]
async fn disabling_a_template_with_cancel_writes_the_cancel_through() {
    let h = harness().await;
    let running = accepted(&h, 0, "k1").await;
    let (status, body) = h
        .call(
            "POST",
            "/v1/templates/welcome/disable",
            Some(h.key(0)),
            Some(json!({"running": "cancel"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["request_ids"], json!([running.to_string()]));
    assert_eq!(
        *h.orchestrator.cancelled.lock().unwrap(),
        vec![running.clone()]
    );
    assert!(h.store.get_controls(&running).await.unwrap().cancelled);
    assert!(h.orchestrator.controls.lock().unwrap().is_empty());

    let switch = h
        .store
        .get_template_switch(&tenant("a"), &TemplateId::parse("welcome").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(switch.disabled && switch.paused_requests.is_empty());
    // Cancelled requests are not resumed by an enable.
    let (_, body) = h
        .call("POST", "/v1/templates/welcome/enable", Some(h.key(0)), None)
        .await;
    assert_eq!(body["request_ids"], json!([]));
    assert!(h.orchestrator.controls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn template_switches_are_validated_and_scoped_to_the_tenant() {
    let h = harness().await;
    let (status, body) = h
        .call(
            "PUT",
            "/v1/templates/only-a",
            Some(h.key(0)),
            Some(json!({"name": "A", "in_app": {"title": "Hi", "body": "hi"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    for body in [
        json!({}),
        json!({"running": "stop"}),
        json!({"running": "pause", "x": 1}),
    ] {
        let (status, answer) = h
            .call(
                "POST",
                "/v1/templates/only-a/disable",
                Some(h.key(0)),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    }
    for (method_path, body) in [
        (
            "/v1/templates/only-a/disable",
            Some(json!({"running": "pause"})),
        ),
        ("/v1/templates/only-a/enable", None),
        (
            "/v1/templates/missing/disable",
            Some(json!({"running": "cancel"})),
        ),
        (
            "/v1/templates/BAD%20ID/disable",
            Some(json!({"running": "cancel"})),
        ),
    ] {
        let (status, answer) = h.call("POST", method_path, Some(h.key(1)), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method_path}: {answer}");
    }
    let (status, _) = h
        .call(
            "POST",
            "/v1/templates/only-a/disable",
            None,
            Some(json!({"running": "pause"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let switch = h
        .store
        .get_template_switch(&tenant("a"), &TemplateId::parse("only-a").unwrap())
        .await
        .unwrap();
    assert_eq!(switch, None, "nothing was disabled");
}
