//! Templates: versions, rollback, locale variants, and content refused with every problem located.

use super::*;

#[tokio::test]
async fn templates_with_syntax_errors_are_refused_with_part_and_line() {
    let h = harness().await;
    let body =
        json!({"name": "Broken", "in_app": {"title": "ok", "body": "line one\n{{ user.name"}});
    let (status, answer) = h
        .call("PUT", "/v1/templates/broken", Some(h.key(0)), Some(body))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["field"], "in_app.body");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{answer}"
    );
    let (status, _) = h
        .call("GET", "/v1/templates/broken", Some(h.key(0)), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused template is not stored"
    );

    let (status, answer) = h
        .call(
            "PUT",
            "/v1/templates/empty",
            Some(h.key(0)),
            Some(json!({"name": "Empty"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");

    let (status, saved) = h
        .call("GET", "/v1/templates/welcome", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(saved["version"], 1);
}

/// A template body with email and in-app content and a French in-app variant.
fn localized_template(subject: &str) -> Value {
    json!({
        "name": "Post",
        "category": "social",
        "email": {"subject": subject, "text": "Hi {{ user.name }}"},
        "in_app": {"title": "{{ data.actor }} posted", "body": "Look", "action_url": "app://p/{{ data.id }}"},
        "push": {"title": "{{ data.actor }}", "body": "posted", "data": {"post": "{{ data.id }}"}},
        "locales": {"fr": {"in_app": {"title": "{{ data.actor }} a publié", "body": "Regardez"}}}
    })
}

#[tokio::test]
async fn templates_are_created_once_then_versioned_by_each_write() {
    let h = harness().await;
    let mut body = localized_template("{{ data.actor }} posted");
    body["template_id"] = json!("post");
    let (status, created) = h
        .call("POST", "/v1/templates", Some(h.key(0)), Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["version"], 1);
    assert_eq!(created["category"], "social");
    assert_eq!(created["default_locale"], "en");
    assert_eq!(
        created["locales"]["fr"]["in_app"]["title"],
        "{{ data.actor }} a publié"
    );
    assert_eq!(created["push"]["data"]["post"], "{{ data.id }}");
    let (status, answer) = h
        .call("POST", "/v1/templates", Some(h.key(0)), Some(body))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    // The same id is free in another tenant.
    let mut other = localized_template("x");
    other["template_id"] = json!("post");
    let (status, _) = h
        .call("POST", "/v1/templates", Some(h.key(1)), Some(other))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, v2) = h
        .call(
            "PUT",
            "/v1/templates/post",
            Some(h.key(0)),
            Some(localized_template("New: {{ data.actor }}")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v2}");
    assert_eq!(v2["version"], 2);
    let (status, active) = h
        .call("GET", "/v1/templates/post", Some(h.key(0)), None)
        .await;
    assert_eq!((status, &active), (StatusCode::OK, &v2));

    let (status, page) = h
        .call("GET", "/v1/templates/post/versions", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["active_version"], 2);
    let versions: Vec<_> = page["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].clone(), v["email"]["subject"].clone()))
        .collect();
    assert_eq!(
        versions,
        vec![
            (json!(2), json!("New: {{ data.actor }}")),
            (json!(1), json!("{{ data.actor }} posted")),
        ]
    );
    // The last page has no next_before at all: the document says absent, not null.
    assert!(page.get("next_before").is_none(), "{page}");
    let (status, first_page) = h
        .call(
            "GET",
            "/v1/templates/post/versions?limit=1",
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first_page["versions"].as_array().unwrap().len(), 1);
    assert_eq!(first_page["next_before"], 2);
    let (status, rest) = h
        .call(
            "GET",
            "/v1/templates/post/versions?limit=1&before=2",
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rest["versions"][0]["version"], 1);
    assert!(rest.get("next_before").is_none(), "{rest}");
    for before in ["1", "0", "-5200852765"] {
        let (status, body) = h
            .call(
                "GET",
                &format!("/v1/templates/post/versions?before={before}"),
                Some(h.key(0)),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{before}: {body}");
        assert_eq!(body["error"]["field"], "before", "{body}");
    }
    let (status, _) = h
        .call(
            "GET",
            "/v1/templates/post/versions?limit=0",
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, v1) = h
        .call("GET", "/v1/templates/post/versions/1", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v1["email"]["subject"], "{{ data.actor }} posted");
    for missing in [
        "/v1/templates/post/versions/3",
        "/v1/templates/post/versions/x",
    ] {
        let (status, _) = h.call("GET", missing, Some(h.key(0)), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    }
}

#[tokio::test]
async fn rollback_writes_a_new_version_with_the_old_content() {
    let h = harness().await;
    for subject in ["one", "two"] {
        let (status, answer) = h
            .call(
                "PUT",
                "/v1/templates/post",
                Some(h.key(0)),
                Some(localized_template(subject)),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (status, rolled) = h
        .call(
            "POST",
            "/v1/templates/post/rollback",
            Some(h.key(0)),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert_eq!(rolled["version"], 3);
    assert_eq!(rolled["restored_from"], 1);
    assert_eq!(rolled["email"]["subject"], "one");
    let (_, active) = h
        .call("GET", "/v1/templates/post", Some(h.key(0)), None)
        .await;
    assert_eq!(active, rolled);
    let (_, page) = h
        .call("GET", "/v1/templates/post/versions", Some(h.key(0)), None)
        .await;
    let history: Vec<_> = page["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["email"]["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(history, ["one", "two", "one"], "history stays visible");

    let (status, _) = h
        .call(
            "POST",
            "/v1/templates/post/rollback",
            Some(h.key(0)),
            Some(json!({"version": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_tenants_template_is_404_on_every_route() {
    let h = harness().await;
    let (status, _) = h
        .call(
            "PUT",
            "/v1/templates/mine",
            Some(h.key(0)),
            Some(localized_template("s")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for uri in [
        "/v1/templates/mine",
        "/v1/templates/mine/versions",
        "/v1/templates/mine/versions/1",
    ] {
        let (status, _) = h.call("GET", uri, Some(h.key(1)), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    let (status, _) = h
        .call(
            "POST",
            "/v1/templates/mine/rollback",
            Some(h.key(1)),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, page) = h
        .call("GET", "/v1/templates/mine/versions", Some(h.key(0)), None)
        .await;
    assert_eq!(
        page["active_version"], 1,
        "the failed rollback wrote nothing"
    );
}

#[tokio::test]
async fn invalid_template_content_is_400_with_channel_field_locale_and_position() {
    let h = harness().await;
    let mut body = localized_template("{{ data.actor }} posted");
    body["locales"]["fr"]["in_app"]["body"] = json!("Regardez\n  {{ user.nom }}");
    body["push"]["data"]["post"] = json!("{% if %}");
    let (status, answer) = h
        .call("PUT", "/v1/templates/post", Some(h.key(0)), Some(body))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let error = &answer["error"];
    assert_eq!(error["code"], "invalid_template");
    assert_eq!(error["field"], "push.data.post");
    let problems = error["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{answer}");
    assert_eq!(problems[0]["kind"], "syntax");
    assert_eq!(problems[0]["channel"], "push");
    assert_eq!(problems[0]["field"], "data.post");
    assert_eq!(problems[0]["locale"], Value::Null);
    assert_eq!(problems[0]["line"], 1);
    assert_eq!(problems[1]["kind"], "unknown_variable");
    assert_eq!(problems[1]["channel"], "in_app");
    assert_eq!(problems[1]["field"], "body");
    assert_eq!(problems[1]["locale"], "fr");
    assert_eq!(problems[1]["path"], "locales.fr.in_app.body");
    assert_eq!(
        (&problems[1]["line"], &problems[1]["column"]),
        (&json!(2), &json!(6))
    );
    assert!(
        error["message"].as_str().unwrap().contains("user.nom"),
        "{answer}"
    );

    // Top-level data keys are no longer variables: the message says where data lives.
    let (status, answer) = h
        .call(
            "PUT",
            "/v1/templates/post",
            Some(h.key(0)),
            Some(json!({"name": "P", "email": {"subject": "{{ actor }}", "text": "t"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["field"], "email.subject");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("data.actor"),
        "{answer}"
    );
    let (status, _) = h
        .call("GET", "/v1/templates/post", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing refused was stored");
}

#[tokio::test]
async fn malformed_template_structure_is_422_naming_the_field() {
    let h = harness().await;
    let cases = [
        (
            json!({"name": "P", "in_app": {"title": "t", "body": "b"}, "locales": {"french": {"in_app": {"title": "t", "body": "b"}}}}),
            "locales.french",
        ),
        (
            json!({"name": "P", "in_app": {"title": "t", "body": "b"}, "locales": {"fr": {"email": {"subject": "s", "text": "t"}}}}),
            "locales.fr.email",
        ),
        (
            json!({"name": "P", "in_app": {"title": "t", "body": "b"}, "locales": {"en": {"in_app": {"title": "t", "body": "b"}}}}),
            "locales.en",
        ),
        (
            json!({"name": "P", "in_app": {"title": "t", "body": "b"}, "category": "Not OK"}),
            "category",
        ),
        (
            json!({"name": "P", "in_app": {"title": "t", "body": "b"}, "default_locale": "x"}),
            "default_locale",
        ),
        (json!({"name": "P"}), "body"),
    ];
    for (body, field) in cases {
        let (status, answer) = h
            .call("PUT", "/v1/templates/p", Some(h.key(0)), Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
}

#[tokio::test]
async fn the_demo_seed_writes_a_valid_localized_template_once() {
    let h = harness().await;
    let seeded = crate::seed::demo(&h.store, None).await.unwrap();
    crate::seed::demo(&h.store, Some(seeded.api_key.clone()))
        .await
        .unwrap();
    let (status, template) = h
        .call("GET", "/v1/templates/welcome", Some(&seeded.api_key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{template}");
    assert_eq!(template["version"], 1, "seeding again writes no version");
    assert!(template["locales"]["fr"]["email"].is_object());
    // What the seed wrote passes the API's own checks.
    let mut body = template.clone();
    for key in ["template_id", "version", "updated_at_ms"] {
        body.as_object_mut().unwrap().remove(key);
    }
    let (status, answer) = h
        .call(
            "PUT",
            "/v1/templates/welcome",
            Some(&seeded.api_key),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}
