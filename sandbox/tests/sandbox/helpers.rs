//! A sandbox on port 0 per test, and clients for it.

use std::time::Duration;

use fanout_sandbox::{EmailList, Fault, SmtpOptions, SmtpTls};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, Message, Tokio1Executor};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running sandbox; stopped when dropped.
pub struct TestSandbox {
    pub smtp_port: u16,
    /// Base URL of the APNs simulator, e.g. `https://127.0.0.1:40123`.
    pub apns_url: String,
    /// The implicit-TLS listener.
    pub smtps_port: u16,
    /// The CA certificate that signed the SMTP certificate.
    pub ca_pem: String,
    base_url: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestSandbox {
    pub async fn spawn() -> Self {
        Self::spawn_with(SmtpOptions::default()).await
    }

    /// A sandbox with SMTP security options, serving implicit TLS too.
    pub async fn spawn_with(mut options: SmtpOptions) -> Self {
        let tls = options
            .tls
            .get_or_insert_with(|| SmtpTls::generate().unwrap());
        let ca_pem = tls.ca_pem().to_owned();
        let smtp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let smtps = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let apns = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let smtp_port = smtp.local_addr().unwrap().port();
        let apns_url = format!("https://{}", apns.local_addr().unwrap());
        let smtps_port = smtps.local_addr().unwrap().port();
        let base_url = format!("http://{}", http.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let listeners = fanout_sandbox::Listeners {
            smtp,
            smtps: Some(smtps),
            http,
            apns,
        };
        let server = tokio::spawn(fanout_sandbox::serve_with(listeners, options, async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self {
            smtp_port,
            apns_url,
            smtps_port,
            ca_pem,
            base_url,
            http,
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A pooled lettre transport, as the SMTP activity uses.
    pub fn mailer(&self) -> AsyncSmtpTransport<Tokio1Executor> {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(self.smtp_port)
            .timeout(Some(Duration::from_secs(10)))
            .build()
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> T {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    pub async fn emails(&self, query: &str) -> EmailList {
        self.get_json(&format!("/api/emails{query}")).await
    }

    pub async fn count(&self, to: &str) -> u64 {
        let response = self
            .http
            .get(self.url("/api/emails/count"))
            .query(&[("to", to)])
            .send()
            .await
            .unwrap();
        let count: fanout_sandbox::EmailCount = response.json().await.unwrap();
        count.count
    }

    pub async fn add_fault(&self, rule: serde_json::Value) -> Fault {
        let response = self
            .http
            .post(self.url("/api/smtp/faults"))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// Triggers shutdown and returns what `serve` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let server = self.server.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), server).await??
    }
}

impl Drop for TestSandbox {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

/// A plain-text message from the platform's sender.
pub fn message(to: &[&str], subject: &str, body: &str) -> Message {
    let mut builder = Message::builder()
        .from("Fanout <noreply@fanout.test>".parse::<Mailbox>().unwrap())
        .subject(subject)
        .message_id(Some(format!("<{}@fanout.test>", subject.replace(' ', "-"))));
    for to in to {
        builder = builder.to(to.parse::<Mailbox>().unwrap());
    }
    builder.body(body.to_owned()).unwrap()
}
