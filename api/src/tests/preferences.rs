//! Preferences and suppressions: validated documents, opt-out and back in, and what stays in a tenant.

use super::*;

#[tokio::test]
async fn preference_documents_are_validated_with_the_offending_key_named() {
    let h = harness().await;
    let uri = "/v1/users/u1/preferences";
    for (body, field) in [
        (json!({"channels": {"sms": false}}), "channels.sms"),
        (
            json!({"categories": {"news": {"email": true, "sms": false}}}),
            "categories.news.sms",
        ),
        (
            json!({"categories": {"bad name": {"email": false}}}),
            "categories.bad name",
        ),
        (json!({"channels": {"email": "no"}}), "channels.email"),
        (json!({"user_id": "someone-else"}), "user_id"),
    ] {
        let (status, answer) = h.call("PUT", uri, Some(h.key(0)), Some(body.clone())).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
    }
    let (status, _) = h
        .call("PUT", uri, Some(h.key(0)), Some(json!({"channel": {}})))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown top-level key"
    );
    for (body, field) in [
        (json!({}), "channel"),
        (json!({"channel": "sms"}), "channel"),
        (json!({"category": "a b"}), "category"),
        (json!({"channel": "push", "category": ""}), "category"),
    ] {
        let (status, answer) = h
            .call(
                "POST",
                &format!("{uri}/opt-out"),
                Some(h.key(0)),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
    }
    // Nothing invalid was stored.
    let (status, doc) = h.call("GET", uri, Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        doc,
        json!({"user_id": "u1", "channels": {}, "categories": {}})
    );
}

#[tokio::test]
async fn opting_out_and_back_in_round_trips_and_is_what_delivery_sees() {
    use fanout_domain::{Channel, UserId};

    let h = harness().await;
    let tenant = TenantId::parse("a").unwrap();
    // The user does not exist yet: products set preferences early.
    let uri = "/v1/users/later/preferences";
    let user = UserId::parse("later").unwrap();
    let blocked = |channel, category: &'static str| {
        let (store, tenant, user) = (h.store.clone(), tenant.clone(), user.clone());
        async move {
            store
                .blocked_by_preferences(&tenant, std::slice::from_ref(&user), channel, category)
                .await
                .unwrap()
                .contains(&user)
        }
    };

    let (status, doc) = h
        .call(
            "POST",
            &format!("{uri}/opt-out"),
            Some(h.key(0)),
            Some(json!({"category": "marketing"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(
        doc["categories"],
        json!({"marketing": {"email": false, "in_app": false, "push": false}})
    );
    assert!(blocked(Channel::Email, "marketing").await);
    assert!(!blocked(Channel::Email, "security").await);

    let (status, doc) = h
        .call(
            "POST",
            &format!("{uri}/opt-in"),
            Some(h.key(0)),
            Some(json!({"category": "marketing", "channel": "push"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["categories"]["marketing"]["push"], true);
    assert!(!blocked(Channel::Push, "marketing").await);
    assert!(blocked(Channel::InApp, "marketing").await);

    let (status, doc) = h
        .call(
            "POST",
            &format!("{uri}/opt-out"),
            Some(h.key(0)),
            Some(json!({"channel": "push"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["channels"], json!({"push": false}));
    assert!(blocked(Channel::Push, "security").await, "push is off");
    assert!(
        !blocked(Channel::Push, "marketing").await,
        "the marketing rule overrides the push default"
    );

    // GET returns what the calls built; PUT of that document changes nothing; PUT of {} clears.
    let (status, read) = h.call("GET", uri, Some(h.key(0)), None).await;
    assert_eq!((status, &read), (StatusCode::OK, &doc));
    let (status, put) = h.call("PUT", uri, Some(h.key(0)), Some(read.clone())).await;
    assert_eq!((status, &put), (StatusCode::OK, &read));
    let (status, cleared) = h.call("PUT", uri, Some(h.key(0)), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        cleared,
        json!({"user_id": "later", "channels": {}, "categories": {}})
    );
    assert!(!blocked(Channel::Push, "security").await);
}

#[tokio::test]
async fn suppressions_are_added_listed_and_removed_by_encoded_address() {
    let h = harness().await;
    let add = |body: Value| h.call("POST", "/v1/suppressions", Some(h.key(0)), Some(body));
    let (status, entry) = add(json!({
        "channel": "email", "address": "Ada+news@Example.com", "detail": "asked by phone"
    }))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    assert_eq!(entry["address"], "ada+news@example.com");
    assert_eq!(entry["reason"], "manual");
    let (status, again) = add(json!({
        "channel": "email", "address": "ada+news@example.com", "reason": "complaint"
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "already there");
    assert_eq!(again, entry, "the first reason is kept");
    for i in 0..3 {
        let (status, _) = add(json!({
            "channel": "push", "address": format!("tok/{i}"), "reason": "invalid_token"
        }))
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    for (body, field) in [
        (json!({"channel": "in_app", "address": "x"}), "channel"),
        (json!({"channel": "sms", "address": "x"}), "channel"),
        (
            json!({"channel": "email", "address": "not-an-email"}),
            "address",
        ),
        (
            json!({"channel": "push", "address": "has space"}),
            "address",
        ),
        (
            json!({"channel": "push", "address": "t", "reason": "soft_bounce"}),
            "reason",
        ),
        (
            json!({"channel": "push", "address": "t", "detail": "x".repeat(1025)}),
            "detail",
        ),
        (json!({"channel": "push"}), "address"),
    ] {
        let (status, answer) = add(body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
    }

    // Pages of two walk all four entries in (channel, address) order.
    let mut seen = Vec::new();
    let mut uri = "/v1/suppressions?limit=2".to_owned();
    loop {
        let (status, page) = h.call("GET", &uri, Some(h.key(0)), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for e in page["suppressions"].as_array().unwrap() {
            seen.push(e["address"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/suppressions?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["ada+news@example.com", "tok/0", "tok/1", "tok/2"]);
    let (_, push) = h
        .call("GET", "/v1/suppressions?channel=push", Some(h.key(0)), None)
        .await;
    assert_eq!(push["suppressions"].as_array().unwrap().len(), 3);
    let (_, one) = h
        .call(
            "GET",
            "/v1/suppressions?address=ADA%2Bnews%40example.com",
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(one["suppressions"], json!([entry]));
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("channel=sms", "channel"),
        ("cursor=%25%25", "cursor"),
    ] {
        let (status, answer) = h
            .call(
                "GET",
                &format!("/v1/suppressions?{query}"),
                Some(h.key(0)),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(answer["error"]["field"], field, "{query}");
    }

    // Addresses travel percent-encoded: '/' in a token, '+' and '@' in an email address.
    let (status, got) = h
        .call("GET", "/v1/suppressions/push/tok%2F1", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["address"], "tok/1");
    let (status, _) = h
        .call(
            "DELETE",
            "/v1/suppressions/push/tok%2F1",
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .call(
            "DELETE",
            "/v1/suppressions/push/tok%2F1",
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleting twice is a 404");
    let (status, _) = h
        .call(
            "DELETE",
            "/v1/suppressions/email/Ada%2Bnews%40example.com",
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .call("DELETE", "/v1/suppressions/sms/x", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let tenant = TenantId::parse("a").unwrap();
    let left = h
        .store
        .suppressed_addresses(
            &tenant,
            fanout_domain::Channel::Push,
            &["tok/0", "tok/1", "tok/2"],
        )
        .await
        .unwrap();
    assert_eq!(
        left,
        HashSet::from(["tok/0".to_owned(), "tok/2".to_owned()])
    );
    let (status, _) = h.call("GET", "/v1/suppressions", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn preferences_and_suppressions_stay_in_their_tenant() {
    let h = harness().await;
    let (status, _) = h
        .call(
            "POST",
            "/v1/users/u1/preferences/opt-out",
            Some(h.key(0)),
            Some(json!({"channel": "email"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, theirs) = h
        .call("GET", "/v1/users/u1/preferences", Some(h.key(1)), None)
        .await;
    assert_eq!(theirs["channels"], json!({}), "tenant b's u1 has no rules");
    let (status, _) = h
        .call(
            "POST",
            "/v1/suppressions",
            Some(h.key(0)),
            Some(json!({"channel": "email", "address": "a@example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, listed) = h
        .call("GET", "/v1/suppressions", Some(h.key(1)), None)
        .await;
    assert_eq!(listed["suppressions"], json!([]));
    let uri = "/v1/suppressions/email/a%40example.com";
    let (status, _) = h.call("GET", uri, Some(h.key(1)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.call("DELETE", uri, Some(h.key(1)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "b cannot remove a's entry");
    let (status, _) = h.call("GET", uri, Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::OK, "a's entry is still there");
}

#[tokio::test]
async fn erasing_a_user_erases_their_preferences_and_suppressed_addresses() {
    let h = harness().await;
    let (status, _) = h
        .call(
            "PUT",
            "/v1/users/u7",
            Some(h.key(0)),
            Some(json!({
                "email": "u7@example.com",
                "devices": [{"platform": "apns", "token": "apns-u7"}]
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .call(
            "POST",
            "/v1/users/u7/preferences/opt-out",
            Some(h.key(0)),
            Some(json!({"channel": "email"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for (channel, address) in [
        ("email", "U7@example.com"),
        ("push", "apns-u7"),
        ("email", "other@example.com"),
    ] {
        let (status, _) = h
            .call(
                "POST",
                "/v1/suppressions",
                Some(h.key(0)),
                Some(json!({"channel": channel, "address": address, "reason": "hard_bounce"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, _) = h.call("DELETE", "/v1/users/u7", Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, doc) = h
        .call("GET", "/v1/users/u7/preferences", Some(h.key(0)), None)
        .await;
    assert_eq!(doc["channels"], json!({}));
    let (_, listed) = h
        .call("GET", "/v1/suppressions", Some(h.key(0)), None)
        .await;
    let addresses: Vec<&str> = listed["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["other@example.com"]);
}
