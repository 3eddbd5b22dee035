//! Quiet hours at the API: the tenant's setting (`/v1/settings/quiet-hours`), a user's own
//! window on their profile, their 422s, and which requests the API marks for deferral.

use super::*;

/// The `quiet_hours` mark of the request started last.
fn marked(h: &Harness) -> bool {
    h.orchestrator
        .started
        .lock()
        .unwrap()
        .last()
        .expect("a request started")
        .quiet_hours
}

#[tokio::test]
async fn the_tenant_setting_is_its_own_and_marks_requests_below_high_priority() {
    let h = harness().await;
    let (status, setting) = h
        .call("GET", "/v1/settings/quiet-hours", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(setting, json!({"default": null, "bypass_categories": []}));
    // No window anywhere: nothing to defer, nothing marked.
    let (status, _) = h
        .call(
            "POST",
            "/v1/notify",
            Some(h.key(0)),
            Some(trigger("before")),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(!marked(&h));

    let (status, setting) = h
        .call(
            "PUT",
            "/v1/settings/quiet-hours",
            Some(h.key(0)),
            Some(json!({"default": {"start": "22:00", "end": "07:30"},
                        "bypass_categories": ["security", "security"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{setting}");
    assert_eq!(
        setting,
        json!({"default": {"start": "22:00:00", "end": "07:30:00"},
               "bypass_categories": ["security"]})
    );
    let (_, other) = h
        .call("GET", "/v1/settings/quiet-hours", Some(h.key(1)), None)
        .await;
    assert_eq!(other["default"], Value::Null, "another tenant's is its own");

    let (_, _) = h
        .call(
            "POST",
            "/v1/notify",
            Some(h.key(0)),
            Some(trigger("normal")),
        )
        .await;
    assert!(marked(&h), "a normal request is marked");
    let mut urgent = trigger("urgent");
    urgent["priority"] = json!("high");
    let (_, _) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(urgent))
        .await;
    assert!(!marked(&h), "high priority goes through");
}

#[tokio::test]
async fn a_users_own_window_marks_requests_and_reads_back() {
    let h = harness().await;
    let (status, user) = h
        .call(
            "PUT",
            "/v1/users/owl",
            Some(h.key(0)),
            Some(json!({"timezone": "Europe/Paris",
                        "quiet_hours": {"start": "23:00", "end": "06:45:30"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(
        user["quiet_hours"],
        json!({"start": "23:00:00", "end": "06:45:30"})
    );
    let (_, read) = h.call("GET", "/v1/users/owl", Some(h.key(0)), None).await;
    assert_eq!(read["quiet_hours"], user["quiet_hours"]);
    let (status, _) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("owl")))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        marked(&h),
        "a tenant with one user's window marks its requests"
    );
}

#[tokio::test]
async fn windows_that_cannot_be_read_are_422_naming_the_field() {
    let h = harness().await;
    for (path, body, field) in [
        (
            "/v1/users/u9",
            json!({"quiet_hours": {"start": "22h", "end": "08:00"}}),
            "quiet_hours",
        ),
        (
            "/v1/settings/quiet-hours",
            json!({"default": {"start": "22:00", "end": "22:00"}}),
            "default",
        ),
        (
            "/v1/settings/quiet-hours",
            json!({"bypass_categories": ["security", "Not A Category"]}),
            "bypass_categories[1]",
        ),
    ] {
        let (status, refused) = h.call("PUT", path, Some(h.key(0)), Some(body)).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {refused}"
        );
        assert_eq!(refused["error"]["field"], field, "{path}: {refused}");
        assert!(
            refused["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("HH:MM")
                    || m.contains("same time")
                    || m.contains("a-z")),
            "{refused}"
        );
    }
    let (_, kept) = h
        .call("GET", "/v1/settings/quiet-hours", Some(h.key(0)), None)
        .await;
    assert_eq!(kept["default"], Value::Null, "nothing was written");
}
