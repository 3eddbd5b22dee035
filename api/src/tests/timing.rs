//! Scheduled sends at the API: `send_at` and `delay_seconds` on notify (recorded as
//! `scheduled`, handed to the workflow as `run_at_ms`, previewed by a dry run), their 422s, and
//! `POST /v1/requests/{id}/schedule`.

use fanout_domain::timing::format_instant;
use fanout_store::now_ms;

use super::*;

#[tokio::test]
async fn a_delayed_notify_is_scheduled_with_its_time_in_the_input_status_and_preview() {
    let h = harness().await;
    let mut body = trigger("later");
    body["delay_seconds"] = json!(60);
    let before = now_ms();
    let (status, accepted) = h
        .call(
            "POST",
            "/v1/notify?dry_run=true",
            Some(h.key(0)),
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    let previewed = accepted["run_at_ms"]
        .as_i64()
        .expect("run_at_ms in the preview");
    assert!(previewed >= before + 60_000, "{accepted}");

    let (status, accepted) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["request_id"].as_str().unwrap();
    let run_at = h.orchestrator.started.lock().unwrap()[0]
        .run_at_ms
        .expect("the input carries the time");
    assert!((before + 60_000..=now_ms() + 60_000).contains(&run_at));
    let (_, status) = h
        .call("GET", &format!("/v1/status/{id}"), Some(h.key(0)), None)
        .await;
    assert_eq!(
        (&status["state"], &status["run_at_ms"]),
        (&json!("scheduled"), &json!(run_at)),
        "{status}"
    );
}

#[tokio::test]
async fn a_notify_without_a_time_runs_at_once() {
    let h = harness().await;
    for (field, value) in [
        ("delay_seconds", json!(0)),
        ("send_at", json!(format_instant(now_ms() - 1_000))),
    ] {
        let mut body = trigger(field);
        body[field] = value;
        let (status, accepted) = h
            .call("POST", "/v1/notify", Some(h.key(0)), Some(body))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let id = accepted["request_id"].as_str().unwrap();
        let (_, status) = h
            .call("GET", &format!("/v1/status/{id}"), Some(h.key(0)), None)
            .await;
        assert_eq!(status["state"], "running", "{status}");
        assert_eq!(status["run_at_ms"], Value::Null, "{status}");
    }
    assert!(
        h.orchestrator
            .started
            .lock()
            .unwrap()
            .iter()
            .all(|s| s.run_at_ms.is_none())
    );
}

#[tokio::test]
async fn times_that_cannot_be_honoured_are_422_naming_the_field_and_record_nothing() {
    let h = harness().await;
    let far = format_instant(now_ms() + 31 * 24 * 3_600_000);
    let old = format_instant(now_ms() - 3_600_000);
    for (extra, field) in [
        (json!({"send_at": "tomorrow at nine"}), "send_at"),
        (json!({"send_at": "2026-12-05T09:00:00"}), "send_at"),
        (json!({"send_at": far}), "send_at"),
        (json!({"send_at": old}), "send_at"),
        (json!({"delay_seconds": 2_592_001}), "delay_seconds"),
        (
            json!({"delay_seconds": 5, "send_at": format_instant(now_ms() + 60_000)}),
            "delay_seconds",
        ),
    ] {
        assert_refused(&h, "bad-time", &extra, field).await;
    }
    assert!(h.orchestrator.started.lock().unwrap().is_empty());
}

#[tokio::test]
async fn only_a_scheduled_request_moves() {
    let h = harness().await;
    let mut body = trigger("move-me");
    body["delay_seconds"] = json!(3600);
    let (_, accepted) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(body))
        .await;
    let scheduled = accepted["request_id"].as_str().unwrap().to_owned();
    let (_, accepted) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("now")))
        .await;
    let running = accepted["request_id"].as_str().unwrap().to_owned();

    let (status, moved) = move_to(&h, &scheduled, json!({"delay_seconds": 120})).await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    let run_at = moved["run_at_ms"].as_i64().unwrap();
    assert_eq!(
        h.orchestrator.reschedules.lock().unwrap().as_slice(),
        [(RequestId::parse(&scheduled).unwrap(), run_at)]
    );
    let (_, status) = h
        .call(
            "GET",
            &format!("/v1/status/{scheduled}"),
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status["run_at_ms"], json!(run_at), "{status}");

    let (status, refused) = move_to(&h, &running, json!({"delay_seconds": 120})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    for (body, field) in [
        (json!({}), "send_at"),
        (json!({"send_at": "soon"}), "send_at"),
        (
            json!({"send_at": format_instant(now_ms() + 60_000), "delay_seconds": 1}),
            "delay_seconds",
        ),
    ] {
        let (status, refused) = move_to(&h, &scheduled, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {refused}"
        );
        assert_eq!(refused["error"]["field"], field, "{body}: {refused}");
    }
    // Another tenant's request does not exist for this one.
    let (status, _) = h
        .call(
            "POST",
            &format!("/v1/requests/{scheduled}/schedule"),
            Some(h.key(1)),
            Some(json!({"delay_seconds": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(h.orchestrator.reschedules.lock().unwrap().len(), 1);
}

async fn move_to(h: &Harness, id: &str, body: Value) -> (StatusCode, Value) {
    h.call(
        "POST",
        &format!("/v1/requests/{id}/schedule"),
        Some(h.key(0)),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn a_local_time_notify_takes_the_tree_with_its_time_and_refuses_mixed_or_bad_times() {
    let h = harness().await;
    let mut body = trigger("nine");
    body["send_at_local"] = json!("09:00");
    let (status, accepted) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let started = h.orchestrator.started.lock().unwrap()[0].clone();
    assert_eq!(started.path.as_str(), "tree");
    assert_eq!(
        started.local_time.map(|t| t.to_string()).as_deref(),
        Some("09:00:00")
    );
    assert_eq!(started.run_at_ms, None);

    for (extra, field) in [
        (json!({"send_at_local": "9 am"}), "send_at_local"),
        (
            json!({"send_at_local": "2026-12-05T09:00+01:00"}),
            "send_at_local",
        ),
        (
            json!({"send_at_local": "09:00", "delay_seconds": 60}),
            "send_at_local",
        ),
    ] {
        assert_refused(&h, "bad-local", &extra, field).await;
    }
    assert_eq!(h.orchestrator.started.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_default_timezone_is_the_tenants_own_and_must_exist() {
    let h = harness().await;
    let (status, setting) = h
        .call("GET", "/v1/settings/timezone", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        setting,
        json!({"default_timezone": null, "effective": "UTC"})
    );
    let (status, setting) = h
        .call(
            "PUT",
            "/v1/settings/timezone",
            Some(h.key(0)),
            Some(json!({"default_timezone": "Asia/Tokyo"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{setting}");
    assert_eq!(setting["effective"], "Asia/Tokyo");
    let (_, other) = h
        .call("GET", "/v1/settings/timezone", Some(h.key(1)), None)
        .await;
    assert_eq!(
        other["effective"], "UTC",
        "another tenant's default is its own"
    );
    let (status, refused) = h
        .call(
            "PUT",
            "/v1/settings/timezone",
            Some(h.key(0)),
            Some(json!({"default_timezone": "Asia/Atlantis"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["field"], "default_timezone");
    let (_, kept) = h
        .call("GET", "/v1/settings/timezone", Some(h.key(0)), None)
        .await;
    assert_eq!(kept["default_timezone"], "Asia/Tokyo");
}

/// Posts `trigger(dedupe)` with `extra`'s fields added and checks it is a 422 naming `field`.
async fn assert_refused(h: &Harness, dedupe: &str, extra: &Value, field: &str) {
    let mut body = trigger(dedupe);
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, refused) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(body))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{extra}: {refused}"
    );
    assert_eq!(refused["error"]["field"], field, "{extra}: {refused}");
}
