//! Email failover end to end: the test's worker sends through the shared sandbox's relay and
//! fails over to a second relay, a sandbox of the test's own on other ports.

use std::time::Duration;

use anyhow::Context;
use fanout_activities::{SmtpConfig, SmtpFailoverConfig};
use fanout_sandbox::{EmailList, FaultStage, Listeners, NewFault};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::helpers::{Setup, TestApp, poll, tally};

/// How long a failing relay rests before a probe, in this test.
const REST: Duration = Duration::from_millis(1_000);

/// A second relay: a sandbox of this test's own, stopped when dropped.
struct Backup {
    smtp_port: u16,
    base_url: String,
    _stop: oneshot::Sender<()>,
}

impl Backup {
    async fn spawn() -> anyhow::Result<Self> {
        let listeners = Listeners::bind_loopback().await?;
        let smtp_port = listeners.smtp.local_addr()?.port();
        let base_url = format!("http://{}", listeners.http.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(fanout_sandbox::serve(listeners, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            smtp_port,
            base_url,
            _stop: stop,
        })
    }

    async fn emails_to(&self, to: &str) -> anyhow::Result<usize> {
        let url = format!("{}/api/emails?to={to}&limit=1000", self.base_url);
        let list: EmailList = reqwest::get(url).await?.json().await?;
        Ok(list.emails.len())
    }
}

async fn notify(app: &TestApp, key: &str, users: &[String]) -> anyhow::Result<Vec<Value>> {
    let (status, body) = app
        .notify(&json!({
            "template_id": "note",
            "recipients_query": {"type": "users", "user_ids": users},
            "dedupe_key": key,
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["request_id"]
        .as_str()
        .context("no request id")?
        .to_owned();
    app.wait_for_state(&id, "completed").await?;
    app.all_receipts(&id).await
}

fn providers(receipts: &[Value]) -> std::collections::HashMap<String, usize> {
    tally(receipts, |r| {
        format!(
            "{} via {}",
            r["status"].as_str().unwrap_or("?"),
            r["provider"]
        )
    })
}

/// The primary relay answers 421 to everything: all mail arrives through the backup and the
/// receipts name it. Once the primary recovers and its rest is over, a probe finds it well
/// and mail goes through it again. A 550 from the primary is final: no failover.
#[tokio::test(flavor = "multi_thread")]
async fn mail_fails_over_to_the_backup_relay_and_comes_back_but_a_550_does_not()
-> anyhow::Result<()> {
    const N: usize = 20;
    let backup = Backup::spawn().await?;
    let app = TestApp::spawn_setup(
        "failover",
        Setup {
            smtp_failover: SmtpFailoverConfig {
                relays: vec![SmtpConfig {
                    name: "backup".into(),
                    host: "127.0.0.1".into(),
                    port: backup.smtp_port,
                    ..SmtpConfig::default()
                }],
                rest_after: 3,
                rest_ms: REST.as_millis() as u64,
            },
            ..Setup::default()
        },
    )
    .await?;
    app.put_template(
        "note",
        json!({"name": "Note", "email": {"subject": "Hi {{ user.name }}", "text": "Hello"}}),
    )
    .await?;
    app.lift_ingest_quota().await?;
    let users = app.seed_followers("star", N).await?;
    let domain = format!("@{}.test", app.tenant);

    let outage = app
        .smtp_fault(&NewFault {
            rcpt: domain.clone(),
            code: 421,
            message: "4.3.2 down for maintenance".into(),
            stage: FaultStage::Rcpt,
            times: None,
            delay_ms: 0,
        })
        .await?;
    let during = notify(&app, "during", &users).await?;
    assert_eq!(
        providers(&during),
        [(r#"delivered via "backup""#.to_owned(), N)].into(),
        "every email through the backup"
    );
    assert_eq!(backup.emails_to(&domain).await?, N);
    assert!(
        app.emails_to(&domain).await?.is_empty(),
        "the primary took none"
    );

    app.remove_smtp_fault(outage).await?;
    // The primary rests for REST after its last failure, which came before `during` completed;
    // then the next message probes it. This waits out a configured duration on the same clock
    // the worker uses: a slow machine can lengthen the wait, never shorten it.
    tokio::time::sleep(REST + REST / 2).await;
    let probe = notify(&app, "probe", &users[..1]).await?;
    assert_eq!(
        providers(&probe),
        [(r#"delivered via "smtp""#.to_owned(), 1)].into()
    );
    let after = notify(&app, "after", &users).await?;
    assert_eq!(
        providers(&after),
        [(r#"delivered via "smtp""#.to_owned(), N)].into(),
        "the primary is back in use"
    );
    poll(Duration::from_secs(60), "the primary's mail", || async {
        Ok((app.emails_to(&domain).await?.len() == N + 1).then_some(()))
    })
    .await?;
    assert_eq!(
        backup.emails_to(&domain).await?,
        N,
        "the backup got nothing more"
    );

    let refused = app.email_of(&users[1]);
    app.smtp_fault(&NewFault {
        rcpt: refused.clone(),
        code: 550,
        message: "5.1.1 no such user".into(),
        stage: FaultStage::Rcpt,
        times: None,
        delay_ms: 0,
    })
    .await?;
    let rejected = notify(&app, "rejected", &users[1..2]).await?;
    assert_eq!(
        (&rejected[0]["status"], &rejected[0]["provider"]),
        (&json!("failed"), &json!("smtp")),
        "{rejected:?}"
    );
    assert_eq!(
        backup.emails_to(&refused).await?,
        1,
        "only the one from the outage"
    );
    Ok(())
}
