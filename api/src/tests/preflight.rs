//! Preflight (dry run) and the blast-radius guard.

use fanout_domain::user::{EmailAddress, User};
use fanout_domain::{Channel, SegmentId, UserId};
use fanout_store::preferences::Category;
use fanout_store::suppressions::SuppressionReason;

use super::*;

fn id(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn user(name: &str, email: bool) -> User {
    User {
        user_id: id(name),
        email: email.then(|| EmailAddress::parse(&format!("{name}@example.com")).unwrap()),
        name: None,
        locale: None,
        timezone: None,
        devices: Vec::new(),
        quiet_hours: None,
    }
}

/// Tenant `a` gets a marketing template `promo` (email and in-app, no push) and a segment
/// `all` of: `ua` (reachable everywhere), `ub` (no email), `uc` (opted out of email), `ud`
/// (email suppressed), `ue` (opted out of marketing in the inbox) and `ghost` (no profile).
pub(super) async fn seeded() -> Harness {
    let h = harness().await;
    let (status, body) = h
        .call(
            "PUT",
            "/v1/templates/promo",
            Some(h.key(0)),
            Some(json!({
                "name": "Promo",
                "category": "marketing",
                "email": {"subject": "Sale", "text": "Hi"},
                "in_app": {"title": "Sale", "body": "Hi"}
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let t = TenantId::parse("a").unwrap();
    let users = [
        user("ua", true),
        user("ub", false),
        user("uc", true),
        user("ud", true),
        user("ue", true),
    ];
    h.store.upsert_users(&t, &users).await.unwrap();
    h.store
        .set_preference(&t, &id("uc"), Some(Channel::Email), None, false)
        .await
        .unwrap();
    let marketing = Category::parse("marketing").unwrap();
    h.store
        .set_preference(&t, &id("ue"), Some(Channel::InApp), Some(&marketing), false)
        .await
        .unwrap();
    h.store
        .suppress(
            &t,
            Channel::Email,
            "UD@example.com",
            SuppressionReason::HardBounce,
            None,
        )
        .await
        .unwrap();
    let segment = SegmentId::parse("all").unwrap();
    h.store
        .upsert_segment(&t, &segment, "All", &[])
        .await
        .unwrap();
    let members: Vec<UserId> = ["ua", "ub", "uc", "ud", "ue", "ghost"]
        .iter()
        .map(|u| id(u))
        .collect();
    h.store
        .add_segment_members(&t, &segment, &members)
        .await
        .unwrap();
    h
}

pub(super) fn promo(dedupe: &str) -> Value {
    json!({
        "template_id": "promo",
        "recipients_query": {"type": "segment", "segment_id": "all"},
        "dedupe_key": dedupe
    })
}

async fn recorded(h: &Harness, dedupe: &str) -> bool {
    h.store
        .find_request_by_dedupe_key(&TenantId::parse("a").unwrap(), dedupe)
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn a_dry_run_counts_exactly_and_records_nothing() {
    let h = seeded().await;
    let (status, body) = h
        .call(
            "POST",
            "/v1/notify?dry_run=true",
            Some(h.key(0)),
            Some(promo("dry")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dry_run"], true);
    assert_eq!(body["category"], "marketing");
    assert_eq!(
        body["audience"],
        json!({"type": "segment", "members": 6, "unknown_users": 1, "recipients": 5})
    );
    assert_eq!(
        body["channels"],
        json!({
            "email": {"recipients": 5, "no_address": 1, "opted_out": 1, "suppressed": 1, "deliverable": 2},
            "in_app": {"recipients": 5, "no_address": 0, "opted_out": 1, "suppressed": 0, "deliverable": 4}
        })
    );
    assert_eq!(body["channels_skipped"], json!({"push": "not_in_template"}));
    assert_eq!(body["deliverable"], 6);
    assert_eq!(body["exact"], true);
    assert_eq!(
        body["estimated_completion"],
        json!({"seconds": 6.0 / 5000.0, "deliveries_per_second": 5000, "limited_by": "platform_throughput"})
    );
    assert_eq!(
        body["blast_radius"],
        json!({"limit": 100_000, "source": "platform", "exceeded": false, "override_field": "confirm_audience"})
    );
    assert!(h.orchestrator.started.lock().unwrap().is_empty());
    assert!(!recorded(&h, "dry").await);

    // Channels asked for narrow the estimate; those the template has are "not requested".
    let mut email_only = promo("dry2");
    email_only["channel_prefs"] = json!(["email"]);
    let (status, body) = h
        .call(
            "POST",
            "/v1/notify?dry_run=true",
            Some(h.key(0)),
            Some(email_only),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deliverable"], 2);
    assert_eq!(
        body["channels_skipped"],
        json!({"in_app": "not_requested", "push": "not_in_template"})
    );
    // An explicit list: unknown users are counted apart, another tenant sees none of it.
    let listed = json!({
        "template_id": "welcome",
        "recipients_query": {"type": "users", "user_ids": ["ua", "ghost", "nobody"]}
    });
    let (_, body) = h
        .call(
            "POST",
            "/v1/notify?dry_run=true",
            Some(h.key(0)),
            Some(listed.clone()),
        )
        .await;
    assert_eq!(
        body["audience"],
        json!({"type": "users", "members": 3, "unknown_users": 2, "recipients": 1})
    );
    let (_, body) = h
        .call(
            "POST",
            "/v1/notify?dry_run=true",
            Some(h.key(1)),
            Some(listed),
        )
        .await;
    assert_eq!(body["audience"]["recipients"], 0);
    // Validation is the notify's own: a missing segment is still 404.
    let mut missing = promo("dry3");
    missing["recipients_query"]["segment_id"] = json!("nope");
    let (status, _) = h
        .call(
            "POST",
            "/v1/notify?dry_run=true",
            Some(h.key(0)),
            Some(missing),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(h.orchestrator.started.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_audience_over_the_limit_is_refused_naming_the_override_until_confirmed() {
    let h = seeded().await;
    let (status, body) = h
        .call(
            "PUT",
            "/v1/settings/blast-radius",
            Some(h.key(0)),
            Some(json!({"max_audience": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"max_audience": 3, "platform_default": 100_000, "effective": 3})
    );

    let (status, body) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(promo("big")))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], "blast_radius_exceeded");
    assert_eq!(error["field"], "confirm_audience");
    assert_eq!(error["limit"], json!({"limit": 3, "source": "tenant"}));
    assert_eq!(error["estimated_audience"], 5);
    assert_eq!(
        error["override"],
        json!({"field": "confirm_audience", "value": 5})
    );
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("tenant") && message.contains("\"confirm_audience\": 5"),
        "{message}"
    );
    assert!(h.orchestrator.started.lock().unwrap().is_empty());
    assert!(!recorded(&h, "big").await, "a refusal records nothing");

    // The dry run says the same thing before anyone tries.
    let (_, preview) = h
        .call(
            "POST",
            "/v1/notify?dry_run=true",
            Some(h.key(0)),
            Some(promo("big")),
        )
        .await;
    assert_eq!(preview["blast_radius"]["exceeded"], true);
    assert_eq!(preview["blast_radius"]["source"], "tenant");

    // Confirming fewer than the estimate is not enough.
    let mut low = promo("big");
    low["confirm_audience"] = json!(4);
    let (status, body) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(low))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(!recorded(&h, "big").await);

    let mut confirmed = promo("big");
    confirmed["confirm_audience"] = json!(5);
    let (status, body) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(confirmed))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(h.orchestrator.started.lock().unwrap().len(), 1);
    assert!(recorded(&h, "big").await);

    // Small audiences need no confirmation; the other tenant keeps the platform default.
    let (status, body) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("small")))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (_, body) = h
        .call("GET", "/v1/settings/blast-radius", Some(h.key(1)), None)
        .await;
    assert_eq!(
        body,
        json!({"max_audience": null, "platform_default": 100_000, "effective": 100_000})
    );
}

#[tokio::test]
async fn a_template_limit_overrides_the_tenant_limit_and_settings_are_validated() {
    let h = seeded().await;
    h.call(
        "PUT",
        "/v1/settings/blast-radius",
        Some(h.key(0)),
        Some(json!({"max_audience": 3})),
    )
    .await;
    let (status, body) = h
        .call(
            "PUT",
            "/v1/templates/promo",
            Some(h.key(0)),
            Some(json!({
                "name": "Promo",
                "category": "marketing",
                "email": {"subject": "Sale", "text": "Hi"},
                "max_audience": 10
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["max_audience"], 10);
    let (status, body) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(promo("t")))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let (status, body) = h
        .call(
            "PUT",
            "/v1/templates/promo",
            Some(h.key(0)),
            Some(json!({
                "name": "Promo",
                "email": {"subject": "Sale", "text": "Hi"},
                "max_audience": 2
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(promo("t2")))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["limit"],
        json!({"limit": 2, "source": "template"})
    );

    let (status, body) = h
        .call(
            "PUT",
            "/v1/settings/blast-radius",
            Some(h.key(0)),
            Some(json!({"max_audience": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "max_audience");
    let (status, body) = h
        .call(
            "PUT",
            "/v1/settings/blast-radius",
            Some(h.key(0)),
            Some(json!({"max_audience": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["effective"], 100_000);
    let (status, _) = h.call("GET", "/v1/settings/blast-radius", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
