//! Push end to end: APNs (HTTP/2 over TLS, provider-token auth) and FCM HTTP v1 (service-account
//! OAuth) against the sandbox's simulators. Happy path on both providers, dead tokens retired
//! and skipped next time, a 429 with Retry-After retried no sooner than asked, and an outage
//! that ends with every device reached once the provider recovers.

use std::time::{SystemTime, UNIX_EPOCH};

use fanout_domain::request::DeliveryPath;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, expect_status, now_ms, tally};

fn template() -> Value {
    json!({
        "name": "Reply",
        "push": {
            "title": "{{ data.actor }} replied",
            "body": "Tap to read, {{ user.name }}",
            "data": {"thread": "{{ data.thread }}"}
        }
    })
}

/// A token shaped like a real one for the platform, unique per test run.
pub(crate) fn token(platform: &str, tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    match platform {
        "apns" => format!("{:064x}", nanos ^ u128::from(fnv(tag))),
        _ => format!("fcm-{tag}-{nanos:x}:APA91b"),
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

impl TestApp {
    pub(crate) async fn put_device_user(
        &self,
        user: &str,
        devices: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let devices: Vec<Value> = devices
            .iter()
            .map(|(platform, token)| json!({"platform": platform, "token": token}))
            .collect();
        let r = self
            .request(reqwest::Method::PUT, &format!("/v1/users/{user}"))
            .json(&json!({"name": user, "devices": devices}))
            .send()
            .await?;
        expect_status(r, StatusCode::OK).await.map(|_| ())
    }

    pub(crate) async fn sandbox(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut r =
            reqwest::Client::new().request(method, format!("{}{path}", self.shared.sandbox_url));
        if let Some(body) = body {
            r = r.json(&body);
        }
        let r = r.send().await?;
        let status = r.status();
        let text = r.text().await?;
        anyhow::ensure!(status.is_success(), "sandbox {path}: {status} {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub(crate) async fn apns_notifications(&self, token: &str) -> anyhow::Result<Vec<Value>> {
        let list = self
            .sandbox(
                reqwest::Method::GET,
                &format!("/api/apns/notifications?token={token}"),
                None,
            )
            .await?;
        Ok(list["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    pub(crate) async fn fcm_messages(&self, token: &str) -> anyhow::Result<Vec<Value>> {
        let list = self
            .sandbox(
                reqwest::Method::GET,
                &format!("/api/fcm/messages?token={token}"),
                None,
            )
            .await?;
        Ok(list["messages"].as_array().cloned().unwrap_or_default())
    }

    async fn push(&self, users: &[&str], thread: &str) -> anyhow::Result<String> {
        let (status, body) = self
            .notify(&json!({
                "template_id": "reply",
                "recipients_query": {"type": "users", "user_ids": users},
                "channel_prefs": ["push"],
                "data": {"actor": "Dana", "thread": thread}
            }))
            .await?;
        anyhow::ensure!(status == StatusCode::ACCEPTED, "{status}: {body}");
        Ok(body["request_id"].as_str().unwrap_or_default().to_owned())
    }

    async fn outcomes(
        &self,
        request_id: &str,
    ) -> anyhow::Result<std::collections::HashMap<String, String>> {
        let receipts = self.all_receipts(request_id).await?;
        Ok(receipts
            .iter()
            .map(|r| {
                (
                    r["user_id"].as_str().unwrap_or_default().to_owned(),
                    format!(
                        "{}:{}",
                        r["status"].as_str().unwrap_or_default(),
                        r["error_code"].as_str().unwrap_or("-")
                    ),
                )
            })
            .collect())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn push_reaches_both_providers_and_dead_tokens_are_retired() -> anyhow::Result<()> {
    let app = TestApp::spawn("push-happy").await?;
    app.put_template("reply", template()).await?;
    let (ios, android, gone_ios, gone_android) = (
        token("apns", "ios"),
        token("fcm", "android"),
        token("apns", "gone"),
        token("fcm", "gone"),
    );
    app.put_device_user("ios", &[("apns", &ios)]).await?;
    app.put_device_user("android", &[("fcm", &android)]).await?;
    app.put_device_user("both", &[("apns", &gone_ios), ("fcm", &gone_android)])
        .await?;
    app.put_device_user("nodevice", &[]).await?;
    // Both of `both`'s devices were uninstalled.
    let unregistered = app
        .sandbox(
            reqwest::Method::POST,
            "/api/apns/faults",
            Some(json!({"token": gone_ios, "status": 410, "reason": "Unregistered"})),
        )
        .await?;
    app.sandbox(
        reqwest::Method::POST,
        "/api/fcm/faults",
        Some(json!({"token": gone_android, "error": "UNREGISTERED"})),
    )
    .await?;

    let first = app
        .push(&["ios", "android", "both", "nodevice"], "t1")
        .await?;
    app.wait_for_state(&first, "completed").await?;
    let outcomes = app.outcomes(&first).await?;
    assert_eq!(outcomes["ios"], "delivered:-");
    assert_eq!(outcomes["android"], "delivered:-");
    assert_eq!(outcomes["nodevice"], "suppressed:no_device");
    assert!(outcomes["both"].starts_with("failed:"), "{outcomes:?}");

    let apple = app.apns_notifications(&ios).await?;
    assert_eq!(apple.len(), 1, "{apple:?}");
    assert_eq!(apple[0]["payload"]["aps"]["alert"]["title"], "Dana replied");
    assert_eq!(
        apple[0]["payload"]["aps"]["alert"]["body"],
        "Tap to read, ios"
    );
    assert_eq!(apple[0]["payload"]["thread"], "t1");
    assert_eq!(apple[0]["auth"]["kind"], "token");
    assert_eq!(apple[0]["priority"], 10);
    let google = app.fcm_messages(&android).await?;
    assert_eq!(google.len(), 1, "{google:?}");
    assert_eq!(
        google[0]["message"]["notification"]["title"],
        "Dana replied"
    );
    assert_eq!(google[0]["message"]["data"]["thread"], "t1");
    let receipts = app.all_receipts(&first).await?;
    let android_receipt = receipts.iter().find(|r| r["user_id"] == "android").unwrap();
    assert_eq!(android_receipt["provider_message_id"], google[0]["name"]);

    // The dead tokens left the profile and went on the suppression list.
    let (_, profile) = app.get("/v1/users/both").await?;
    assert_eq!(profile["devices"], json!([]), "{profile}");
    let (_, listed) = app.get("/v1/suppressions?channel=push").await?;
    let reasons = tally(listed["suppressions"].as_array().unwrap(), |s| {
        s["reason"].as_str().unwrap_or_default().to_owned()
    });
    assert_eq!(reasons.get("invalid_token"), Some(&2), "{listed}");

    // Next time they are skipped: nothing reaches the providers for them, even if the app
    // registers the dead token again. The simulator would now accept it.
    let rule = format!("/api/apns/faults/{}", unregistered["id"]);
    app.sandbox(reqwest::Method::DELETE, &rule, None).await?;
    app.put_device_user("both", &[("apns", &gone_ios)]).await?;
    let second = app.push(&["ios", "both"], "t2").await?;
    app.wait_for_state(&second, "completed").await?;
    let outcomes = app.outcomes(&second).await?;
    assert_eq!(outcomes["both"], "suppressed:suppressed_address");
    assert_eq!(outcomes["ios"], "delivered:-");
    assert!(
        app.apns_notifications(&gone_ios).await?.is_empty(),
        "nothing was sent to the dead token (its 410 rule is gone, so a send would be stored)"
    );
    assert_eq!(app.apns_notifications(&ios).await?.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_with_retry_after_is_retried_no_sooner_than_asked_direct() -> anyhow::Result<()> {
    retry_after_honoured(DeliveryPath::Direct).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_with_retry_after_is_retried_no_sooner_than_asked_tree() -> anyhow::Result<()> {
    retry_after_honoured(DeliveryPath::Tree).await
}

async fn retry_after_honoured(path: DeliveryPath) -> anyhow::Result<()> {
    let app = TestApp::spawn_on("push-429", path).await?;
    app.put_template("reply", template()).await?;
    let (ios, android) = (token("apns", "busy"), token("fcm", "busy"));
    app.put_device_user("ios", &[("apns", &ios)]).await?;
    app.put_device_user("android", &[("fcm", &android)]).await?;
    app.sandbox(
        reqwest::Method::POST,
        "/api/apns/faults",
        Some(json!({"token": ios, "status": 429, "reason": "TooManyRequests", "retry_after_s": 2, "times": 1})),
    )
    .await?;
    app.sandbox(
        reqwest::Method::POST,
        "/api/fcm/faults",
        Some(json!({"token": android, "error": "QUOTA_EXCEEDED", "retry_after_s": 3, "times": 1})),
    )
    .await?;

    let asked_at = now_ms();
    let request = app.push(&["ios", "android"], "t").await?;
    let done = app.wait_for_state(&request, "completed").await?;
    assert_eq!(done["path"], path.as_str(), "{done}");
    let outcomes = app.outcomes(&request).await?;
    assert_eq!(outcomes["ios"], "delivered:-");
    assert_eq!(outcomes["android"], "delivered:-");
    for r in app.all_receipts(&request).await? {
        assert_eq!(r["attempts"], 2, "one refusal, one delivery: {r}");
    }
    // The refusal came right after the trigger; the retry waited at least Retry-After.
    let apple = app.apns_notifications(&ios).await?;
    let google = app.fcm_messages(&android).await?;
    assert_eq!((apple.len(), google.len()), (1, 1));
    let apple_wait = apple[0]["received_at_ms"].as_u64().unwrap() - asked_at;
    let google_wait = google[0]["received_at_ms"].as_u64().unwrap() - asked_at;
    assert!(apple_wait >= 2_000, "apns retried after {apple_wait} ms");
    assert!(google_wait >= 3_000, "fcm retried after {google_wait} ms");
    println!(
        "retry-after honoured: apns {apple_wait} ms (asked 2000), fcm {google_wait} ms (asked 3000)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_outage_ends_with_every_device_reached_once_it_recovers() -> anyhow::Result<()> {
    let app = TestApp::spawn("push-outage").await?;
    app.put_template("reply", template()).await?;
    let mut users = Vec::new();
    let mut rules = Vec::new();
    for i in 0..12 {
        let user = format!("u{i:02}");
        let (platform, tok) = if i % 2 == 0 {
            ("apns", token("apns", &user))
        } else {
            ("fcm", token("fcm", &user))
        };
        app.put_device_user(&user, &[(platform, &tok)]).await?;
        // 5xx for every one of this test's devices until the rules go.
        let rule = if platform == "apns" {
            app.sandbox(
                reqwest::Method::POST,
                "/api/apns/faults",
                Some(json!({"token": tok, "status": 503, "reason": "ServiceUnavailable"})),
            )
            .await?
        } else {
            app.sandbox(
                reqwest::Method::POST,
                "/api/fcm/faults",
                Some(json!({"token": tok, "error": "UNAVAILABLE"})),
            )
            .await?
        };
        rules.push((platform, rule["id"].as_u64().unwrap(), tok));
        users.push(user);
    }
    let ids: Vec<&str> = users.iter().map(String::as_str).collect();
    let request = app.push(&ids, "t").await?;
    app.wait_for_attempts(&request, users.len(), 3).await?;
    let during = app.status(&request).await?;
    assert_eq!(
        (&during["state"], &during["channels"]["push"]["delivered"]),
        (&json!("running"), &json!(0)),
        "{during}"
    );
    for (platform, id, _) in &rules {
        app.sandbox(
            reqwest::Method::DELETE,
            &format!("/api/{platform}/faults/{id}"),
            None,
        )
        .await?;
    }
    let done = app.wait_for_state(&request, "completed").await?;
    assert_eq!(
        done["channels"]["push"]["delivered"],
        json!(users.len()),
        "{done}"
    );
    for (platform, _, tok) in &rules {
        let arrived = if *platform == "apns" {
            app.apns_notifications(tok).await?.len()
        } else {
            app.fcm_messages(tok).await?.len()
        };
        assert_eq!(arrived, 1, "{platform} {tok}");
    }
    Ok(())
}
