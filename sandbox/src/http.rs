//! The read-back HTTP API: JSON for tests, plus the HTML inbox in [`inbox`] for a browser.
//!
//! The router gathers every module's routes; the emails' are here. [`error`] maps every
//! failure of the sandbox's own API to a status and body, and this module holds what the
//! read-back listings share (the page size, the [`Count`] body).

mod error;
mod inbox;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::Sandbox;
use crate::mailbox::{EmailCount, EmailList, Filter, StoredEmail};

pub use error::ErrorResponse;
pub(crate) use error::{ApiError, ApiResult};

/// Page size of a read-back listing when the request gives none.
const DEFAULT_LIMIT: usize = 100;

/// Largest page size of a read-back listing; larger requests are capped.
const MAX_LIMIT: usize = 1000;

/// Body of every read-back count (`GET /api/emails/count` and the like).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Number of stored items matching the filter.
    pub count: u64,
}

/// The page size a listing asked for with `limit`, defaulted and capped.
pub(crate) fn page_limit(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// Builds the router for the read-back API and the HTML inbox.
pub(crate) fn router(sandbox: Arc<Sandbox>) -> Router {
    Router::new()
        .route("/", get(inbox::index))
        .route("/emails/{id}", get(inbox::email))
        .route("/healthz", get(healthz))
        .route("/api/emails", get(list_emails).delete(clear_emails))
        .route("/api/emails/count", get(count_emails))
        .route("/api/emails/{id}", get(get_email))
        .route("/api/emails/{id}/raw", get(raw_email))
        .merge(crate::fault::routes("/api/smtp/faults", |sandbox| {
            &sandbox.smtp_faults
        }))
        .merge(crate::fcm::routes())
        .merge(crate::apns::routes())
        .merge(crate::otlp::routes())
        .merge(crate::webhooks::routes())
        .route("/api/smtp/ca.pem", get(crate::smtp::ca_pem))
        .fallback(not_found)
        .with_state(sandbox)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    to: Option<String>,
    after_id: Option<u64>,
    limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct CountQuery {
    to: Option<String>,
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

async fn list_emails(
    State(sandbox): State<Arc<Sandbox>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<EmailList>> {
    let Query(query) = query?;
    let filter = Filter {
        to: query.to.as_deref(),
        after_id: query.after_id,
    };
    let (page, next_after_id) = sandbox.mailbox.list(&filter, page_limit(query.limit));
    let emails = page.iter().map(|message| message.email.clone()).collect();
    Ok(Json(EmailList {
        emails,
        next_after_id,
    }))
}

async fn count_emails(
    State(sandbox): State<Arc<Sandbox>>,
    query: Result<Query<CountQuery>, QueryRejection>,
) -> ApiResult<Json<EmailCount>> {
    let Query(query) = query?;
    let count = sandbox.mailbox.count(query.to.as_deref());
    Ok(Json(EmailCount { count }))
}

async fn get_email(
    State(sandbox): State<Arc<Sandbox>>,
    id: Result<Path<u64>, PathRejection>,
) -> ApiResult<Json<StoredEmail>> {
    let Path(id) = id?;
    let message = sandbox.mailbox.get(id).ok_or(ApiError::NotFound("email"))?;
    Ok(Json(message.email.clone()))
}

async fn raw_email(
    State(sandbox): State<Arc<Sandbox>>,
    id: Result<Path<u64>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = id?;
    let message = sandbox.mailbox.get(id).ok_or(ApiError::NotFound("email"))?;
    let headers = [(header::CONTENT_TYPE, "message/rfc822")];
    Ok((headers, message.raw.clone()).into_response())
}

async fn clear_emails(State(sandbox): State<Arc<Sandbox>>) -> StatusCode {
    sandbox.mailbox.clear();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use serde::de::DeserializeOwned;
    use tower::ServiceExt;

    use super::*;
    use crate::mailbox::Envelope;

    fn sandbox() -> Arc<Sandbox> {
        Arc::new(Sandbox::new(None))
    }

    fn store(sandbox: &Sandbox, rcpt_to: &[&str], raw: &str) -> u64 {
        let envelope = Envelope {
            mail_from: "sender@example.com".to_owned(),
            rcpt_to: rcpt_to.iter().map(|&r| r.to_owned()).collect(),
            peer: "127.0.0.1:1".to_owned(),
            helo: None,
            tls: false,
            auth_user: None,
        };
        sandbox.mailbox.store(envelope, raw.as_bytes().to_vec())
    }

    async fn send(sandbox: &Arc<Sandbox>, request: Request<Body>) -> (StatusCode, Vec<u8>) {
        let response = router(sandbox.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, body.to_vec())
    }

    async fn get_json<T: DeserializeOwned>(sandbox: &Arc<Sandbox>, uri: &str) -> (StatusCode, T) {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        let (status, body) = send(sandbox, request).await;
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn count_route_is_not_taken_for_an_id() {
        let sandbox = sandbox();
        store(&sandbox, &["a@example.com"], "Subject: one\r\n\r\nbody\r\n");
        store(&sandbox, &["b@example.com"], "Subject: two\r\n\r\nbody\r\n");
        let (status, count): (_, EmailCount) =
            get_json(&sandbox, "/api/emails/count?to=A%40example.com").await;
        assert_eq!((status, count.count), (StatusCode::OK, 1));
        let (_, count): (_, EmailCount) = get_json(&sandbox, "/api/emails/count").await;
        assert_eq!(count.count, 2);
    }

    #[tokio::test]
    async fn pages_through_emails_with_a_cursor() {
        let sandbox = sandbox();
        for n in 0..3 {
            store(
                &sandbox,
                &["a@example.com"],
                &format!("Subject: {n}\r\n\r\n"),
            );
        }
        let (_, page): (_, EmailList) = get_json(&sandbox, "/api/emails?limit=2").await;
        let subjects: Vec<_> = page.emails.iter().map(|e| e.subject.clone()).collect();
        assert_eq!(subjects, [Some("0".to_owned()), Some("1".to_owned())]);
        assert_eq!(page.next_after_id, Some(2));
        let (_, page): (_, EmailList) = get_json(&sandbox, "/api/emails?after_id=2").await;
        assert_eq!(page.emails.len(), 1);
        assert_eq!(page.next_after_id, None);
    }

    #[tokio::test]
    async fn errors_are_json() {
        let sandbox = sandbox();
        let (status, error): (_, ErrorResponse) = get_json(&sandbox, "/api/emails/7").await;
        assert_eq!(
            (status, error.error.as_str()),
            (StatusCode::NOT_FOUND, "email not found")
        );
        let (status, _): (_, ErrorResponse) = get_json(&sandbox, "/api/emails/seven").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _): (_, ErrorResponse) = get_json(&sandbox, "/api/emails?limit=x").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _): (_, ErrorResponse) = get_json(&sandbox, "/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let request = Request::post("/api/smtp/faults")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"rcpt":"a@example.com","code":354}"#))
            .unwrap();
        let (status, body) = send(&sandbox, request).await;
        let error: ErrorResponse = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            error.error,
            "code must be 250 (accept after delay_ms) or between 400 and 599"
        );
    }

    #[tokio::test]
    async fn raw_returns_the_message_as_received() {
        let sandbox = sandbox();
        let raw = "Subject: raw\r\n\r\nbody\r\n";
        let id = store(&sandbox, &["a@example.com"], raw);
        let request = Request::get(format!("/api/emails/{id}/raw"))
            .body(Body::empty())
            .unwrap();
        let response = router(sandbox).oneshot(request).await.unwrap();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "message/rfc822");
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert_eq!(body, raw.as_bytes());
    }

    #[tokio::test]
    async fn inbox_escapes_message_content() {
        let sandbox = sandbox();
        let raw = "Subject: <script>alert(1)</script>\r\nContent-Type: text/html\r\n\r\n\
                   <b onclick=\"x\">hi</b>\r\n";
        let id = store(&sandbox, &["a@example.com"], raw);
        let request = Request::get("/").body(Body::empty()).unwrap();
        let (status, body) = send(&sandbox, request).await;
        let page = String::from_utf8(body).unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(!page.contains("<script>"));

        let request = Request::get(format!("/emails/{id}"))
            .body(Body::empty())
            .unwrap();
        let (status, body) = send(&sandbox, request).await;
        let page = String::from_utf8(body).unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(
            page.contains("srcdoc=\"&lt;b onclick=&quot;x&quot;&gt;hi&lt;/b&gt;"),
            "{page}"
        );
        assert!(!page.contains("<script>"));
        assert!(!page.contains("<b onclick"));

        let request = Request::get("/emails/999").body(Body::empty()).unwrap();
        let (status, _) = send(&sandbox, request).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
