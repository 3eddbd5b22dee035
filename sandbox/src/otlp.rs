//! An OTLP/HTTP trace receiver with read-back, standing in for a collector (Jaeger, Tempo, the
//! OpenTelemetry Collector) in development and tests.
//!
//! `POST /v1/traces` takes an `ExportTraceServiceRequest` in OTLP's JSON encoding (what an
//! exporter sends with `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) and keeps the newest
//! [`CAPACITY`] spans in memory, flattened: ids, name, service, times, status and attributes
//! (every value as text). `GET /api/spans` reads them back, filtered by trace or by attribute;
//! `DELETE /api/spans` forgets them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Sandbox;
use crate::http::{ApiError, ApiResult};

/// Spans kept; older ones are dropped first.
pub const CAPACITY: usize = 50_000;

/// Largest export request read (an exporter's batch is 512 spans by default).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Largest page of `GET /api/spans`.
const MAX_LIMIT: usize = 5_000;

/// One received span, flattened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedSpan {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// The parent's span id; empty for a root span.
    pub parent_span_id: String,
    /// The span's name.
    pub name: String,
    /// The resource's `service.name`.
    pub service: String,
    /// OTLP's span kind number (1 internal, 2 server, 3 client, ...).
    pub kind: i64,
    /// Start and end, nanoseconds since the epoch.
    pub start_unix_nano: u64,
    /// See `start_unix_nano`.
    pub end_unix_nano: u64,
    /// OTLP's status code (0 unset, 1 ok, 2 error).
    pub status_code: i64,
    /// Attributes, every value as text.
    pub attributes: BTreeMap<String, String>,
}

/// `GET /api/spans`: the spans kept that match, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanList {
    /// The matching spans (at most `limit`).
    pub spans: Vec<ReceivedSpan>,
    /// Spans received since start-up (or the last clear), kept or not.
    pub received: u64,
}

/// The receiver's memory.
#[derive(Debug, Default)]
pub(crate) struct Spans {
    inner: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    spans: VecDeque<ReceivedSpan>,
    received: u64,
}

impl Spans {
    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, spans: Vec<ReceivedSpan>) {
        let mut kept = self.lock();
        kept.received += spans.len() as u64;
        for span in spans {
            if kept.spans.len() == CAPACITY {
                kept.spans.pop_front();
            }
            kept.spans.push_back(span);
        }
    }
}

pub(crate) fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route(
            "/v1/traces",
            post(export).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .route("/api/spans", get(list_spans).delete(clear_spans))
}

/// `POST /v1/traces`.
async fn export(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Json<Value>> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(ApiError::rejected(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the sandbox reads OTLP/HTTP in its JSON encoding: export with OTEL_EXPORTER_OTLP_PROTOCOL=http/json",
        ));
    }
    let request: Value = serde_json::from_str(&body)
        .map_err(|e| ApiError::rejected(StatusCode::BAD_REQUEST, format!("not JSON: {e}")))?;
    sandbox.spans.add(flatten(&request));
    Ok(Json(serde_json::json!({})))
}

/// The spans of an `ExportTraceServiceRequest` (resourceSpans → scopeSpans → spans).
fn flatten(request: &Value) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
        let resource_attributes = attributes(&resource["resource"]["attributes"]);
        let service = resource_attributes
            .get("service.name")
            .cloned()
            .unwrap_or_default();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let text = |key: &str| span[key].as_str().unwrap_or_default().to_owned();
                let nanos = |key: &str| match &span[key] {
                    Value::String(s) => s.parse().unwrap_or_default(),
                    other => other.as_u64().unwrap_or_default(),
                };
                out.push(ReceivedSpan {
                    trace_id: text("traceId").to_ascii_lowercase(),
                    span_id: text("spanId").to_ascii_lowercase(),
                    parent_span_id: text("parentSpanId").to_ascii_lowercase(),
                    name: text("name"),
                    service: service.clone(),
                    kind: span["kind"].as_i64().unwrap_or_default(),
                    start_unix_nano: nanos("startTimeUnixNano"),
                    end_unix_nano: nanos("endTimeUnixNano"),
                    status_code: span["status"]["code"].as_i64().unwrap_or_default(),
                    attributes: attributes(&span["attributes"]),
                });
            }
        }
    }
    out
}

/// OTLP's `[{"key", "value": {"stringValue" | "intValue" | ...}}]` as text.
fn attributes(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            let key = kv["key"].as_str()?.to_owned();
            let value = kv["value"].as_object()?.values().next()?;
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some((key, text))
        })
        .collect()
}

/// Query of `GET /api/spans`.
#[derive(Debug, Deserialize)]
struct SpanQuery {
    /// Only this trace's spans.
    trace_id: Option<String>,
    /// Only spans with this attribute, as `key=value`.
    attribute: Option<String>,
    /// At most this many (default and cap [`MAX_LIMIT`]).
    limit: Option<usize>,
}

/// `GET /api/spans?trace_id=&attribute=key=value&limit=`.
async fn list_spans(
    State(sandbox): State<Arc<Sandbox>>,
    query: Result<Query<SpanQuery>, QueryRejection>,
) -> ApiResult<Json<SpanList>> {
    let Query(query) = query?;
    let attribute = match query.attribute.as_deref().map(|a| a.split_once('=')) {
        None => None,
        Some(Some((k, v))) => Some((k.to_owned(), v.to_owned())),
        Some(None) => {
            return Err(ApiError::rejected(
                StatusCode::BAD_REQUEST,
                "attribute must be key=value",
            ));
        }
    };
    let trace_id = query.trace_id.map(|t| t.to_ascii_lowercase());
    let limit = query.limit.unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
    let kept = sandbox.spans.lock();
    let spans = kept
        .spans
        .iter()
        .filter(|s| trace_id.as_ref().is_none_or(|t| &s.trace_id == t))
        .filter(|s| {
            attribute
                .as_ref()
                .is_none_or(|(k, v)| s.attributes.get(k) == Some(v))
        })
        .take(limit)
        .cloned()
        .collect();
    Ok(Json(SpanList {
        spans,
        received: kept.received,
    }))
}

/// `DELETE /api/spans`.
async fn clear_spans(State(sandbox): State<Arc<Sandbox>>) -> StatusCode {
    *sandbox.spans.lock() = Kept::default();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_request_flattens_to_spans_with_their_service_and_text_attributes() {
        let request = serde_json::json!({
            "resourceSpans": [{
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "fanout-api"}}]},
                "scopeSpans": [{"scope": {"name": "fanout"}, "spans": [{
                    "traceId": "0AF7651916CD43DD8448EB211C80319C",
                    "spanId": "B7AD6B7169203331",
                    "parentSpanId": "",
                    "name": "POST /v1/notify",
                    "kind": 2,
                    "startTimeUnixNano": "1700000000000000000",
                    "endTimeUnixNano": 1700000000500000000u64,
                    "attributes": [
                        {"key": "request_id", "value": {"stringValue": "ntf-1"}},
                        {"key": "page", "value": {"intValue": "3"}},
                        {"key": "ok", "value": {"boolValue": true}}
                    ],
                    "status": {"code": 2}
                }]}]
            }]
        });
        let spans = flatten(&request);
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!(span.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(span.service, "fanout-api");
        assert_eq!(
            (span.start_unix_nano, span.end_unix_nano),
            (1_700_000_000_000_000_000, 1_700_000_000_500_000_000)
        );
        assert_eq!(span.status_code, 2);
        assert_eq!(span.attributes["request_id"], "ntf-1");
        assert_eq!(span.attributes["page"], "3");
        assert_eq!(span.attributes["ok"], "true");
        assert!(flatten(&serde_json::json!({"nothing": 1})).is_empty());
    }

    #[test]
    fn the_oldest_spans_go_first_past_capacity() {
        let spans = Spans::default();
        let span = |n: usize| ReceivedSpan {
            trace_id: format!("{n:032x}"),
            span_id: format!("{n:016x}"),
            parent_span_id: String::new(),
            name: "s".into(),
            service: "t".into(),
            kind: 1,
            start_unix_nano: 0,
            end_unix_nano: 0,
            status_code: 0,
            attributes: BTreeMap::new(),
        };
        spans.add((0..CAPACITY + 2).map(span).collect());
        let kept = spans.lock();
        assert_eq!(kept.spans.len(), CAPACITY);
        assert_eq!(kept.received, (CAPACITY + 2) as u64);
        assert_eq!(kept.spans[0].trace_id, format!("{:032x}", 2));
    }
}
