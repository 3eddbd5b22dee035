//! What an operator sees: the worker's and the API's metrics after real deliveries, the
//! worker's health listener, and the request id the API echoes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fanout_sandbox::{FaultStage, NewFault};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, poll, processes, stack};

/// The value of the sample of `name` whose labels include all of `labels`, summed over the
/// samples that match (0 when none does).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let found: BTreeMap<&str, &str> = rest
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (key, value) = pair.split_once("=\"")?;
                    Some((key, value.trim_end_matches('"')))
                })
                .collect();
            let matches = labels.iter().all(|(k, v)| found.get(k) == Some(v));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

async fn scrape(url: &str) -> anyhow::Result<(StatusCode, String)> {
    let response = reqwest::get(url).await?;
    Ok((response.status(), response.text().await?))
}

/// Metrics of the Temporal SDK itself that ride along on the worker's listener.
const SDK_METRICS: [&str; 2] = [
    "temporal_worker_task_slots_available",
    "temporal_workflow_task_execution_latency",
];

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_show_in_the_workers_metrics_by_channel_and_outcome() -> anyhow::Result<()> {
    // The test's own worker, serving its metrics and health on a port of its own.
    let app = TestApp::spawn_full("observability", 50, 16, false).await?;
    let port = stack::free_port()?;
    let metrics_url = format!("http://127.0.0.1:{port}");
    let _worker = stack::spawn_worker(fanout_worker::Config {
        metrics_addr: Some(format!("127.0.0.1:{port}")),
        ..app.worker_config.clone()
    });
    poll(Duration::from_secs(60), "the worker is ready", || async {
        Ok(scrape(&format!("{metrics_url}/readyz"))
            .await
            .ok()
            .filter(|(status, _)| *status == StatusCode::OK))
    })
    .await?;
    assert_eq!(
        scrape(&format!("{metrics_url}/healthz")).await?.0,
        StatusCode::OK
    );

    app.put_template(
        "digest",
        json!({
            "name": "Digest",
            "email": {"subject": "Your digest", "text": "{{ data.count }} new items."},
            "in_app": {"title": "Digest", "body": "{{ data.count }} new items."}
        }),
    )
    .await?;
    for user in ["fine1", "fine2", "bounce"] {
        app.put_user(user, user, true).await?;
    }
    app.smtp_fault(&NewFault {
        rcpt: app.email_of("bounce"),
        code: 550,
        message: "550 no such mailbox".into(),
        stage: FaultStage::Rcpt,
        times: None,
        delay_ms: 0,
    })
    .await?;
    let response = app
        .request(reqwest::Method::POST, "/v1/notify")
        .header("x-request-id", "e2e-observability-1")
        .json(&json!({
            "template_id": "digest",
            "recipients_query": {"type": "users", "user_ids": ["fine1", "fine2", "bounce"]},
            "data": {"count": 3}
        }))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        response.headers()["x-request-id"],
        "e2e-observability-1",
        "the client's request id is echoed"
    );
    let accepted: serde_json::Value = response.json().await?;
    let request_id = accepted["request_id"].as_str().unwrap().to_owned();
    app.wait_for_state(&request_id, "completed").await?;

    let tenant = app.tenant.as_str();
    let expected = [
        (("email", "delivered", ""), 2.0),
        (("email", "failed", "smtp_550"), 1.0),
        (("in_app", "delivered", ""), 3.0),
    ];
    let text = poll(Duration::from_secs(60), "the delivery counters", || async {
        let (_, text) = scrape(&format!("{metrics_url}/metrics")).await?;
        let all = expected.iter().all(|((channel, outcome, code), want)| {
            let labels = [
                ("tenant", tenant),
                ("channel", *channel),
                ("outcome", *outcome),
                ("code", *code),
            ];
            sample(&text, "fanout_deliveries_total", &labels) == *want
        });
        // The Temporal SDK's metrics reach the listener from core's exporter, which may lag
        // the workflow tasks behind them on a loaded machine: wait for them too.
        let sdk = SDK_METRICS
            .iter()
            .all(|name| text.lines().any(|line| line.starts_with(name)));
        Ok((all && sdk).then_some(text))
    })
    .await?;
    for channel in ["email", "in_app"] {
        let labels = [("channel", channel), ("priority", "normal")];
        assert!(
            sample(&text, "fanout_trigger_to_delivered_seconds_count", &labels) >= 2.0,
            "{channel}: {text}"
        );
    }
    // The Temporal SDK's own metrics ride along on the worker's listener.
    for name in SDK_METRICS {
        assert!(
            text.lines().any(|line| line.starts_with(name)),
            "{name} missing: {text}"
        );
    }
    let smtp = sample(
        &text,
        "fanout_provider_calls_total",
        &[("provider", "smtp")],
    );
    assert!(smtp >= 3.0, "three SMTP transactions at least: {text}");
    // The limits and the delivery machinery. The registry is the test process's, shared with
    // the tests running beside this one: counters can only be higher, gauges are only read.
    let first_rounds = sample(
        &text,
        "fanout_delivery_rounds_total",
        &[("channel", "email"), ("round", "first")],
    );
    assert!(first_rounds >= 1.0, "a first email round: {text}");
    let window = sample(&text, "fanout_provider_window", &[("provider", "smtp")]);
    assert!(window >= 1.0, "the smtp window was opened: {text}");
    let leases = sample(
        &text,
        "fanout_bucket_leases_total",
        &[("scope", "template")],
    );
    assert!(leases >= 1.0, "the template's bucket was asked: {text}");
    for name in [
        "fanout_provider_in_flight",
        "fanout_breaker_open",
        "fanout_pages_in_flight",
        "fanout_bucket_tokens_leased_total",
        "fanout_delivery_round_wait_seconds_count",
    ] {
        assert!(exported(&text, name), "{name} missing: {text}");
    }

    // The API counts the notify and the request by its route template.
    let (status, api) = scrape(&format!("{}/metrics", app.api_url)).await?;
    assert_eq!(status, StatusCode::OK);
    let accepted = [("tenant", tenant), ("outcome", "accepted")];
    assert_eq!(sample(&api, "fanout_notify_total", &accepted), 1.0, "{api}");
    let route = [
        ("route", "/v1/status/{request_id}"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert!(
        sample(&api, "fanout_http_requests_total", &route) >= 1.0,
        "{api}"
    );

    // Every metric the alerts and the dashboard name is in these real scrapes.
    let scraped = format!("{text}\n{api}");
    let referenced = referenced_metrics();
    let missing: Vec<&String> = referenced
        .iter()
        .filter(|name| !exported(&scraped, name))
        .collect();
    assert!(
        missing.is_empty(),
        "named in deploy/ but in no scrape: {missing:?}"
    );
    Ok(())
}

/// The metric names (Fanout's `fanout_*`, the Temporal SDK's `temporal_*`) the Prometheus
/// rules and the Grafana dashboard refer to.
fn referenced_metrics() -> BTreeSet<String> {
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
    let mut files = vec![format!("{deploy}/grafana/fanout.json")];
    for entry in std::fs::read_dir(format!("{deploy}/prometheus/rules")).unwrap() {
        files.push(entry.unwrap().path().display().to_string());
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for prefix in ["fanout_", "temporal_"] {
            names.extend(names_after(&text, prefix));
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    names
}

/// The identifiers in `text` that start with `prefix`, not inside a longer identifier (a
/// recording rule's `fanout:…` is not a metric).
fn names_after(text: &str, prefix: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        if text[..at].chars().next_back().is_some_and(ident) {
            continue;
        }
        let name: String = text[at..].chars().take_while(|c| ident(*c)).collect();
        if name.len() > prefix.len() && !name.contains(':') {
            names.push(name);
        }
    }
    names
}

/// Whether a scrape has a sample of `name`.
fn exported(scrape: &str, name: &str) -> bool {
    scrape.lines().any(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_makes_a_request_id_when_the_client_sends_none_and_reports_readiness()
-> anyhow::Result<()> {
    let app = TestApp::spawn("request-ids").await?;
    for sent in [None, Some("not valid!")] {
        let mut request = app.request(reqwest::Method::GET, "/v1/receipts?request_id=ntf-x");
        if let Some(id) = sent {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await?;
        let id = response.headers()["x-request-id"].to_str()?.to_owned();
        assert!(id.starts_with("req-") && id.len() > 10, "{sent:?} -> {id}");
    }
    let response = reqwest::get(format!("{}/readyz", app.api_url)).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await?;
    assert_eq!(
        body,
        json!({"status": "ready", "store": "ok", "temporal": "ok"})
    );
    Ok(())
}

/// The spans of one trace the sandbox's OTLP receiver holds, once `ready` says they are all
/// there (exporters send in batches, so spans arrive over a moment).
async fn trace_spans(
    sandbox: &str,
    trace_id: &str,
    ready: impl Fn(&[fanout_sandbox::otlp::ReceivedSpan]) -> bool,
) -> anyhow::Result<Vec<fanout_sandbox::otlp::ReceivedSpan>> {
    let url = format!("{sandbox}/api/spans?trace_id={trace_id}");
    let read = || async {
        let list: fanout_sandbox::otlp::SpanList = reqwest::get(&url).await?.json().await?;
        anyhow::Ok(list.spans)
    };
    let found = poll(Duration::from_secs(60), "the trace's spans", || async {
        Ok(Some(read().await?).filter(|spans| ready(spans)))
    })
    .await;
    match found {
        Ok(spans) => Ok(spans),
        Err(e) => Err(anyhow::anyhow!("{e}; spans so far: {:#?}", read().await?)),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_notify_is_one_trace_from_the_api_through_the_workflow_to_the_smtp_send()
-> anyhow::Result<()> {
    // The API and the worker as processes of their own (a process has one trace exporter),
    // exporting to the sandbox's OTLP receiver.
    let app = TestApp::spawn_full("traces", 50, 16, false).await?;
    app.put_template(
        "post",
        json!({"name": "Post", "email": {"subject": "Hi", "text": "Hi {{ user.name }}"}}),
    )
    .await?;
    app.seed_followers("star", 2).await?;
    let sandbox = app.shared.sandbox_url.clone();
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", sandbox.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ];
    // Spans are exported whatever the log level: the worker logs warnings only.
    let _worker = processes::start_worker_with(&app, &otel)?;
    let mut api_settings = otel.to_vec();
    api_settings.extend([
        ("FANOUT_LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]);
    let log_path = std::env::temp_dir().join(format!("fanout-traces-api-{}.log", app.tenant));
    let addr = format!("127.0.0.1:{}", stack::free_port()?);
    let _api = processes::start_api_with(
        &app,
        &addr,
        &api_settings,
        Some(std::fs::File::create(&log_path)?),
    )?;
    let api = format!("http://{addr}");
    let http = reqwest::Client::new();
    poll(Duration::from_secs(60), "the api is up", || async {
        Ok(http.get(format!("{api}/healthz")).send().await.ok())
    })
    .await?;

    let accepted: serde_json::Value = http
        .post(format!("{api}/v1/notify"))
        .bearer_auth(&app.api_key)
        .json(&json!({
            "template_id": "post",
            "recipients_query": {"type": "followers", "of": "star"},
            "channel_prefs": ["email"]
        }))
        .send()
        .await?
        .json()
        .await?;
    let request_id = accepted["request_id"].as_str().unwrap().to_owned();
    poll(
        Duration::from_secs(180),
        "the request completes",
        || async {
            let status: serde_json::Value = http
                .get(format!("{api}/v1/status/{request_id}"))
                .bearer_auth(&app.api_key)
                .send()
                .await?
                .json()
                .await?;
            Ok((status["state"] == "completed").then_some(()))
        },
    )
    .await?;

    // The API's span names the request: it gives the trace.
    let notify = poll(Duration::from_secs(60), "the notify span", || async {
        let list: fanout_sandbox::otlp::SpanList = reqwest::get(format!(
            "{sandbox}/api/spans?attribute=request_id={request_id}"
        ))
        .await?
        .json()
        .await?;
        Ok(list
            .spans
            .into_iter()
            .find(|s| s.service == "fanout-api" && s.name == "POST /v1/notify"))
    })
    .await?;
    assert_eq!(notify.attributes["http.route"], "/v1/notify", "{notify:?}");
    assert_eq!(notify.attributes["tenant"], app.tenant.as_str());
    assert!(notify.parent_span_id.is_empty(), "a root span: {notify:?}");
    // A route with a parameter names its spans by the template, never by the raw path.
    let status_spans = poll(Duration::from_secs(60), "a status span", || async {
        let url = reqwest::Url::parse_with_params(
            &format!("{sandbox}/api/spans"),
            [("attribute", "http.route=/v1/status/{request_id}")],
        )?;
        let list: fanout_sandbox::otlp::SpanList = reqwest::get(url).await?.json().await?;
        Ok(Some(list.spans).filter(|spans| !spans.is_empty()))
    })
    .await?;
    assert!(
        status_spans
            .iter()
            .all(|s| s.name == "GET /v1/status/{request_id}"),
        "{status_spans:#?}"
    );

    // Every hop of one trace: the API, the workflow runs, the page's delivery and each SMTP
    // transaction, each span under the one before it.
    let spans = trace_spans(&sandbox, &notify.trace_id, |spans| {
        spans.iter().filter(|s| s.name == "smtp send").count() == 2
            && spans
                .iter()
                .any(|s| s.name == "RunWorkflow:NotificationWorkflow")
    })
    .await?;
    let by_id: BTreeMap<&str, &fanout_sandbox::otlp::ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let ancestry = |span: &fanout_sandbox::otlp::ReceivedSpan| -> Vec<String> {
        let mut names = vec![span.name.clone()];
        let mut at = span;
        while let Some(parent) = by_id.get(at.parent_span_id.as_str()) {
            names.push(parent.name.clone());
            at = parent;
        }
        names
    };
    let send = spans.iter().find(|s| s.name == "smtp send").unwrap();
    let chain = ancestry(send);
    println!("trace {}: {}", notify.trace_id, chain.join(" <- "));
    let position = |name: &str| {
        chain
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} is not an ancestor of smtp send: {chain:?}"))
    };
    let order = [
        "smtp send",
        "deliver email page 0",
        "RunActivity:deliver_page",
        "RunWorkflow:FanoutPageWorkflow",
        "RunWorkflow:NotificationWorkflow",
        "POST /v1/notify",
    ]
    .map(position);
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order: {chain:?}"
    );
    assert_eq!(chain.last().map(String::as_str), Some("POST /v1/notify"));
    let delivery = spans
        .iter()
        .find(|s| s.name == "deliver email page 0")
        .unwrap();
    assert_eq!(delivery.attributes["request_id"], request_id);
    assert_eq!(delivery.attributes["channel"], "email");
    assert!(
        spans.iter().all(|s| s.trace_id == notify.trace_id),
        "one trace"
    );

    // The API's log lines of the request carry the trace id.
    let log = std::fs::read_to_string(&log_path)?;
    let accepted_line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "notification accepted" && l["request_id"] == request_id.as_str())
        .ok_or_else(|| anyhow::anyhow!("no 'notification accepted' line in {log}"))?;
    // The event's own fields are flattened; the request span's (with the trace id) are in "span".
    assert_eq!(
        accepted_line["span"]["trace_id"],
        notify.trace_id.as_str(),
        "{accepted_line}"
    );
    let _ = std::fs::remove_file(&log_path);
    Ok(())
}
