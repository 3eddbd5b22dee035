//! Where a request's time went, as a `Server-Timing` response header (W3C Server Timing):
//! the handler marks its phases with [`Phases`], and [`server_timing`], layered on the route,
//! adds `admit` (everything before the handler ran: the caller's key, the quota, the body) and
//! `total`. Browsers' dev tools show it; the benchmark reads it to tell where the accept p95
//! of `POST /v1/notify` goes. Durations are in milliseconds, as the header's `dur` is.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// A handler's phases, each timed from the end of the one before.
#[derive(Debug, Clone)]
pub struct Phases {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    /// Starts timing at the handler's first line.
    pub fn start() -> Self {
        Self {
            last: Instant::now(),
            done: Vec::new(),
        }
    }

    /// Ends the phase `name` now.
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }

    /// Hands the phases to [`server_timing`] on the way out.
    pub fn attach(self, response: &mut Response) {
        response.extensions_mut().insert(self);
    }
}

/// Middleware: writes the handler's [`Phases`], if it attached any, with `admit` and `total`.
pub async fn server_timing(request: Request, next: Next) -> Response {
    let arrived = Instant::now();
    let mut response = next.run(request).await;
    let total = arrived.elapsed();
    if let Some(phases) = response.extensions_mut().remove::<Phases>() {
        let handler: Duration = phases.done.iter().map(|(_, d)| *d).sum();
        let mut header = String::new();
        let all = std::iter::once(("admit", total.saturating_sub(handler)))
            .chain(phases.done)
            .chain([("total", total)]);
        for (name, took) in all {
            let sep = if header.is_empty() { "" } else { ", " };
            let _ = write!(header, "{sep}{name};dur={:.2}", took.as_secs_f64() * 1000.0);
        }
        if let Ok(value) = HeaderValue::from_str(&header) {
            response.headers_mut().insert("server-timing", value);
        }
    }
    response
}

/// Parses a `Server-Timing` header into (name, milliseconds) pairs; entries without a `dur`
/// are skipped.
pub fn parse(header: &str) -> Vec<(String, f64)> {
    header
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let name = parts.next()?.to_owned();
            let dur = parts.find_map(|p| p.strip_prefix("dur="))?.parse().ok()?;
            Some((name, dur))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn handler() -> Response {
        let mut phases = Phases::start();
        phases.mark("checks");
        tokio::time::sleep(Duration::from_millis(20)).await;
        phases.mark("start");
        let mut response = "ok".into_response();
        phases.attach(&mut response);
        response
    }

    #[tokio::test]
    async fn the_header_names_every_phase_with_admit_first_and_total_last() {
        let app = Router::new()
            .route("/", get(handler))
            .route("/plain", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(server_timing));
        let response = app
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let header = response.headers()["server-timing"].to_str().unwrap();
        let phases = parse(header);
        let names: Vec<&str> = phases.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["admit", "checks", "start", "total"], "{header}");
        // The sleep is in `start`, and `total` covers every phase.
        assert!(phases[2].1 >= 20.0, "{header}");
        let parts: f64 = phases[..3].iter().map(|(_, d)| d).sum();
        assert!((phases[3].1 - parts).abs() < 0.05, "{header}");
        // A handler that marks nothing gets no header.
        let response = app
            .oneshot(Request::get("/plain").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(response.headers().get("server-timing").is_none());
    }

    #[test]
    fn parsing_skips_entries_without_a_duration() {
        assert_eq!(
            parse("admit;dur=0.50, cache;desc=\"hit\", start;dur=12"),
            [("admit".to_owned(), 0.5), ("start".to_owned(), 12.0)]
        );
    }
}
