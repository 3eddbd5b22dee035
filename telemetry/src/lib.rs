//! What Fanout's processes tell an operator: structured logs ([`logs`]) and Prometheus metrics
//! ([`metrics`], every metric the platform exports, defined in one place), and the worker's
//! small HTTP listener ([`listener`]: `/metrics`, `/healthz`, `/readyz`).
//!
//! Metrics use the `prometheus` crate. Temporal's core already builds it (its own exporter),
//! so it costs no new dependency; its static, registered metric families let any crate record
//! without a handle being threaded through, and its text encoder is the reference format.

pub mod listener;
pub mod logs;
pub mod metrics;
