//! The services every test (and the benchmark) shares: one Temporal dev server and one provider
//! sandbox (SMTP, APNs, FCM) per process, on a runtime of their own so they outlive each test's runtime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fanout_activities::apns::{ApnsAuthConfig, ApnsConfig};
use fanout_activities::fcm::FcmConfig;
use tokio::sync::oneshot;

/// Addresses of the shared services.
#[derive(Debug)]
pub struct Shared {
    /// `host:port` of the Temporal frontend.
    pub temporal_address: String,
    /// The sandbox's SMTP listener.
    pub smtp_addr: SocketAddr,
    /// The sandbox's HTTP API (and FCM simulator).
    pub sandbox_url: String,
    /// A worker's APNs settings for the sandbox's simulator (token auth).
    pub apns: ApnsConfig,
    /// A worker's FCM settings for the sandbox's simulator.
    pub fcm: FcmConfig,
    /// The `temporal` CLI (tests drive it as an operator would).
    pub temporal_bin: PathBuf,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

/// Starts the shared services on first use.
pub fn shared() -> anyhow::Result<&'static Shared> {
    SHARED
        .get_or_init(|| start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("shared test services failed to start: {e}"))
}

fn start() -> anyhow::Result<Shared> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,fanout=info".to_owned()),
        )
        .with_test_writer()
        .try_init();
    let temporal_bin = temporal_bin()?;
    let temporal_address = match std::env::var("FANOUT_TEST_TEMPORAL_ADDRESS") {
        Ok(addr) => addr,
        Err(_) => start_temporal(&temporal_bin)?,
    };
    let (smtp_addr, sandbox_url, apns_url) = start_sandbox()?;
    let (apns, fcm) = push_configs(&sandbox_url, &apns_url)?;
    Ok(Shared {
        temporal_address,
        smtp_addr,
        sandbox_url,
        apns,
        fcm,
        temporal_bin,
    })
}

/// Writes the sandbox's dev credentials to files, as an operator would, and points the push
/// clients at its simulators.
fn push_configs(sandbox_url: &str, apns_url: &str) -> anyhow::Result<(ApnsConfig, FcmConfig)> {
    let dir = std::env::temp_dir().join(format!("fanout-e2e-push-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let credentials = fanout_sandbox::apns::credentials()?;
    let (ca, key, account) = (
        dir.join("apns-ca.pem"),
        dir.join("apns-key.p8"),
        dir.join("fcm-service-account.json"),
    );
    std::fs::write(&ca, &credentials.ca_pem)?;
    std::fs::write(&key, &credentials.signing_key_pem)?;
    std::fs::write(
        &account,
        fanout_sandbox::fcm::service_account_json(sandbox_url),
    )?;
    let apns = ApnsConfig {
        enabled: true,
        endpoint: apns_url.to_owned(),
        topic: credentials.topic.clone(),
        auth: ApnsAuthConfig {
            key_id: credentials.key_id.clone(),
            team_id: credentials.team_id.clone(),
            key_path: Some(key),
            cert_path: None,
        },
        ca_path: Some(ca),
        ..ApnsConfig::default()
    };
    let fcm = FcmConfig {
        enabled: true,
        base_url: sandbox_url.to_owned(),
        service_account_path: Some(account),
        ..FcmConfig::default()
    };
    Ok((apns, fcm))
}

/// The `temporal` CLI: `FANOUT_TEMPORAL_BIN`, the project venv `make test` installs, or PATH.
fn temporal_bin() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("FANOUT_TEMPORAL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.fanout/venv/bin/temporal");
    if venv.exists() {
        return Ok(venv);
    }
    let on_path = Command::new("temporal").arg("--version").output();
    if on_path.is_ok_and(|o| o.status.success()) {
        return Ok(PathBuf::from("temporal"));
    }
    bail!(
        "no temporal CLI: run `make test` (it installs one into .fanout/venv) or set FANOUT_TEMPORAL_BIN"
    )
}

/// A loopback port free at the time of asking, drawn from below the kernel's ephemeral range.
/// A port the kernel hands out for `bind(0)` is one it may also hand to any outgoing connection
/// (the dev server opens hundreds) before the service we start binds it; ports under the range
/// are only ever taken by an explicit bind.
pub fn free_port() -> anyhow::Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    let (low, high) = (20_000u32, ephemeral_low().max(20_001));
    for _ in 0..1_000 {
        let mut draw = std::collections::hash_map::RandomState::new().build_hasher();
        draw.write_u32(std::process::id());
        let port = (low + (draw.finish() % u64::from(high - low)) as u32) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port in {low}..{high} after 1,000 draws")
}

/// The first port of the kernel's ephemeral range (Linux's default when it cannot be read).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .filter(|low: &u32| (1_024..=65_535).contains(low))
        .unwrap_or(32_768)
}

/// Starts a dev server that dies with this test process: a shell watchdog kills it
/// once our pid is gone, since statics are never dropped.
fn start_temporal(bin: &PathBuf) -> anyhow::Result<String> {
    let port = free_port()?;
    let address = format!("127.0.0.1:{port}");
    let mut server = vec![
        bin.display().to_string(),
        "server".into(),
        "start-dev".into(),
        "--headless".into(),
        "--ip".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
        "--log-level".into(),
        "error".into(),
    ];
    // In memory unless FANOUT_TEMPORAL_DB names a file (the benchmark runs file-backed, as
    // `make up` does).
    if let Ok(db) = std::env::var("FANOUT_TEMPORAL_DB") {
        server.push("--db-filename".into());
        server.push(db);
        // As `make up` runs it (scripts/up.sh says why).
        for pragma in ["journal_mode=wal", "synchronous=normal"] {
            server.push("--sqlite-pragma".into());
            server.push(pragma.into());
        }
    }
    for (name, kind) in fanout_contracts::SEARCH_ATTRIBUTES {
        server.push("--search-attribute".into());
        server.push(format!("{name}={kind}"));
    }
    for (key, value) in fanout_contracts::DEV_SERVER_DYNAMIC_CONFIG {
        server.push("--dynamic-config-value".into());
        server.push(format!("{key}={value}"));
    }
    let quoted: Vec<String> = server.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "{} & child=$!; while kill -0 {} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 1; done; kill $child 2>/dev/null",
        quoted.join(" "),
        std::process::id()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the temporal dev server")?;

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let health = Command::new(bin)
            .args(["operator", "cluster", "health", "--address", &address])
            .output()?;
        if health.status.success() {
            return Ok(address);
        }
        if Instant::now() > deadline {
            bail!(
                "temporal dev server on {address} not healthy after 90s: {}",
                String::from_utf8_lossy(&health.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs the sandbox on a runtime thread that lives as long as the process.
fn start_sandbox() -> anyhow::Result<(SocketAddr, String, String)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sandbox".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("sandbox runtime");
            runtime.block_on(async move {
                let smtp = tokio::net::TcpListener::bind("127.0.0.1:0").await;
                let http = tokio::net::TcpListener::bind("127.0.0.1:0").await;
                let apns = tokio::net::TcpListener::bind("127.0.0.1:0").await;
                let (smtp, http, apns) = match (smtp, http, apns) {
                    (Ok(s), Ok(h), Ok(a)) => (s, h, a),
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let addrs = (smtp.local_addr(), http.local_addr(), apns.local_addr());
                let _ = tx.send(match addrs {
                    (Ok(s), Ok(h), Ok(a)) => Ok((s, format!("http://{h}"), format!("https://{a}"))),
                    _ => Err("listener without address".to_owned()),
                });
                if let Err(e) = fanout_sandbox::serve(
                    fanout_sandbox::Listeners {
                        smtp,
                        smtps: None,
                        http,
                        apns,
                    },
                    std::future::pending(),
                )
                .await
                {
                    eprintln!("sandbox stopped: {e:#}");
                }
            });
        })?;
    rx.recv()?.map_err(|e| anyhow::anyhow!("sandbox: {e}"))
}

/// Runs a worker on its own thread (the SDK's worker future is not `Send`); it stops when the
/// returned sender fires or is dropped.
pub fn spawn_worker(config: fanout_worker::Config) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("worker-{}", config.temporal.task_queue))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("worker runtime");
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = runtime.block_on(fanout_worker::run(config, shutdown)) {
                eprintln!("worker stopped: {e:#}");
            }
        })
        .expect("spawn worker thread");
    stop
}
