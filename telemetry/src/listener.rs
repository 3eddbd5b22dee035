//! A small HTTP listener for a process with no API of its own (the worker,
//! `FANOUT_METRICS_ADDR`): `GET /metrics` (every metric, [`crate::metrics::render`], then any
//! [`ExtraMetrics`]),
//! `GET /healthz` (the process is up) and `GET /readyz` (its dependencies answer).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics;

/// Checks the process's dependencies: `Ok` when ready, else what is not.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// More metrics in the text format, appended to Fanout's own (the worker's: the Temporal SDK's).
pub type ExtraMetrics = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

#[derive(Clone)]
struct Sources {
    ready: ReadyCheck,
    extra: Option<ExtraMetrics>,
}

/// The listener's routes.
pub fn router(ready: ReadyCheck, extra: Option<ExtraMetrics>) -> Router {
    Router::new()
        .route("/metrics", get(all_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Sources { ready, extra })
}

/// The metrics as a response.
pub async fn metrics_text() -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(),
    )
        .into_response()
}

async fn all_metrics(State(sources): State<Sources>) -> Response {
    let mut text = metrics::render();
    if let Some(extra) = &sources.extra {
        text.push_str(&extra().await);
    }
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

async fn readyz(State(sources): State<Sources>) -> Response {
    match (sources.ready)().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

/// Serves [`router`] on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    ready: ReadyCheck,
    extra: Option<ExtraMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(ready, extra))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get_status(router: &Router, path: &str) -> (StatusCode, String) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readiness_follows_the_check_and_metrics_are_text() {
        let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let check = {
            let up = up.clone();
            Arc::new(move || {
                let ok = up.load(std::sync::atomic::Ordering::Relaxed);
                Box::pin(async move {
                    if ok {
                        Ok(())
                    } else {
                        Err("store: down".to_owned())
                    }
                }) as Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
            }) as ReadyCheck
        };
        let extra: ExtraMetrics =
            Arc::new(|| Box::pin(async { "temporal_extra_total 1\n".to_owned() }));
        let router = router(check, Some(extra));
        assert_eq!(get_status(&router, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get_status(&router, "/readyz").await,
            (StatusCode::SERVICE_UNAVAILABLE, "store: down".to_owned())
        );
        up.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(get_status(&router, "/readyz").await.0, StatusCode::OK);
        metrics::PROVIDER_CALLS
            .with_label_values(&["fcm", "ok"])
            .inc();
        let (status, text) = get_status(&router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.contains("fanout_provider_calls_total{provider=\"fcm\",result=\"ok\"}"),
            "{text}"
        );
        assert!(text.ends_with("temporal_extra_total 1\n"), "{text}");
    }
}
