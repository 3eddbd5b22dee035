//! Followers and segments: stored audiences, paged, scoped to their tenant, with bodies validated.

use super::*;

#[tokio::test]
async fn followers_are_added_once_paged_and_removed() {
    let h = harness().await;
    h.call("PUT", "/v1/users/star", Some(h.key(0)), Some(json!({})))
        .await;
    let uri = "/v1/users/star/followers";
    let body = json!({"follower_ids": ["f3", "f1", "f2", "f1"]});
    let (status, answer) = h
        .call("POST", uri, Some(h.key(0)), Some(body.clone()))
        .await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"added": 3})));
    let (status, answer) = h.call("POST", uri, Some(h.key(0)), Some(body)).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"added": 0})));

    let (status, page) = h
        .call("GET", &format!("{uri}?limit=2"), Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["followers"], json!(["f1", "f2"]));
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) = h
        .call(
            "GET",
            &format!("{uri}?limit=2&cursor={cursor}"),
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(page, json!({"followers": ["f3"], "next_cursor": null}));

    let (status, _) = h
        .call("DELETE", &format!("{uri}/f2"), Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, answer) = h
        .call("DELETE", &format!("{uri}/f2"), Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (_, page) = h.call("GET", uri, Some(h.key(0)), None).await;
    assert_eq!(
        page,
        json!({"followers": ["f1", "f3"], "next_cursor": null})
    );
}

#[tokio::test]
async fn followers_of_unknown_or_other_tenants_users_are_404() {
    let h = harness().await;
    h.call("PUT", "/v1/users/star", Some(h.key(0)), Some(json!({})))
        .await;
    let add = json!({"follower_ids": ["f1"]});
    h.call(
        "POST",
        "/v1/users/star/followers",
        Some(h.key(0)),
        Some(add.clone()),
    )
    .await;
    for (method, uri, body) in [
        ("POST", "/v1/users/star/followers", Some(add.clone())),
        ("GET", "/v1/users/star/followers", None),
        ("DELETE", "/v1/users/star/followers/f1", None),
    ] {
        let (status, answer) = h.call(method, uri, Some(h.key(1)), body).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{method} {uri} leaked: {answer}"
        );
    }
    let (status, answer) = h
        .call(
            "POST",
            "/v1/users/nobody/followers",
            Some(h.key(0)),
            Some(add),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"]["message"], "user 'nobody' not found");
    // Tenant b's attempts changed nothing in tenant a.
    let (_, page) = h
        .call("GET", "/v1/users/star/followers", Some(h.key(0)), None)
        .await;
    assert_eq!(page["followers"], json!(["f1"]));
}

#[tokio::test]
async fn follower_bodies_and_pages_are_validated() {
    let h = harness().await;
    h.call("PUT", "/v1/users/star", Some(h.key(0)), Some(json!({})))
        .await;
    let too_many: Vec<String> = (0..10_001).map(|i| format!("f{i}")).collect();
    let cases = [
        (json!({}), "follower_ids", "missing"),
        (json!({"follower_ids": []}), "follower_ids", "at least one"),
        (
            json!({"follower_ids": too_many}),
            "follower_ids",
            "at most 10000",
        ),
        (
            json!({"follower_ids": ["ok", " padded"]}),
            "follower_ids",
            "[1]",
        ),
        (
            json!({"follower_ids": ["f1", "star"]}),
            "follower_ids",
            "itself",
        ),
        (
            json!({"follower_ids": ["f1"], "extra": 1}),
            "extra",
            "unknown field",
        ),
    ];
    for (body, field, hint) in cases {
        let (status, answer) = h
            .call(
                "POST",
                "/v1/users/star/followers",
                Some(h.key(0)),
                Some(body),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(hint), "'{message}' lacks '{hint}'");
    }
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=!!", "cursor"),
    ] {
        let uri = format!("/v1/users/star/followers?{query}");
        let (status, answer) = h.call("GET", &uri, Some(h.key(0)), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert_eq!(answer["error"]["field"], field);
    }
    let (_, page) = h
        .call("GET", "/v1/users/star/followers", Some(h.key(0)), None)
        .await;
    assert_eq!(page["followers"], json!([]), "nothing invalid was added");
}

#[tokio::test]
async fn segments_are_created_counted_paged_and_edited() {
    let h = harness().await;
    let (status, segment) = h
        .call(
            "PUT",
            "/v1/segments/beta",
            Some(h.key(0)),
            Some(json!({"name": "Beta", "user_ids": ["m2", "m1", "m2"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{segment}");
    assert_eq!(
        (
            &segment["segment_id"],
            &segment["name"],
            &segment["members"]
        ),
        (&json!("beta"), &json!("Beta"), &json!(2))
    );
    // A rename keeps the members.
    let (status, segment) = h
        .call(
            "PUT",
            "/v1/segments/beta",
            Some(h.key(0)),
            Some(json!({"name": "Beta testers"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{segment}");
    assert_eq!(
        (&segment["name"], &segment["members"]),
        (&json!("Beta testers"), &json!(2))
    );

    let members = "/v1/segments/beta/members";
    let (status, answer) = h
        .call(
            "POST",
            members,
            Some(h.key(0)),
            Some(json!({"user_ids": ["m3", "m1"]})),
        )
        .await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"added": 1})));
    let (_, got) = h
        .call("GET", "/v1/segments/beta", Some(h.key(0)), None)
        .await;
    assert_eq!(got["members"], 3);

    let (_, page) = h
        .call("GET", &format!("{members}?limit=2"), Some(h.key(0)), None)
        .await;
    assert_eq!(page["members"], json!(["m1", "m2"]));
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) = h
        .call(
            "GET",
            &format!("{members}?cursor={cursor}"),
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(page, json!({"members": ["m3"], "next_cursor": null}));

    let (status, _) = h
        .call("DELETE", &format!("{members}/m1"), Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .call("DELETE", &format!("{members}/m1"), Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, got) = h
        .call("GET", "/v1/segments/beta", Some(h.key(0)), None)
        .await;
    assert_eq!(got["members"], 2);
}

#[tokio::test]
async fn segments_of_other_tenants_and_unknown_segments_are_404() {
    let h = harness().await;
    h.call(
        "PUT",
        "/v1/segments/beta",
        Some(h.key(0)),
        Some(json!({"name": "Beta", "user_ids": ["m1"]})),
    )
    .await;
    let add = json!({"user_ids": ["intruder"]});
    for (method, uri, body) in [
        ("GET", "/v1/segments/beta", None),
        ("POST", "/v1/segments/beta/members", Some(add.clone())),
        ("GET", "/v1/segments/beta/members", None),
        ("DELETE", "/v1/segments/beta/members/m1", None),
        ("GET", "/v1/segments/nope", None),
        ("GET", "/v1/segments/bad%20id", None),
    ] {
        let (status, answer) = h.call(method, uri, Some(h.key(1)), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {answer}");
    }
    let (status, answer) = h
        .call(
            "POST",
            "/v1/segments/nope/members",
            Some(h.key(0)),
            Some(add),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"]["message"], "segment 'nope' not found");
    let (_, page) = h
        .call("GET", "/v1/segments/beta/members", Some(h.key(0)), None)
        .await;
    assert_eq!(page["members"], json!(["m1"]), "tenant b changed nothing");
}

#[tokio::test]
async fn segment_bodies_are_validated() {
    let h = harness().await;
    let too_many: Vec<String> = (0..10_001).map(|i| format!("m{i}")).collect();
    let cases = [
        ("/v1/segments/bad%20id", json!({"name": "B"}), "segment_id"),
        ("/v1/segments/beta", json!({}), "name"),
        ("/v1/segments/beta", json!({"name": " "}), "name"),
        (
            "/v1/segments/beta",
            json!({"name": "B", "user_ids": [""]}),
            "user_ids",
        ),
        (
            "/v1/segments/beta",
            json!({"name": "B", "user_ids": too_many}),
            "user_ids",
        ),
        (
            "/v1/segments/beta",
            json!({"name": "B", "owner": "x"}),
            "owner",
        ),
    ];
    for (uri, body, field) in cases {
        let (status, answer) = h.call("PUT", uri, Some(h.key(0)), Some(body.clone())).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
    }
    let (status, _) = h
        .call("GET", "/v1/segments/beta", Some(h.key(0)), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused segment is not stored"
    );
    h.call(
        "PUT",
        "/v1/segments/beta",
        Some(h.key(0)),
        Some(json!({"name": "B"})),
    )
    .await;
    for body in [json!({"user_ids": []}), json!({})] {
        let (status, answer) = h
            .call(
                "POST",
                "/v1/segments/beta/members",
                Some(h.key(0)),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"]["field"], "user_ids");
    }
}
