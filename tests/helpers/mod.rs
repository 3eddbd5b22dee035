//! The end-to-end harness.
//!
//! Once per test binary it starts a real Temporal dev server (the `temporal` CLI, in-memory, on
//! a free port) and the SMTP sandbox. Each test then gets its own [`TestApp`]: a tenant, an API
//! key, a SQLite store file, a task queue, and an in-process worker and API on port 0, so tests
//! run in parallel without seeing each other.

pub use fanout_tests::stack;

pub mod fanout;
pub mod processes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use fanout_domain::TenantId;
use fanout_domain::config::{StoreConfig, TemporalConfig};
use fanout_domain::request::DeliveryPath;
use fanout_domain::webhook::WebhooksConfig;
use fanout_sandbox::{EmailList, NewFault, StoredEmail};
use fanout_store::Store;
use fanout_store::tenants::generate_api_key;
use reqwest::StatusCode;
use serde_json::{Value, json};
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use tokio::sync::oneshot;

use self::stack::Shared;

/// One test's slice of the platform.
pub struct TestApp {
    /// Base URL of this test's API.
    pub api_url: String,
    /// The tenant the test acts as.
    pub tenant: TenantId,
    /// Its API key.
    pub api_key: String,
    /// Direct store access, for bulk set-up.
    pub store: Store,
    /// The configuration this test's worker runs with (to start more, or another process).
    pub worker_config: fanout_worker::Config,
    /// Shared services (Temporal, sandbox).
    pub shared: &'static Shared,
    http: reqwest::Client,
    stop_api: Option<oneshot::Sender<()>>,
    stop_worker: Option<oneshot::Sender<()>>,
}

/// How a test's slice of the platform is set up.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Recipients per audience page.
    pub page_size: u32,
    /// Sends in flight per page and channel.
    pub concurrency: usize,
    /// Whether the test gets a worker in this process (false: it runs its own).
    pub in_process_worker: bool,
    /// The API's limit for the direct path (0 sends every request down the tree).
    pub direct_max_recipients: usize,
    /// Whether the test's worker delivers webhooks ([`webhooks_config`]).
    pub webhooks: bool,
    /// The relays the test's worker fails email over to (none by default).
    pub smtp_failover: fanout_activities::SmtpFailoverConfig,
    /// How much faster than real time local-time groups are released (1: real time).
    pub local_time_speedup: u32,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            page_size: 50,
            concurrency: 16,
            in_process_worker: true,
            direct_max_recipients: fanout_domain::request::DIRECT_MAX_RECIPIENTS,
            webhooks: false,
            smtp_failover: fanout_activities::SmtpFailoverConfig::default(),
            local_time_speedup: 1,
        }
    }
}

impl Setup {
    /// The default setup, with every request of the test taking `path`.
    pub fn on(path: DeliveryPath) -> Self {
        Self {
            direct_max_recipients: match path {
                DeliveryPath::Direct => fanout_domain::request::DIRECT_MAX_RECIPIENTS,
                DeliveryPath::Tree => 0,
            },
            ..Self::default()
        }
    }
}

impl TestApp {
    /// Starts a worker and an API for the test named `name`, whose requests take `path`.
    pub async fn spawn_on(name: &str, path: DeliveryPath) -> anyhow::Result<Self> {
        Self::spawn_setup(&format!("{name}-{}", path.as_str()), Setup::on(path)).await
    }

    /// Starts a worker and an API for the test named `name`.
    pub async fn spawn(name: &str) -> anyhow::Result<Self> {
        Self::spawn_with(name, 50, 16).await
    }

    /// As [`Self::spawn`], with the given page size and sends in flight per page and channel.
    pub async fn spawn_with(
        name: &str,
        page_size: u32,
        concurrency: usize,
    ) -> anyhow::Result<Self> {
        Self::spawn_full(name, page_size, concurrency, true).await
    }

    /// As [`Self::spawn_with`]; without an in-process worker when `in_process_worker` is false
    /// (the test runs its own, e.g. as a separate process).
    pub async fn spawn_full(
        name: &str,
        page_size: u32,
        concurrency: usize,
        in_process_worker: bool,
    ) -> anyhow::Result<Self> {
        let setup = Setup {
            page_size,
            concurrency,
            in_process_worker,
            ..Setup::default()
        };
        Self::spawn_setup(name, setup).await
    }

    /// Starts the test's slice of the platform as `setup` says.
    pub async fn spawn_setup(name: &str, setup: Setup) -> anyhow::Result<Self> {
        let Setup {
            page_size,
            concurrency,
            in_process_worker,
            direct_max_recipients,
            webhooks,
            smtp_failover,
            local_time_speedup,
        } = setup;
        let shared = stack::shared()?;
        let suffix: u32 = rand::random();
        let slug: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let tenant = TenantId::parse(&format!("{slug}-{suffix:08x}"))?;
        let task_queue = format!("test-{slug}-{suffix:08x}");
        let store_config = StoreConfig {
            url: store_url(&slug, suffix).await?,
            max_connections: Some(8),
        };
        let temporal = TemporalConfig {
            address: format!("http://{}", shared.temporal_address),
            namespace: "default".into(),
            task_queue: task_queue.clone(),
        };

        let store = Store::connect(&store_config).await?;
        store.upsert_tenant(&tenant, name).await?;
        let api_key = generate_api_key();
        store.add_api_key(&tenant, &api_key).await?;

        let worker_config = fanout_worker::Config {
            temporal: temporal.clone(),
            store: store_config.clone(),
            smtp: fanout_activities::SmtpConfig {
                host: "127.0.0.1".into(),
                port: shared.smtp_addr.port(),
                ..Default::default()
            },
            delivery: fanout_activities::DeliveryConfig {
                page_size,
                concurrency,
                // Quiet-hours windows in tests end seconds ahead: release on the second.
                quiet_bucket_ms: 1_000,
                local_time_speedup,
                ..Default::default()
            },
            apns: shared.apns.clone(),
            fcm: shared.fcm.clone(),
            // Outage tests count retry attempts; `limits.rs` spawns workers with breakers.
            limits: fanout_activities::LimitsConfig::default().without_breaker(),
            // Tests share one process and so one metrics registry: the tenant label tells
            // each test's counts apart.
            metrics: fanout_telemetry::metrics::MetricsConfig {
                tenant_label: true,
                ..Default::default()
            },
            webhooks: webhooks_config(shared, webhooks),
            smtp_failover,
            ..fanout_worker::Config::default()
        };
        let stop_worker = in_process_worker.then(|| stack::spawn_worker(worker_config.clone()));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api_url = format!("http://{}", listener.local_addr()?);
        let (stop_api, api_stopped) = oneshot::channel::<()>();
        let api_config = fanout_api::Config {
            listen_addr: listener.local_addr()?.to_string(),
            temporal,
            store: store_config,
            direct_max_recipients,
            metrics: fanout_telemetry::metrics::MetricsConfig {
                tenant_label: true,
                ..Default::default()
            },
            webhooks: webhooks_config(shared, false),
            ..fanout_api::Config::default()
        };
        tokio::spawn(async move {
            let shutdown = async {
                let _ = api_stopped.await;
            };
            if let Err(e) = fanout_api::run(api_config, listener, shutdown).await {
                eprintln!("api stopped: {e:#}");
            }
        });
        let app = Self {
            api_url,
            tenant,
            api_key,
            store,
            worker_config,
            shared,
            http: reqwest::Client::new(),
            stop_api: Some(stop_api),
            stop_worker,
        };
        app.wait_healthy().await?;
        Ok(app)
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        poll(Duration::from_secs(60), "api healthy", || async {
            let r = self
                .http
                .get(format!("{}/healthz", self.api_url))
                .send()
                .await;
            Ok(r.ok().filter(|r| r.status().is_success()).map(|_| ()))
        })
        .await
    }

    /// A request to this test's API, authenticated as its tenant.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_as(&self.api_key, method, path)
    }

    /// A request to this test's API with another tenant's key (see [`Self::add_tenant`]).
    pub fn request_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api_url))
            .bearer_auth(key)
    }

    /// Creates a second tenant on this test's stack (same task queue and worker), with the
    /// test's templates, a lifted ingest quota, and an API key; returns the tenant (its id is
    /// `name` with a random suffix) and the key.
    pub async fn add_tenant(
        &self,
        name: &str,
        templates: &[(&str, Value)],
    ) -> anyhow::Result<(TenantId, String)> {
        let suffix: u32 = rand::random();
        let tenant = TenantId::parse(&format!("{name}-{suffix:08x}"))?;
        self.store.upsert_tenant(&tenant, name).await?;
        let key = generate_api_key();
        self.store.add_api_key(&tenant, &key).await?;
        lift_ingest_quota(&self.store, &tenant).await?;
        for (id, body) in templates {
            let r = self
                .request_as(&key, reqwest::Method::PUT, &format!("/v1/templates/{id}"))
                .json(body)
                .send()
                .await?;
            expect_status(r, StatusCode::OK).await?;
        }
        Ok((tenant, key))
    }

    /// Creates a user with an address for the tenant whose key is `key`.
    pub async fn put_user_as(&self, key: &str, user: &str) -> anyhow::Result<()> {
        let r = self
            .request_as(key, reqwest::Method::PUT, &format!("/v1/users/{user}"))
            .json(&json!({"name": user, "email": format!("{user}@{}.test", self.tenant)}))
            .send()
            .await?;
        expect_status(r, StatusCode::OK).await.map(|_| ())
    }

    /// An email address unique to this test, so sandbox reads never see other tests' mail.
    pub fn email_of(&self, user: &str) -> String {
        format!("{user}@{}.test", self.tenant)
    }

    /// Creates a user with an address from [`Self::email_of`] (or none).
    pub async fn put_user(&self, user: &str, name: &str, with_email: bool) -> anyhow::Result<()> {
        let mut body = json!({"name": name, "locale": "en"});
        if with_email {
            body["email"] = json!(self.email_of(user));
        }
        let r = self
            .request(reqwest::Method::PUT, &format!("/v1/users/{user}"))
            .json(&body)
            .send()
            .await?;
        expect_status(r, StatusCode::OK).await.map(|_| ())
    }

    /// Creates or updates a template.
    pub async fn put_template(&self, id: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .request(reqwest::Method::PUT, &format!("/v1/templates/{id}"))
            .json(&body)
            .send()
            .await?;
        expect_status(r, StatusCode::OK).await
    }

    /// Posts a trigger and returns the status code and body.
    pub async fn notify(&self, body: &Value) -> anyhow::Result<(StatusCode, Value)> {
        let r = self
            .request(reqwest::Method::POST, "/v1/notify")
            .json(body)
            .send()
            .await?;
        let status = r.status();
        Ok((status, r.json().await?))
    }

    /// Reads a request's status.
    pub async fn status(&self, request_id: &str) -> anyhow::Result<Value> {
        let r = self
            .request(reqwest::Method::GET, &format!("/v1/status/{request_id}"))
            .send()
            .await?;
        expect_status(r, StatusCode::OK).await
    }

    /// Polls status until the request reaches `state`.
    pub async fn wait_for_state(&self, request_id: &str, state: &str) -> anyhow::Result<Value> {
        poll(
            Duration::from_secs(180),
            &format!("request {state}"),
            || async {
                let s = self.status(request_id).await?;
                Ok((s["state"] == state).then_some(s))
            },
        )
        .await
    }

    /// Cancels a request through the API (202).
    pub async fn cancel(&self, request_id: &str) -> anyhow::Result<()> {
        let r = self
            .request(reqwest::Method::POST, "/v1/cancel")
            .json(&serde_json::json!({"request_id": request_id}))
            .send()
            .await?;
        expect_status(r, StatusCode::ACCEPTED).await?;
        Ok(())
    }

    /// Every receipt of a request, following cursors with small pages.
    pub async fn all_receipts(&self, request_id: &str) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/receipts?request_id={request_id}&limit=3");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let r = self.request(reqwest::Method::GET, &path).send().await?;
            let page = expect_status(r, StatusCode::OK).await?;
            out.extend(page["receipts"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(out),
            }
        }
    }

    /// A user's receipts for a request, read straight from the store.
    pub async fn all_receipts_for_user(
        &self,
        request_id: &str,
        user: &str,
    ) -> anyhow::Result<Vec<Value>> {
        let request_id = fanout_domain::RequestId::parse(request_id)?;
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_receipts(&self.tenant, &request_id, after.as_ref(), 1000)
                .await?;
            let Some(last) = page.last() else {
                return Ok(out);
            };
            after = Some(last.instance_id.clone());
            out.extend(
                page.iter()
                    .filter(|r| r.user_id.as_str() == user)
                    .map(serde_json::to_value)
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
    }

    /// A user's inbox, newest first.
    pub async fn inbox(&self, user: &str) -> anyhow::Result<Vec<Value>> {
        let r = self
            .request(reqwest::Method::GET, &format!("/v1/users/{user}/inbox"))
            .send()
            .await?;
        let page = expect_status(r, StatusCode::OK).await?;
        Ok(page["messages"].as_array().cloned().unwrap_or_default())
    }

    /// Emails the sandbox received for `address`, oldest first.
    pub async fn emails_to(&self, address: &str) -> anyhow::Result<Vec<StoredEmail>> {
        let url = format!(
            "{}/api/emails?to={address}&limit=1000",
            self.shared.sandbox_url
        );
        let list: EmailList = self.http.get(url).send().await?.json().await?;
        Ok(list.emails)
    }

    /// A Temporal client on the shared dev server.
    pub async fn temporal_client(&self) -> anyhow::Result<temporalio_client::Client> {
        use std::str::FromStr;
        let url =
            temporalio_client::Url::from_str(&format!("http://{}", self.shared.temporal_address))?;
        let connection = temporalio_client::Connection::connect(
            temporalio_client::ConnectionOptions::new(url).build(),
        )
        .await?;
        Ok(temporalio_client::Client::new(
            connection,
            temporalio_client::ClientOptions::new("default").build(),
        )?)
    }

    /// Lifts the tenant's ingest quota, for tests that send bursts on purpose.
    pub async fn lift_ingest_quota(&self) -> anyhow::Result<()> {
        lift_ingest_quota(&self.store, &self.tenant).await
    }

    /// The history of the workflow `workflow_id` on the shared dev server.
    pub async fn history(
        &self,
        workflow_id: &str,
    ) -> anyhow::Result<Vec<temporalio_common::protos::temporal::api::history::v1::HistoryEvent>>
    {
        let client = self.temporal_client().await?;
        let history = client
            .get_workflow_handle::<temporalio_client::UntypedWorkflow>(workflow_id)
            .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
            .into_events()
            .await?;
        Ok(history)
    }

    /// The number of emails at this test's domain once none has arrived for `quiet` (make it
    /// longer than the sink's injected delay, so sends in flight have landed).
    pub async fn quiet_email_count(&self, quiet: Duration) -> anyhow::Result<usize> {
        let last = std::cell::Cell::new((usize::MAX, std::time::Instant::now()));
        poll(Duration::from_secs(60), "the sink quiet", || {
            let last = &last;
            async move {
                let now: usize = self.emails_per_recipient().await?.values().sum();
                let (seen, since) = last.get();
                if now != seen {
                    last.set((now, std::time::Instant::now()));
                    return Ok(None);
                }
                Ok((since.elapsed() >= quiet).then_some(now))
            }
        })
        .await
    }

    /// Every email the sandbox received at this test's domain, counted per recipient.
    pub async fn emails_per_recipient(&self) -> anyhow::Result<HashMap<String, usize>> {
        let mut counts = HashMap::new();
        for email in self.domain_emails().await? {
            for rcpt in email.rcpt_to {
                *counts.entry(rcpt).or_default() += 1;
            }
        }
        Ok(counts)
    }

    /// Every email the sandbox accepted for this test's domain, page by page.
    pub async fn domain_emails(&self) -> anyhow::Result<Vec<StoredEmail>> {
        let mut out = Vec::new();
        let mut after: Option<u64> = None;
        loop {
            let mut url = format!(
                "{}/api/emails?to=@{}.test&limit=1000",
                self.shared.sandbox_url, self.tenant
            );
            if let Some(a) = after {
                url.push_str(&format!("&after_id={a}"));
            }
            let list: EmailList = self.http.get(url).send().await?.json().await?;
            out.extend(list.emails);
            match list.next_after_id {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Creates `n` users `u00000..` with addresses at this test's domain, and makes them all
    /// followers of `star`. Returns their ids.
    pub async fn seed_followers(&self, star: &str, n: usize) -> anyhow::Result<Vec<String>> {
        use fanout_domain::UserId;
        use fanout_domain::user::{EmailAddress, User};
        let ids: Vec<String> = (0..n).map(|i| format!("u{i:05}")).collect();
        let users = ids
            .iter()
            .map(|id| {
                Ok(User {
                    user_id: UserId::parse(id)?,
                    email: Some(EmailAddress::parse(&self.email_of(id))?),
                    name: Some(id.clone()),
                    locale: None,
                    timezone: None,
                    devices: Vec::new(),
                    quiet_hours: None,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.store.upsert_users(&self.tenant, &users).await?;
        let followers: Vec<UserId> = users.into_iter().map(|u| u.user_id).collect();
        self.store
            .add_followers(&self.tenant, &UserId::parse(star)?, &followers)
            .await?;
        Ok(ids)
    }

    /// Posts JSON (or nothing) and returns the status and body.
    pub async fn post(
        &self,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self.request(reqwest::Method::POST, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await?;
        let status = r.status();
        let text = r.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Installs an SMTP fault rule in the sandbox and returns its id.
    pub async fn smtp_fault(&self, fault: &NewFault) -> anyhow::Result<u64> {
        let url = format!("{}/api/smtp/faults", self.shared.sandbox_url);
        let r = self.http.post(url).json(fault).send().await?;
        let rule = expect_status(r, StatusCode::CREATED).await?;
        rule["id"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("fault rule without an id: {rule}"))
    }

    /// Removes an SMTP fault rule: the relay recovers.
    pub async fn remove_smtp_fault(&self, id: u64) -> anyhow::Result<()> {
        let url = format!("{}/api/smtp/faults/{id}", self.shared.sandbox_url);
        let r = self.http.delete(url).send().await?;
        expect_status(r, StatusCode::NO_CONTENT).await.map(|_| ())
    }

    /// Waits until `receipts` of the request's receipts count at least `attempts` provider calls:
    /// an outage has lasted that many delivery rounds for each of them.
    pub async fn wait_for_attempts(
        &self,
        request_id: &str,
        receipts: usize,
        attempts: u64,
    ) -> anyhow::Result<()> {
        poll(Duration::from_secs(120), "retried attempts", || async {
            let found = self.all_receipts(request_id).await?;
            let retried = found
                .iter()
                .filter(|r| r["attempts"].as_u64() >= Some(attempts))
                .count();
            Ok((retried >= receipts).then_some(()))
        })
        .await
    }

    /// Re-drives every dead letter of a finished request and returns the API's answer (202).
    pub async fn redrive(&self, request_id: &str) -> anyhow::Result<Value> {
        let (status, answer) = self
            .post(
                "/v1/dead-letters/redrive",
                Some(json!({"request_id": request_id})),
            )
            .await?;
        anyhow::ensure!(
            status == StatusCode::ACCEPTED,
            "re-drive: {status} {answer}"
        );
        Ok(answer)
    }

    /// Sends a GET to this test's API and returns the status and body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        let r = self.request(reqwest::Method::GET, path).send().await?;
        let status = r.status();
        let text = r.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop_api.take() {
            let _ = tx.send(());
        }
        if let Some(tx) = self.stop_worker.take() {
            let _ = tx.send(());
        }
    }
}

/// Fails with the body when the status is not the expected one.
pub async fn expect_status(r: reqwest::Response, want: StatusCode) -> anyhow::Result<Value> {
    let status = r.status();
    let text = r.text().await?;
    if status != want {
        bail!("expected {want}, got {status}: {text}");
    }
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).with_context(|| format!("body is not JSON: {text}"))
}

/// The most events one webhook call carries in the tests.
pub const WEBHOOK_BATCH: u32 = 100;

/// Webhook settings for a test: the sandbox's receiver allowed though it is on loopback, and
/// waits short enough for a test to see batches and retries within seconds. A partial batch
/// waits 5 s of quiet, so a fan-out's events, arriving steadily, travel in full batches.
fn webhooks_config(shared: &Shared, deliver: bool) -> WebhooksConfig {
    WebhooksConfig {
        deliver,
        allowed_private: vec![shared.sandbox_url.trim_start_matches("http://").to_owned()],
        batch_size: WEBHOOK_BATCH,
        batch_wait_ms: 5_000,
        poll_ms: 100,
        timeout_ms: 5_000,
        max_backoff_seconds: 3,
        ..WebhooksConfig::default()
    }
}

/// Polls `check` until it yields a value or `timeout` passes. Deadlines are generous (a minute
/// or more for what takes a second on an idle machine): the suite runs its tests in parallel,
/// often beside other builds, where everything can take several times as long, and a deadline
/// costs nothing when the condition comes true early.
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out waiting for {what} (last error: {last_error:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The wall clock in Unix milliseconds (`fanout_runtime::now_ms`), unsigned as the sandbox's
/// arrival times are.
pub fn now_ms() -> u64 {
    fanout_runtime::now_ms().unsigned_abs()
}

/// Waits until the workflow `workflow_id` has started a timer (a scheduled request waiting
/// for its time, say).
pub async fn wait_for_timer(app: &TestApp, workflow_id: &str) -> anyhow::Result<()> {
    poll(Duration::from_secs(60), "a timer started", || async {
        let events = app.history(workflow_id).await?;
        Ok(events
            .iter()
            .any(|e| e.event_type() == EventType::TimerStarted)
            .then_some(()))
    })
    .await
}

/// Counts values by a string key, for exact assertions over receipts.
pub fn tally(items: &[Value], key: impl Fn(&Value) -> String) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for item in items {
        *counts.entry(key(item)).or_default() += 1;
    }
    counts
}

/// Lifts a tenant's ingest quota far above anything a test sends.
async fn lift_ingest_quota(store: &Store, tenant: &TenantId) -> anyhow::Result<()> {
    let mut settings = store.tenant_settings(tenant).await?;
    settings.ingest_per_second = Some(100_000);
    settings.ingest_burst = Some(100_000);
    store.set_tenant_settings(tenant, &settings).await?;
    Ok(())
}

/// The test's own store: a new database on the PostgreSQL server named by
/// `FANOUT_TEST_POSTGRES_URL` when it is set (`make test` runs the e2e suite once on each
/// backend), else a new SQLite file under the system temp dir.
async fn store_url(slug: &str, suffix: u32) -> anyhow::Result<String> {
    if let Ok(admin) = std::env::var("FANOUT_TEST_POSTGRES_URL") {
        return Ok(fanout_store::create_scratch_database(&admin, "e2e").await?);
    }
    let db: PathBuf = std::env::temp_dir()
        .join("fanout-e2e")
        .join(format!("{slug}-{suffix:08x}.db"));
    Ok(format!("sqlite://{}?mode=rwc", db.display()))
}

/// One email as the sandbox saw it: when it arrived and which worker (by `EHLO` name) sent it.
pub struct Arrival {
    /// When it arrived (Unix ms).
    pub at_ms: u64,
    /// The `EHLO` name it came with.
    pub helo: Option<String>,
}

impl TestApp {
    /// Every email the sandbox accepted for this test's domain, in arrival order.
    pub async fn arrivals(&self) -> anyhow::Result<Vec<Arrival>> {
        let mut out: Vec<Arrival> = self
            .domain_emails()
            .await?
            .into_iter()
            .map(|e| Arrival {
                at_ms: e.received_at_ms,
                helo: e.helo,
            })
            .collect();
        out.sort_by_key(|a| a.at_ms);
        Ok(out)
    }
}

/// The most arrivals within any `window_ms` (sorted input).
pub fn busiest_window(times: &[u64], window_ms: u64) -> usize {
    let mut start = 0;
    let mut most = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window_ms {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    most
}
