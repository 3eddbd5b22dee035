//! User profiles: round trips, time zones and devices, and erasure.

use super::*;

#[tokio::test]
async fn users_round_trip_and_bad_emails_are_422() {
    let h = harness().await;
    let (status, user) = h
        .call(
            "PUT",
            "/v1/users/u1",
            Some(h.key(0)),
            Some(json!({"email": "u1@example.com", "name": "U"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    let (status, got) = h.call("GET", "/v1/users/u1", Some(h.key(0)), None).await;
    assert_eq!((status, got), (StatusCode::OK, user));
    let (status, _) = h.call("GET", "/v1/users/u1", Some(h.key(1)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = h
        .call(
            "PUT",
            "/v1/users/u2",
            Some(h.key(0)),
            Some(json!({"email": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"]["field"], "email");
}

#[tokio::test]
async fn users_keep_time_zones_and_deduplicated_devices() {
    let h = harness().await;
    let body = json!({
        "name": "U",
        "timezone": "Europe/Paris",
        "devices": [
            {"platform": "apns", "token": "t1"},
            {"platform": "fcm", "token": "t2"},
            {"platform": "apns", "token": "t1"}
        ]
    });
    let (status, user) = h
        .call("PUT", "/v1/users/u1", Some(h.key(0)), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["timezone"], "Europe/Paris");
    assert_eq!(
        user["devices"],
        json!([{"platform": "apns", "token": "t1"}, {"platform": "fcm", "token": "t2"}])
    );
    let (status, got) = h.call("GET", "/v1/users/u1", Some(h.key(0)), None).await;
    assert_eq!((status, got), (StatusCode::OK, user));

    // PUT replaces: without them, the time zone and the devices are cleared.
    let (_, user) = h
        .call("PUT", "/v1/users/u1", Some(h.key(0)), Some(json!({})))
        .await;
    assert_eq!(
        (&user["timezone"], &user["devices"]),
        (&json!(null), &json!([]))
    );

    let cases = [
        (json!({"timezone": "Europe/Paris "}), "timezone"),
        (json!({"timezone": ""}), "timezone"),
        // The right shape, but no such zone in the IANA database.
        (json!({"timezone": "Mars/Olympus_Mons"}), "timezone"),
        (
            json!({"devices": [{"platform": "fcm", "token": "ok"}, {"platform": "fcm", "token": "a b"}]}),
            "devices[1].token",
        ),
        (
            json!({"devices": [{"platform": "sms", "token": "t"}]}),
            "devices[0].platform",
        ),
        (
            json!({"devices": [{"platform": "fcm"}]}),
            "devices[0].token",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = h
            .call("PUT", "/v1/users/u2", Some(h.key(0)), Some(body.clone()))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
    }
}

#[tokio::test]
async fn deleting_a_user_erases_them_for_their_tenant_only() {
    let h = harness().await;
    for key in [h.key(0), h.key(1)] {
        let (status, _) = h
            .call(
                "PUT",
                "/v1/users/u9",
                Some(key),
                Some(json!({"email": "u9@example.com"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = h.call("DELETE", "/v1/users/u9", Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.call("GET", "/v1/users/u9", Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.call("DELETE", "/v1/users/u9", Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleting twice is a 404");
    let (status, _) = h.call("GET", "/v1/users/u9", Some(h.key(1)), None).await;
    assert_eq!(status, StatusCode::OK, "the other tenant's u9 is untouched");
    let (status, _) = h.call("DELETE", "/v1/users/u9", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
