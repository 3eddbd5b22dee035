//! SMTP in: lettre over a pooled connection, fault injection, a raw conversation, and the
//! secured paths (STARTTLS, implicit TLS, AUTH).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use fanout_sandbox::{Address, FaultList, FaultStage, SmtpCredentials, SmtpOptions};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

use crate::helpers::{TestSandbox, message};

#[tokio::test]
async fn pooled_connection_delivers_every_message() {
    let sandbox = TestSandbox::spawn().await;
    let mailer = sandbox.mailer();

    mailer
        .send(message(
            &["alice@example.com"],
            "Welcome",
            "Hello Alice\nSecond line\n",
        ))
        .await
        .unwrap();
    recycle_pooled_connection().await;
    let dotted = ".starts with a dot\n..two dots\n.\nmiddle . dot\nend";
    mailer
        .send(message(&["bob@example.com"], "Dots", dotted))
        .await
        .unwrap();
    recycle_pooled_connection().await;
    let group = lettre::Message::builder()
        .from("Fanout <noreply@fanout.test>".parse::<Mailbox>().unwrap())
        .to("Carol <carol@example.com>".parse::<Mailbox>().unwrap())
        .to("dave@example.com".parse::<Mailbox>().unwrap())
        .bcc("erin@example.com".parse::<Mailbox>().unwrap())
        .subject("Team update")
        .body("For all of you".to_owned())
        .unwrap();
    mailer.send(group).await.unwrap();

    let list = sandbox.emails("").await;
    assert_eq!(list.next_after_id, None);
    let subjects: Vec<_> = list.emails.iter().map(|e| e.subject.as_deref()).collect();
    assert_eq!(
        subjects,
        [Some("Welcome"), Some("Dots"), Some("Team update")]
    );
    let [welcome, dots, team] = &list.emails[..] else {
        unreachable!()
    };
    assert!(welcome.id < dots.id && dots.id < team.id);

    assert_eq!(welcome.mail_from, "noreply@fanout.test");
    assert_eq!(welcome.rcpt_to, ["alice@example.com"]);
    // lettre normalises line endings to CRLF and ends every body with one more CRLF.
    assert_eq!(
        welcome.text.as_deref(),
        Some("Hello Alice\r\nSecond line\r\n\r\n")
    );
    assert_eq!(welcome.html, None);
    assert_eq!(
        welcome.from,
        Some(Address {
            name: Some("Fanout".to_owned()),
            address: "noreply@fanout.test".to_owned(),
        })
    );
    assert_eq!(welcome.message_id.as_deref(), Some("Welcome@fanout.test"));

    assert_eq!(
        dots.text.as_deref(),
        Some(".starts with a dot\r\n..two dots\r\n.\r\nmiddle . dot\r\nend\r\n")
    );

    assert_eq!(
        team.rcpt_to,
        ["carol@example.com", "dave@example.com", "erin@example.com"]
    );
    let header_to: Vec<_> = team.to.iter().map(|a| a.address.as_str()).collect();
    assert_eq!(header_to, ["carol@example.com", "dave@example.com"]);
    assert_eq!(team.text.as_deref(), Some("For all of you\r\n"));

    // All three went over one pooled connection.
    assert_eq!(welcome.peer, dots.peer);
    assert_eq!(dots.peer, team.peer);

    for (rcpt, expected) in [
        ("alice@example.com", 1),
        ("BOB@example.com", 1),
        ("erin@example.com", 1),
        ("nobody@example.com", 0),
    ] {
        assert_eq!(sandbox.count(rcpt).await, expected, "{rcpt}");
    }
    let for_dave = sandbox.emails("?to=Dave@Example.com").await;
    let ids: Vec<_> = for_dave.emails.iter().map(|e| e.id).collect();
    assert_eq!(ids, [team.id]);
}

#[tokio::test]
async fn rcpt_faults_fail_sends_permanently_or_once() {
    let sandbox = TestSandbox::spawn().await;
    let mailer = sandbox.mailer();
    sandbox
        .add_fault(json!({
            "rcpt": "bounce@example.com",
            "code": 550,
            "message": "5.1.1 mailbox unavailable",
            "stage": "rcpt",
        }))
        .await;
    let flaky = sandbox
        .add_fault(json!({ "rcpt": "flaky@example.com", "code": 451, "times": 1 }))
        .await;
    assert_eq!(flaky.stage, FaultStage::Rcpt);
    assert_eq!(flaky.remaining, Some(1));

    for _ in 0..2 {
        let err = mailer
            .send(message(&["bounce@example.com"], "Bounce", "never stored"))
            .await
            .unwrap_err();
        assert!(err.is_permanent(), "{err}");
        assert_eq!(err.status().map(u16::from), Some(550));
    }

    let err = mailer
        .send(message(&["flaky@example.com"], "Retry", "second try lands"))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.status().map(u16::from), Some(451));
    mailer
        .send(message(&["flaky@example.com"], "Retry", "second try lands"))
        .await
        .unwrap();

    assert_eq!(sandbox.count("bounce@example.com").await, 0);
    assert_eq!(sandbox.count("flaky@example.com").await, 1);
    let faults: FaultList = sandbox.get_json("/api/smtp/faults").await;
    let left: Vec<_> = faults
        .faults
        .iter()
        .map(|f| (f.rcpt.as_str(), f.remaining))
        .collect();
    assert_eq!(left, [("bounce@example.com", None)]);

    let response = sandbox
        .http
        .delete(sandbox.url("/api/smtp/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    mailer
        .send(message(&["bounce@example.com"], "Bounce", "now accepted"))
        .await
        .unwrap();
    assert_eq!(sandbox.count("bounce@example.com").await, 1);
}

#[tokio::test]
async fn data_fault_refuses_the_whole_message() {
    let sandbox = TestSandbox::spawn().await;
    let mailer = sandbox.mailer();
    sandbox
        .add_fault(json!({
            "rcpt": "Full@Example.com",
            "code": 552,
            "message": "5.2.2 mailbox full",
            "stage": "data",
        }))
        .await;
    let err = mailer
        .send(message(
            &["ok@example.com", "full@example.com"],
            "Shared",
            "refused for both",
        ))
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert_eq!(err.status().map(u16::from), Some(552));
    assert_eq!(sandbox.count("ok@example.com").await, 0);
    assert_eq!(sandbox.count("full@example.com").await, 0);

    mailer
        .send(message(&["ok@example.com"], "Alone", "accepted"))
        .await
        .unwrap();
    assert_eq!(sandbox.count("ok@example.com").await, 1);
}

#[tokio::test]
async fn fault_delay_holds_the_reply() {
    let sandbox = TestSandbox::spawn().await;
    let mailer = sandbox.mailer();
    sandbox
        .add_fault(json!({
            "rcpt": "slow@example.com",
            "code": 451,
            "message": "4.4.1 try later",
            "times": 1,
            "delay_ms": 300,
        }))
        .await;
    let started = Instant::now();
    let err = mailer
        .send(message(&["slow@example.com"], "Slow", "body"))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// Lets lettre put the connection of the last send back into its pool.
///
/// lettre recycles a pooled connection from a task it spawns when the send finishes, so a
/// send issued right away on this single-threaded test runtime would open a second
/// connection. One yield runs that task first.
async fn recycle_pooled_connection() {
    tokio::task::yield_now().await;
}

/// A socket the raw client speaks over: plain TCP or TLS around it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A raw SMTP client that reads one (possibly multi-line) reply at a time.
struct RawClient {
    reader: BufReader<Box<dyn Io>>,
}

impl RawClient {
    async fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        Self {
            reader: BufReader::new(Box::new(stream)),
        }
    }

    /// Connects to the implicit-TLS listener, trusting `ca_pem`.
    async fn connect_tls(port: u16, ca_pem: &str) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let tls = tls_connector(ca_pem)
            .connect(ServerName::try_from("localhost").unwrap(), stream)
            .await
            .unwrap();
        Self {
            reader: BufReader::new(Box::new(tls)),
        }
    }

    /// Runs the client side of the TLS handshake after a 220 to STARTTLS.
    async fn start_tls(self, ca_pem: &str) -> Self {
        assert!(self.reader.buffer().is_empty(), "bytes after the 220");
        let stream = self.reader.into_inner();
        let tls = tls_connector(ca_pem)
            .connect(ServerName::try_from("localhost").unwrap(), stream)
            .await
            .unwrap();
        Self {
            reader: BufReader::new(Box::new(tls)),
        }
    }

    async fn write(&mut self, data: &str) {
        let stream = self.reader.get_mut();
        stream.write_all(data.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
    }

    /// Returns the reply code and the text of each line.
    async fn reply(&mut self) -> (u16, Vec<String>) {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line).await.unwrap();
            assert!(read > 0, "connection closed, replies so far: {lines:?}");
            let line = line.trim_end_matches("\r\n");
            let code = line[..3].parse().unwrap();
            lines.push(line[4..].to_owned());
            if line.as_bytes()[3] == b' ' {
                return (code, lines);
            }
        }
    }

    async fn code(&mut self) -> u16 {
        self.reply().await.0
    }

    async fn command(&mut self, line: &str) -> u16 {
        self.write(&format!("{line}\r\n")).await;
        self.code().await
    }

    async fn at_eof(&mut self) -> bool {
        let mut rest = String::new();
        self.reader.read_line(&mut rest).await.unwrap() == 0
    }
}

#[tokio::test]
async fn raw_conversation_follows_rfc_5321() {
    let sandbox = TestSandbox::spawn().await;
    let mut client = RawClient::connect(sandbox.smtp_port).await;
    let (code, greeting) = client.reply().await;
    assert_eq!(
        (code, greeting[0].as_str()),
        (220, "localhost ESMTP fanout-sandbox")
    );

    assert_eq!(client.command("MAIL FROM:<a@example.com>").await, 503);
    client.write("EHLO client.test\r\n").await;
    let (code, lines) = client.reply().await;
    assert_eq!(code, 250);
    assert_eq!(
        lines[1..],
        [
            "PIPELINING",
            "8BITMIME",
            "SMTPUTF8",
            "STARTTLS",
            "SIZE 26214400"
        ]
    );

    assert_eq!(client.command("DATA").await, 503);
    assert_eq!(client.command("RCPT TO:<b@example.com>").await, 503);
    assert_eq!(client.command("BDAT 1 LAST").await, 500);
    assert_eq!(client.command("MAIL FROM:<unclosed").await, 501);
    assert_eq!(client.command("STARTTLS now").await, 501);
    // Without configured credentials there is no AUTH, and MAIL needs none.
    assert_eq!(client.command("AUTH PLAIN AGFAYg==").await, 502);
    assert_eq!(client.command("VRFY someone").await, 252);
    assert_eq!(client.command("noop").await, 250);
    assert_eq!(client.command(&"X".repeat(5000)).await, 500);
    assert_eq!(
        client
            .command("MAIL FROM:<a@example.com> SIZE=99999999")
            .await,
        552
    );
    assert_eq!(
        client
            .command("mail from:<a@example.com> BODY=8BITMIME")
            .await,
        250
    );
    assert_eq!(client.command("MAIL FROM:<a@example.com>").await, 503);
    assert_eq!(client.command("DATA").await, 503);
    assert_eq!(client.command("RSET").await, 250);

    // One write with a whole pipelined transaction up to DATA.
    client
        .write(
            "MAIL FROM:<pipe@example.com>\r\nRCPT TO:<p1@example.com>\r\n\
             rcpt to:<p2@example.com>\r\nDATA\r\n",
        )
        .await;
    for expected in [250, 250, 250, 354] {
        assert_eq!(client.code().await, expected);
    }
    client
        .write("Subject: piped\r\n\r\n..leading dot\r\nlast\r\n.\r\nQUIT\r\n")
        .await;
    let (code, text) = client.reply().await;
    assert_eq!(code, 250);
    assert!(text[0].starts_with("OK queued as "), "{text:?}");
    assert_eq!(client.code().await, 221);
    assert!(client.at_eof().await);

    let list = sandbox.emails("?to=p2@example.com").await;
    let [email] = &list.emails[..] else {
        panic!("expected one email, got {list:?}")
    };
    assert_eq!(text[0], format!("OK queued as {}", email.id));
    assert_eq!(email.rcpt_to, ["p1@example.com", "p2@example.com"]);
    assert_eq!(email.helo.as_deref(), Some("client.test"));
    assert_eq!(email.text.as_deref(), Some(".leading dot\r\nlast\r\n"));
    let raw = sandbox
        .http
        .get(sandbox.url(&format!("/api/emails/{}/raw", email.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()["content-type"], "message/rfc822");
    assert_eq!(
        raw.bytes().await.unwrap(),
        "Subject: piped\r\n\r\n.leading dot\r\nlast\r\n".as_bytes()
    );
}

#[tokio::test]
async fn overlong_data_line_refuses_the_message_only() {
    let sandbox = TestSandbox::spawn().await;
    let mut client = RawClient::connect(sandbox.smtp_port).await;
    client.code().await;
    assert_eq!(client.command("HELO client.test").await, 250);
    assert_eq!(client.command("MAIL FROM:<a@example.com>").await, 250);
    assert_eq!(client.command("RCPT TO:<long@example.com>").await, 250);
    assert_eq!(client.command("DATA").await, 354);
    client
        .write(&format!(
            "Subject: long\r\n\r\n{}\r\n.\r\n",
            "x".repeat(1200)
        ))
        .await;
    assert_eq!(client.code().await, 500);
    // The session is still in step: a new transaction works.
    assert_eq!(client.command("MAIL FROM:<a@example.com>").await, 250);
    assert_eq!(client.command("RCPT TO:<long@example.com>").await, 250);
    assert_eq!(client.command("DATA").await, 354);
    assert_eq!(client.command("Subject: short\r\n\r\nok\r\n.").await, 250);
    assert_eq!(sandbox.count("long@example.com").await, 1);
}

#[tokio::test]
async fn shutdown_says_goodbye_to_open_connections() {
    let sandbox = TestSandbox::spawn().await;
    let mut client = RawClient::connect(sandbox.smtp_port).await;
    client.code().await;
    assert_eq!(client.command("EHLO client.test").await, 250);
    sandbox.stop().await.unwrap();
    assert_eq!(client.code().await, 421);
    assert!(client.at_eof().await);
}

fn tls_connector(ca_pem: &str) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// lettre's TLS settings trusting only the sandbox's CA.
fn tls_parameters(ca_pem: &str) -> TlsParameters {
    TlsParameters::builder("localhost".to_owned())
        .add_root_certificate(Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

fn alice() -> SmtpOptions {
    SmtpOptions {
        credentials: Some(SmtpCredentials::new("alice", "s3cret")),
        ..Default::default()
    }
}

#[tokio::test]
async fn lettre_sends_over_starttls_with_auth() {
    let sandbox = TestSandbox::spawn_with(alice()).await;
    for (mechanism, rcpt) in [
        (Mechanism::Plain, "plain@example.com"),
        (Mechanism::Login, "login@example.com"),
    ] {
        let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
            .port(sandbox.smtp_port)
            .tls(Tls::Required(tls_parameters(&sandbox.ca_pem)))
            .credentials(Credentials::new("alice".to_owned(), "s3cret".to_owned()))
            .authentication(vec![mechanism])
            .timeout(Some(Duration::from_secs(10)))
            .build();
        mailer
            .send(message(&[rcpt], "Secured", "over starttls"))
            .await
            .unwrap();
        let list = sandbox.emails(&format!("?to={rcpt}")).await;
        let [email] = &list.emails[..] else {
            panic!("expected one email, got {list:?}")
        };
        assert!(email.tls, "{mechanism:?}");
        assert_eq!(email.auth_user.as_deref(), Some("alice"));
        assert_eq!(email.text.as_deref(), Some("over starttls\r\n"));
    }
}

#[tokio::test]
async fn implicit_tls_listener_takes_mail() {
    let sandbox = TestSandbox::spawn().await;
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
        .port(sandbox.smtps_port)
        .tls(Tls::Wrapper(tls_parameters(&sandbox.ca_pem)))
        .timeout(Some(Duration::from_secs(10)))
        .build();
    mailer
        .send(message(&["wrapped@example.com"], "Wrapped", "implicit tls"))
        .await
        .unwrap();
    // And plain text still works on the other listener, recorded as such.
    sandbox
        .mailer()
        .send(message(&["plain@example.com"], "Plain", "no tls"))
        .await
        .unwrap();
    let list = sandbox.emails("").await;
    let seen: Vec<_> = list
        .emails
        .iter()
        .map(|e| (e.rcpt_to[0].as_str(), e.tls, e.auth_user.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("wrapped@example.com", true, None),
            ("plain@example.com", false, None)
        ]
    );

    // Over implicit TLS, STARTTLS is neither offered nor accepted.
    let mut client = RawClient::connect_tls(sandbox.smtps_port, &sandbox.ca_pem).await;
    assert_eq!(client.code().await, 220);
    client.write("EHLO client.test\r\n").await;
    let (code, lines) = client.reply().await;
    assert_eq!(code, 250);
    assert!(!lines.iter().any(|l| l == "STARTTLS"), "{lines:?}");
    assert_eq!(client.command("STARTTLS").await, 503);
}

#[tokio::test]
async fn ca_certificate_is_served_over_http() {
    let sandbox = TestSandbox::spawn().await;
    let response = sandbox
        .http
        .get(sandbox.url("/api/smtp/ca.pem"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), sandbox.ca_pem);
    assert!(sandbox.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
}

#[tokio::test]
async fn auth_is_required_and_checked() {
    let sandbox = TestSandbox::spawn_with(alice()).await;
    let mut client = RawClient::connect(sandbox.smtp_port).await;
    assert_eq!(client.code().await, 220);
    assert_eq!(client.command("AUTH PLAIN AGFsaWNlAHMzY3JldA==").await, 503);
    client.write("EHLO client.test\r\n").await;
    let (_, lines) = client.reply().await;
    assert!(lines.iter().any(|l| l == "AUTH PLAIN LOGIN"), "{lines:?}");

    assert_eq!(client.command("MAIL FROM:<a@example.com>").await, 530);
    assert_eq!(client.command("AUTH CRAM-MD5").await, 504);
    assert_eq!(client.command("AUTH PLAIN !!!").await, 501);
    let wrong = BASE64.encode("\0alice\0wrong");
    assert_eq!(client.command(&format!("AUTH PLAIN {wrong}")).await, 535);
    let stranger = BASE64.encode("\0mallory\0s3cret");
    assert_eq!(client.command(&format!("AUTH PLAIN {stranger}")).await, 535);
    // PLAIN without an initial response gets an empty challenge; `*` cancels.
    assert_eq!(client.command("AUTH PLAIN").await, 334);
    assert_eq!(client.command("*").await, 501);
    // LOGIN asks for the user, then the password.
    client.write("AUTH LOGIN\r\n").await;
    assert_eq!(client.reply().await, (334, vec!["VXNlcm5hbWU6".to_owned()]));
    client
        .write(&format!("{}\r\n", BASE64.encode("alice")))
        .await;
    assert_eq!(client.reply().await, (334, vec!["UGFzc3dvcmQ6".to_owned()]));
    assert_eq!(
        client.command(&BASE64.encode("s3cret")).await,
        235,
        "right password"
    );
    assert_eq!(client.command("AUTH LOGIN").await, 503);

    assert_eq!(client.command("MAIL FROM:<a@example.com>").await, 250);
    assert_eq!(client.command("RCPT TO:<authed@example.com>").await, 250);
    assert_eq!(client.command("DATA").await, 354);
    assert_eq!(client.command("Subject: authed\r\n\r\nhi\r\n.").await, 250);
    let list = sandbox.emails("?to=authed@example.com").await;
    let [email] = &list.emails[..] else {
        panic!("expected one email, got {list:?}")
    };
    assert_eq!(email.auth_user.as_deref(), Some("alice"));
    assert!(!email.tls);

    // lettre with a wrong password sees the 535 as a permanent error.
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
        .port(sandbox.smtp_port)
        .credentials(Credentials::new("alice".to_owned(), "nope".to_owned()))
        .timeout(Some(Duration::from_secs(10)))
        .build();
    let err = mailer
        .send(message(&["never@example.com"], "Never", "refused"))
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert_eq!(err.status().map(u16::from), Some(535));
    assert_eq!(sandbox.count("never@example.com").await, 0);
}

#[tokio::test]
async fn starttls_starts_over_and_drops_smuggled_commands() {
    let sandbox = TestSandbox::spawn_with(alice()).await;
    let mut client = RawClient::connect(sandbox.smtp_port).await;
    assert_eq!(client.code().await, 220);
    assert_eq!(client.command("EHLO client.test").await, 250);
    let login = BASE64.encode("\0alice\0s3cret");
    assert_eq!(client.command(&format!("AUTH PLAIN {login}")).await, 235);
    // A command pipelined behind STARTTLS arrives in plain text and must not run inside TLS.
    client
        .write("STARTTLS\r\nMAIL FROM:<smuggled@example.com>\r\n")
        .await;
    assert_eq!(client.code().await, 220);
    let mut client = client.start_tls(&sandbox.ca_pem).await;
    // EHLO and AUTH are forgotten: MAIL is refused for want of EHLO, and the next reply is
    // to this MAIL, not to the smuggled one.
    assert_eq!(client.command("MAIL FROM:<a@example.com>").await, 503);
    client.write("EHLO client.test\r\n").await;
    let (code, lines) = client.reply().await;
    assert_eq!(code, 250);
    assert!(!lines.iter().any(|l| l == "STARTTLS"), "{lines:?}");
    assert_eq!(client.command("MAIL FROM:<a@example.com>").await, 530);
    assert_eq!(client.command(&format!("AUTH PLAIN {login}")).await, 235);
    assert_eq!(client.command("MAIL FROM:<a@example.com>").await, 250);
    assert_eq!(client.command("RCPT TO:<inside@example.com>").await, 250);
    assert_eq!(client.command("DATA").await, 354);
    assert_eq!(client.command("Subject: inside\r\n\r\nhi\r\n.").await, 250);
    let list = sandbox.emails("?to=inside@example.com").await;
    let [email] = &list.emails[..] else {
        panic!("expected one email, got {list:?}")
    };
    assert!(email.tls);
    assert_eq!(email.auth_user.as_deref(), Some("alice"));
}

#[tokio::test]
async fn starttls_can_be_withheld() {
    let sandbox = TestSandbox::spawn_with(SmtpOptions {
        starttls: false,
        ..Default::default()
    })
    .await;
    let mut client = RawClient::connect(sandbox.smtp_port).await;
    assert_eq!(client.code().await, 220);
    client.write("EHLO client.test\r\n").await;
    let (_, lines) = client.reply().await;
    assert!(!lines.iter().any(|l| l == "STARTTLS"), "{lines:?}");
    assert_eq!(client.command("STARTTLS").await, 502);

    // A client that requires STARTTLS gives up before sending anything.
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
        .port(sandbox.smtp_port)
        .tls(Tls::Required(tls_parameters(&sandbox.ca_pem)))
        .timeout(Some(Duration::from_secs(10)))
        .build();
    mailer
        .send(message(
            &["kept@example.com"],
            "Kept",
            "must not go in clear",
        ))
        .await
        .unwrap_err();
    assert_eq!(sandbox.count("kept@example.com").await, 0);
}
