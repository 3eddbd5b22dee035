//! The Fanout API as the bench's sections drive it: notify, read status, wait for a state.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

/// The longest [`Api::fan_out`] waits for a request to finish.
const FAN_OUT_PATIENCE: Duration = Duration::from_secs(3600);

/// A Fanout API as the sections drive it: one tenant's key.
pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    key: String,
}

impl Api {
    /// The API at `url`, called with the tenant key `key`.
    pub(crate) fn new(url: String, key: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            url,
            key,
        }
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "POST {path}: {status} {body}");
        Ok(body)
    }

    /// Posts a notification; returns its request id.
    pub(crate) async fn notify(&self, body: Value) -> anyhow::Result<String> {
        let accepted = self.post("/v1/notify", body).await?;
        Ok(accepted["request_id"]
            .as_str()
            .with_context(|| format!("notify failed: {accepted}"))?
            .to_owned())
    }

    /// Notifies the followers of `of` with `template`; returns the request id.
    pub(crate) async fn notify_followers(
        &self,
        template: &str,
        of: &str,
        dedupe_key: &str,
    ) -> anyhow::Result<String> {
        self.notify(json!({
            "template_id": template,
            "recipients_query": {"type": "followers", "of": of},
            "data": {"actor": "Star"},
            "dedupe_key": dedupe_key
        }))
        .await
    }

    pub(crate) async fn status(&self, request_id: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}/v1/status/{request_id}", self.url))
            .bearer_auth(&self.key)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Waits up to `timeout` for the request's status to satisfy `done`.
    pub(crate) async fn wait_for(
        &self,
        request_id: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status(request_id).await?;
            if done(&status) {
                return Ok(status);
            }
            anyhow::ensure!(Instant::now() < deadline, "{what}: still {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Posts a notification and polls its status until it leaves `running`; returns the
    /// request id, the final status and the seconds from the post to the status that said so.
    pub(crate) async fn fan_out(&self, body: Value) -> anyhow::Result<(String, Value, f64)> {
        let started = Instant::now();
        let request_id = self.notify(body).await?;
        let status = self
            .wait_for(&request_id, "leaving running", FAN_OUT_PATIENCE, |s| {
                s["state"] != "running"
            })
            .await?;
        Ok((request_id, status, started.elapsed().as_secs_f64()))
    }
}
