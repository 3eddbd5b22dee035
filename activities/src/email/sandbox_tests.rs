use std::path::PathBuf;

use fanout_domain::config::Secret;
use fanout_sandbox::{EmailList, Listeners, SmtpCredentials, SmtpOptions, SmtpTls};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;

/// A sandbox relay on port 0, with its CA written to a file for `ca_path`.
struct Relay {
    smtp_port: u16,
    smtps_port: u16,
    base_url: String,
    ca_path: PathBuf,
    _stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

impl Relay {
    async fn spawn(name: &str, mut options: SmtpOptions) -> Self {
        let tls = SmtpTls::generate().unwrap();
        let ca_path =
            std::env::temp_dir().join(format!("fanout-email-{}-{name}.pem", std::process::id()));
        std::fs::write(&ca_path, tls.ca_pem()).unwrap();
        options.tls = Some(tls);
        let listeners = Listeners::bind_loopback().await.unwrap();
        let smtp_port = listeners.smtp.local_addr().unwrap().port();
        let smtps_port = listeners
            .smtps
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
            .unwrap();
        let base_url = format!("http://{}", listeners.http.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let server = tokio::spawn(async move {
            fanout_sandbox::serve_with(listeners, options, shutdown)
                .await
                .unwrap();
        });
        Self {
            smtp_port,
            smtps_port,
            base_url,
            ca_path,
            _stop: stop,
            server,
        }
    }

    /// A sender for this relay; `port` picks the plain or the implicit-TLS listener.
    fn config(&self, tls: SmtpTlsMode, port: u16) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            tls,
            ca_path: Some(self.ca_path.clone()),
            hello_name: Some("sender.test".into()),
            timeout_ms: 5_000,
            ..SmtpConfig::default()
        }
    }

    async fn emails_to(&self, to: &str) -> EmailList {
        let url = format!("{}/api/emails", self.base_url);
        let response = reqwest::Client::new()
            .get(url)
            .query(&[("to", to)])
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        response.json().await.unwrap()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_file(&self.ca_path);
    }
}

fn alice() -> SmtpOptions {
    SmtpOptions {
        credentials: Some(SmtpCredentials::new("alice", "s3cret")),
        ..SmtpOptions::default()
    }
}

fn with_login(mut config: SmtpConfig, password: &str) -> SmtpConfig {
    config.username = Some("alice".into());
    config.password = Some(Secret::new(password));
    config
}

async fn send(sender: &EmailSender, n: u32, to: &str) -> SendOutcome {
    let instance = InstanceId::parse(&format!("in_{n:032x}")).unwrap();
    let email = RenderedEmail {
        subject: format!("Message {n}"),
        text: "Hello".into(),
        html: None,
    };
    sender
        .send(&instance, &EmailAddress::parse(to).unwrap(), &email)
        .await
}

fn is_accepted(outcome: &SendOutcome) -> bool {
    matches!(outcome, SendOutcome::Accepted { .. })
}

#[tokio::test]
async fn starttls_with_auth_delivers_over_one_pooled_connection() {
    let relay = Relay::spawn("starttls", alice()).await;
    let config = with_login(
        relay.config(SmtpTlsMode::Starttls, relay.smtp_port),
        "s3cret",
    );
    let sender = EmailSender::new(&config).unwrap();
    for n in 0..3 {
        let outcome = send(&sender, n, "bob@example.com").await;
        assert!(is_accepted(&outcome), "{outcome:?}");
    }
    let list = relay.emails_to("bob@example.com").await;
    assert_eq!(list.emails.len(), 3);
    for email in &list.emails {
        assert!(email.tls, "{email:?}");
        assert_eq!(email.auth_user.as_deref(), Some("alice"));
        assert_eq!(email.helo.as_deref(), Some("sender.test"));
        assert_eq!(email.peer, list.emails[0].peer, "one pooled connection");
    }
}

#[tokio::test]
async fn implicit_tls_delivers() {
    let relay = Relay::spawn("implicit", alice()).await;
    let config = with_login(relay.config(SmtpTlsMode::Tls, relay.smtps_port), "s3cret");
    let sender = EmailSender::new(&config).unwrap();
    let outcome = send(&sender, 1, "carol@example.com").await;
    assert!(is_accepted(&outcome), "{outcome:?}");
    let list = relay.emails_to("carol@example.com").await;
    let [email] = &list.emails[..] else {
        panic!("expected one email, got {list:?}")
    };
    assert!(email.tls);
    assert_eq!(email.auth_user.as_deref(), Some("alice"));
}

#[tokio::test]
async fn required_starttls_never_falls_back_to_plain_text() {
    let options = SmtpOptions {
        starttls: false,
        ..SmtpOptions::default()
    };
    let relay = Relay::spawn("no-starttls", options).await;
    let sender = EmailSender::new(&relay.config(SmtpTlsMode::Starttls, relay.smtp_port)).unwrap();
    let outcome = send(&sender, 1, "dave@example.com").await;
    let SendOutcome::Transient { code, .. } = &outcome else {
        panic!("expected a transient failure, got {outcome:?}")
    };
    assert_eq!(code, "smtp_starttls_unavailable");
    // The relay takes mail from anyone in plain text, so nothing arriving proves that
    // nothing was sent.
    assert!(relay.emails_to("dave@example.com").await.emails.is_empty());
    let plain = EmailSender::new(&relay.config(SmtpTlsMode::None, relay.smtp_port)).unwrap();
    assert!(is_accepted(&send(&plain, 2, "dave@example.com").await));
    assert_eq!(relay.emails_to("dave@example.com").await.emails.len(), 1);
}

#[tokio::test]
async fn wrong_password_is_permanent() {
    let relay = Relay::spawn("bad-password", alice()).await;
    let config = with_login(
        relay.config(SmtpTlsMode::Starttls, relay.smtp_port),
        "wrong",
    );
    let sender = EmailSender::new(&config).unwrap();
    let outcome = send(&sender, 1, "erin@example.com").await;
    let SendOutcome::Permanent { code, .. } = &outcome else {
        panic!("expected a permanent failure, got {outcome:?}")
    };
    assert_eq!(code, "smtp_535");
    // Without credentials the relay says 530 at MAIL: also permanent.
    let anonymous = relay.config(SmtpTlsMode::Starttls, relay.smtp_port);
    let outcome = send(
        &EmailSender::new(&anonymous).unwrap(),
        2,
        "erin@example.com",
    )
    .await;
    assert!(
        matches!(&outcome, SendOutcome::Permanent { code, .. } if code == "smtp_530"),
        "{outcome:?}"
    );
    assert!(relay.emails_to("erin@example.com").await.emails.is_empty());
}

#[tokio::test]
async fn untrusted_certificates_are_refused() {
    let relay = Relay::spawn("untrusted", SmtpOptions::default()).await;
    for (mode, port) in [
        (SmtpTlsMode::Tls, relay.smtps_port),
        (SmtpTlsMode::Starttls, relay.smtp_port),
    ] {
        let config = SmtpConfig {
            ca_path: None,
            ..relay.config(mode, port)
        };
        let outcome = send(&EmailSender::new(&config).unwrap(), 1, "frank@example.com").await;
        assert!(
            matches!(&outcome, SendOutcome::Transient { code, message, .. }
                if code == "smtp_tls" && message.contains("UnknownIssuer")),
            "{mode:?}: {outcome:?}"
        );
    }
    assert!(relay.emails_to("frank@example.com").await.emails.is_empty());
}

impl Relay {
    /// Adds an SMTP fault rule at this relay.
    async fn fault(&self, rcpt: &str, code: u16, message: &str) {
        let url = format!("{}/api/smtp/faults", self.base_url);
        let response = reqwest::Client::new()
            .post(url)
            .json(&serde_json::json!({"rcpt": rcpt, "code": code, "message": message}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    }
}

/// A transient answer from the primary sends the message on to the next relay, and the
/// outcome names the relay that took it; a permanent one is the answer. Three failures in a
/// row rest the primary: messages go straight to the backup until a probe finds it well.
#[tokio::test]
async fn a_failing_primary_hands_mail_to_the_backup_and_a_550_stays_final() {
    let primary = Relay::spawn("primary", SmtpOptions::default()).await;
    let backup = Relay::spawn("backup", SmtpOptions::default()).await;
    let failover = SmtpFailoverConfig {
        relays: vec![SmtpConfig {
            name: "backup".into(),
            ..backup.config(SmtpTlsMode::None, backup.smtp_port)
        }],
        rest_after: 3,
        rest_ms: 60_000,
    };
    let sender = EmailSender::with_failover(
        &primary.config(SmtpTlsMode::None, primary.smtp_port),
        &failover,
    )
    .unwrap();
    primary
        .fault("gone@example.com", 550, "5.1.1 no such user")
        .await;
    let instance = |n: u32| InstanceId::parse(&format!("in_{n:032x}")).unwrap();
    let email = RenderedEmail {
        subject: "Hi".into(),
        text: "Hello".into(),
        html: None,
    };
    let to = |a: &str| EmailAddress::parse(a).unwrap();

    let sent = sender
        .send_via(&instance(1), &to("ok@example.com"), &email)
        .await;
    assert!(is_accepted(&sent.outcome), "{sent:?}");
    assert_eq!(sent.relay.as_deref(), Some("smtp"));
    let refused = sender
        .send_via(&instance(2), &to("gone@example.com"), &email)
        .await;
    assert!(
        matches!(
            &refused.outcome,
            SendOutcome::InvalidAddress { .. } | SendOutcome::Permanent { .. }
        ),
        "{refused:?}"
    );
    assert_eq!(
        refused.relay.as_deref(),
        Some("smtp"),
        "a 550 does not fail over"
    );
    assert_eq!(backup.emails_to("gone@example.com").await.emails.len(), 0);

    primary.fault("@example.org", 421, "4.3.2 try later").await;
    for n in 10..15 {
        let sent = sender
            .send_via(&instance(n), &to(&format!("u{n}@example.org")), &email)
            .await;
        assert!(is_accepted(&sent.outcome), "{sent:?}");
        assert_eq!(sent.relay.as_deref(), Some("backup"), "message {n}");
    }
    assert_eq!(backup.emails_to("@example.org").await.emails.len(), 5);
    assert_eq!(primary.emails_to("@example.org").await.emails.len(), 0);
    // Resting after three failures, the primary is skipped even for mail it would take.
    let sent = sender
        .send_via(&instance(20), &to("ok@example.com"), &email)
        .await;
    assert_eq!(sent.relay.as_deref(), Some("backup"), "{sent:?}");
}
