//! What the API tells an operator about each request.
//!
//! [`request_id`] (outermost) takes the client's `x-request-id` or makes one, echoes it on the
//! response and runs the request inside a log span carrying it (`http_request_id`, apart from a
//! notification's `request_id`), with a [`RequestScope`] that handlers fill in (the tenant,
//! once the caller is authenticated). [`http_metrics`] counts and times each request by its
//! route template; [`notify_outcome`] counts what became of each `POST /v1/notify`.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use fanout_domain::TenantId;
use fanout_telemetry::metrics::{self, NotifyOutcome};
use fanout_telemetry::traces;
use tracing::Instrument;

/// The header carrying a request's id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest client-sent request id kept; a longer or odd one is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Facts learned while a request is handled, for the middleware to read after it: handlers
/// see it as an extension.
#[derive(Debug, Default)]
pub struct RequestScope {
    tenant: OnceLock<TenantId>,
}

impl RequestScope {
    /// Records the authenticated tenant (the first one recorded stays).
    pub fn set_tenant(&self, tenant: &TenantId) {
        let _ = self.tenant.set(tenant.clone());
        tracing::Span::current().record("tenant", tenant.as_str());
    }

    /// The authenticated tenant, if the request got that far.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.get()
    }
}

fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn new_request_id() -> String {
    format!("req-{}", uuid::Uuid::new_v4().simple())
}

/// Outermost middleware: the request id, its log span and the request's scope.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(new_request_id, str::to_owned);
    request
        .extensions_mut()
        .insert(Arc::new(RequestScope::default()));
    // The request's span: its log lines carry these fields, and with traces on it is the root
    // of the request's trace (or continues the client's, from its `traceparent`). The route,
    // tenant and notification id are filled in as they become known.
    let span = tracing::info_span!(
        "http",
        otel.name = %request.method(),
        otel.kind = "server",
        http_request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        "http.route" = tracing::field::Empty,
        tenant = tracing::field::Empty,
        request_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    traces::continue_trace(
        &span,
        request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok()),
    );
    traces::record_trace_id(&span);
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Route middleware: counts and times each request by route template, method and status.
pub async fn http_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let span = tracing::Span::current();
    span.record("http.route", route.as_str());
    // The span's name in the trace, as OpenTelemetry's HTTP conventions have it: the method
    // until the route is known (never the raw path, which names every request apart).
    traces::rename(&span, || format!("{method} {route}"));
    let started = Instant::now();
    let response = next.run(request).await;
    if !metrics::recording() {
        return response;
    }
    metrics::HTTP_REQUESTS
        .with_label_values(&[&route, method.as_str(), response.status().as_str()])
        .inc();
    metrics::HTTP_DURATION
        .with_label_values(&[&route, method.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Middleware of `POST /v1/notify`: counts the outcome of every real notify (dry runs are
/// not notifies). A handler that knows better than the status (the blast-radius refusal)
/// sets a [`NotifyOutcome`] extension on its response.
pub async fn notify_outcome(request: Request, next: Next) -> Response {
    if crate::ingest::is_dry_run(request.uri()) {
        return next.run(request).await;
    }
    let scope = request.extensions().get::<Arc<RequestScope>>().cloned();
    let response = next.run(request).await;
    let outcome = response
        .extensions()
        .get::<NotifyOutcome>()
        .copied()
        .unwrap_or_else(|| classify(response.status()));
    let tenant = scope.as_ref().and_then(|s| s.tenant());
    metrics::notify(tenant.map_or("unknown", TenantId::as_str), outcome);
    response
}

/// A notify's outcome from its status alone.
fn classify(status: StatusCode) -> NotifyOutcome {
    match status {
        StatusCode::ACCEPTED => NotifyOutcome::Accepted,
        StatusCode::OK => NotifyOutcome::Duplicate,
        StatusCode::TOO_MANY_REQUESTS => NotifyOutcome::RefusedQuota,
        StatusCode::CONFLICT => NotifyOutcome::RefusedDisabled,
        s if s.is_server_error() => NotifyOutcome::RefusedOther,
        _ => NotifyOutcome::RefusedInvalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_or_long_client_request_ids_are_replaced() {
        assert!(acceptable("4bf92f3577b34da6-a3ce929d0e0e4736"));
        assert!(acceptable("req:2026.12.04_1"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(!acceptable("line\nbreak"));
        assert!(!acceptable(&"x".repeat(MAX_REQUEST_ID_LEN + 1)));
        assert!(acceptable(&new_request_id()));
    }

    #[test]
    fn a_notifys_status_names_its_outcome() {
        assert_eq!(classify(StatusCode::ACCEPTED), NotifyOutcome::Accepted);
        assert_eq!(classify(StatusCode::OK), NotifyOutcome::Duplicate);
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS),
            NotifyOutcome::RefusedQuota
        );
        assert_eq!(
            classify(StatusCode::CONFLICT),
            NotifyOutcome::RefusedDisabled
        );
        assert_eq!(
            classify(StatusCode::UNPROCESSABLE_ENTITY),
            NotifyOutcome::RefusedInvalid
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE),
            NotifyOutcome::RefusedOther
        );
    }
}
