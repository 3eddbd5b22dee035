//! SMTP in: lettre over a pooled connection, fault injection, and a raw conversation.

use std::time::{Duration, Instant};

use fanout_sandbox::{Address, FaultList, FaultStage};
use lettre::AsyncTransport;
use lettre::message::Mailbox;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

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

/// A raw SMTP client that reads one (possibly multi-line) reply at a time.
struct RawClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl RawClient {
    async fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (reader, writer) = stream.into_split();
        Self {
            reader: BufReader::new(reader),
            writer,
        }
    }

    async fn write(&mut self, data: &str) {
        self.writer.write_all(data.as_bytes()).await.unwrap();
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
        ["PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 26214400"]
    );

    assert_eq!(client.command("DATA").await, 503);
    assert_eq!(client.command("RCPT TO:<b@example.com>").await, 503);
    assert_eq!(client.command("BDAT 1 LAST").await, 500);
    assert_eq!(client.command("MAIL FROM:<unclosed").await, 501);
    assert_eq!(client.command("STARTTLS").await, 502);
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
