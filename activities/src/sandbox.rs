//! What the provider tests share about the in-process fanout-sandbox they send to.

use serde::de::DeserializeOwned;

/// Sends a request to the sandbox's API and reads its JSON answer; any failure fails the test.
pub(crate) async fn json<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    request.send().await.unwrap().json().await.unwrap()
}
