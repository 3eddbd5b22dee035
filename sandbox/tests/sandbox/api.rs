//! The read-back API and the web inbox over HTTP.

use fanout_sandbox::{ErrorResponse, StoredEmail};
use lettre::AsyncTransport;
use reqwest::StatusCode;

use crate::helpers::{TestSandbox, message};

#[tokio::test]
async fn healthz_reports_ok() {
    let sandbox = TestSandbox::spawn().await;
    let health: serde_json::Value = sandbox.get_json("/healthz").await;
    assert_eq!(health, serde_json::json!({ "status": "ok" }));
}

#[tokio::test]
async fn email_detail_and_clearing() {
    let sandbox = TestSandbox::spawn().await;
    let mailer = sandbox.mailer();
    mailer
        .send(message(&["reader@example.com"], "Read me <now>", "body"))
        .await
        .unwrap();
    let list = sandbox.emails("").await;
    let id = list.emails[0].id;

    let email: StoredEmail = sandbox.get_json(&format!("/api/emails/{id}")).await;
    assert_eq!(email, list.emails[0]);

    let index = sandbox.http.get(sandbox.url("/")).send().await.unwrap();
    assert!(
        index.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let index = index.text().await.unwrap();
    assert!(index.contains("Read me &lt;now&gt;"), "{index}");
    assert!(index.contains(&format!("href=\"/emails/{id}\"")));
    let detail = sandbox
        .http
        .get(sandbox.url(&format!("/emails/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(detail.contains("reader@example.com"));

    let cleared = sandbox
        .http
        .delete(sandbox.url("/api/emails"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert_eq!(sandbox.count("reader@example.com").await, 0);
    let missing = sandbox
        .http
        .get(sandbox.url(&format!("/api/emails/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let error: ErrorResponse = missing.json().await.unwrap();
    assert_eq!(error.error, "email not found");

    mailer
        .send(message(&["reader@example.com"], "Again", "body"))
        .await
        .unwrap();
    let list = sandbox.emails(&format!("?after_id={id}")).await;
    assert_eq!(list.emails.len(), 1);
    assert!(list.emails[0].id > id);
}

#[tokio::test]
async fn invalid_fault_is_refused() {
    let sandbox = TestSandbox::spawn().await;
    let response = sandbox
        .http
        .post(sandbox.url("/api/smtp/faults"))
        .json(&serde_json::json!({ "rcpt": "a@example.com", "code": 550, "times": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: ErrorResponse = response.json().await.unwrap();
    assert_eq!(error.error, "times must be at least 1 when given");

    let response = sandbox
        .http
        .post(sandbox.url("/api/smtp/faults"))
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let _: ErrorResponse = response.json().await.unwrap();
}
