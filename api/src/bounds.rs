//! Router-wide bounds: the largest body, the longest a request may take, and how many may be
//! in flight at once. Every route but the inbox streams runs inside them (a stream is meant to
//! stay open; it has its own caps, see [`crate::inbox::InboxConfig`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The bounds (`FANOUT_HTTP__*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// The largest request body, in bytes. A notify to the largest explicit audience (10,000
    /// user ids of up to 128 bytes) with the largest `data` a tenant may be allowed fits.
    pub max_body_bytes: usize,
    /// How long a request may take before it is answered 503 and dropped.
    pub request_timeout_seconds: u64,
    /// Requests this process serves at once; more wait for a slot within the timeout.
    pub max_in_flight: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 2 * 1024 * 1024,
            request_timeout_seconds: 30,
            max_in_flight: 512,
        }
    }
}

/// The state [`bound`] runs with: the slots and the timeout.
#[derive(Debug, Clone)]
pub struct Bounds {
    slots: Arc<Semaphore>,
    max_in_flight: usize,
    timeout: Duration,
}

impl Bounds {
    /// Bounds from the configuration.
    pub fn new(config: &HttpConfig) -> Self {
        let max_in_flight = config.max_in_flight.max(1);
        Self {
            slots: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            timeout: Duration::from_secs(config.request_timeout_seconds.max(1)),
        }
    }
}

/// Middleware: waits for an in-flight slot and runs the request, both within the timeout.
pub async fn bound(State(bounds): State<Bounds>, request: Request, next: Next) -> Response {
    let run = async {
        // The semaphore is never closed.
        let _slot = bounds.slots.acquire().await.ok();
        next.run(request).await
    };
    match tokio::time::timeout(bounds.timeout, run).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                timeout_seconds = bounds.timeout.as_secs(),
                max_in_flight = bounds.max_in_flight,
                "request timed out"
            );
            ApiError::Unavailable(format!(
                "the request did not complete within {} s; retry it (a notify with the same \
                 dedupe_key is never applied twice)",
                bounds.timeout.as_secs()
            ))
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn router(config: &HttpConfig, gate: Arc<tokio::sync::Notify>) -> Router {
        Router::new()
            .route(
                "/slow",
                get(move || {
                    let gate = gate.clone();
                    async move {
                        gate.notified().await;
                        "done"
                    }
                }),
            )
            .route("/fast", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                Bounds::new(config),
                bound,
            ))
    }

    async fn get_status(router: &Router, uri: &str) -> StatusCode {
        router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_timeout_is_503() {
        let config = HttpConfig {
            request_timeout_seconds: 2,
            ..HttpConfig::default()
        };
        let router = router(&config, Arc::default());
        assert_eq!(
            get_status(&router, "/slow").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get_status(&router, "/fast").await, StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_past_the_in_flight_limit_wait_for_a_slot_within_the_timeout() {
        let config = HttpConfig {
            max_in_flight: 1,
            request_timeout_seconds: 5,
            ..HttpConfig::default()
        };
        let gate = Arc::new(tokio::sync::Notify::new());
        let router = router(&config, gate.clone());
        let holder = tokio::spawn({
            let router = router.clone();
            async move { get_status(&router, "/slow").await }
        });
        // Let the holder take the one slot.
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        // A second request waits for it: a second later it has not been served.
        let waiting = tokio::spawn({
            let router = router.clone();
            async move { get_status(&router, "/fast").await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "served past the in-flight limit");
        gate.notify_one();
        assert_eq!(holder.await.unwrap(), StatusCode::OK);
        assert_eq!(waiting.await.unwrap(), StatusCode::OK);
        // Released slots serve again.
        assert_eq!(get_status(&router, "/fast").await, StatusCode::OK);
    }
}
