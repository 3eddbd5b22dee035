//! Fanout's own binaries as processes of their own, for the tests that kill or restart them:
//! workers SIGKILLed mid-fan-out, API replicas restarted; and the path of the `fanout` CLI,
//! which its test runs as a user would. Each process is killed when dropped, so a failing test
//! leaves nothing behind.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use super::TestApp;

/// The directory of this workspace's debug binaries, brought up to date once per test process
/// (cargo does nothing when they are fresh), so a stale binary from an older build never runs.
/// It builds the workspace's binaries as `make test` and `make up` do: building one package
/// alone resolves dependency features differently and recompiles the TLS stack both ways. The
/// directory is the one cargo reports (`cargo metadata`), so a target directory moved by
/// `CARGO_TARGET_DIR`, `CARGO_BUILD_TARGET_DIR` or a config file, relative or not, is found.
fn binaries() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let status = cargo(&root)
                .args(["build", "--workspace", "--bins"])
                .status()
                .map_err(|e| format!("running cargo: {e}"))?;
            if !status.success() {
                return Err("building the workspace's binaries failed".to_owned());
            }
            let metadata = cargo(&root)
                .args(["metadata", "--no-deps", "--format-version", "1"])
                .output()
                .map_err(|e| format!("running cargo metadata: {e}"))?;
            let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout)
                .map_err(|e| format!("reading cargo metadata: {e}"))?;
            let target = metadata["target_directory"]
                .as_str()
                .ok_or("cargo metadata names no target directory")?;
            Ok(PathBuf::from(target).join("debug"))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// Cargo, run in `root` with the environment this test process was started with, less what
/// `cargo test` adds for a test (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ..). Build scripts that
/// read those (ring's reads `CARGO_MANIFEST_DIR`) would otherwise see them change between
/// `make test`'s builds and this one, and the TLS stack and everything above it would be
/// rebuilt twice per run, minutes on a loaded machine while the other tests' clocks run.
fn cargo(root: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(root);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let added_by_cargo_test = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            );
        if added_by_cargo_test {
            command.env_remove(&*name);
        }
    }
    command
}

/// The path of one of the workspace's binaries (`fanout`, the CLI), built as [`binaries`] says.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    Ok(binaries()?.join(name))
}

/// A child process, SIGKILLed when dropped.
pub struct Process(Child);

impl Process {
    /// SIGKILL: no drain, no goodbye.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.0.kill()?;
        self.0.wait()?;
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The settings both binaries read: the test's Temporal, task queue and store.
fn base(app: &TestApp, binary: &str) -> anyhow::Result<Command> {
    let config = &app.worker_config;
    let mut command = Command::new(binaries()?.join(binary));
    command
        .env("FANOUT_TEMPORAL__ADDRESS", &config.temporal.address)
        .env("FANOUT_TEMPORAL__TASK_QUEUE", &config.temporal.task_queue)
        .env("FANOUT_STORE__URL", &config.store.url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Ok(command)
}

/// A `fanout-worker` process on the test's task queue, store and SMTP sandbox, with the test's
/// page size and concurrency; `extra` adds settings (`FANOUT_...` variables).
pub fn start_worker_with(app: &TestApp, extra: &[(&str, String)]) -> anyhow::Result<Process> {
    let config = &app.worker_config;
    let mut command = base(app, "fanout-worker")?;
    command
        .env("FANOUT_SMTP__HOST", &config.smtp.host)
        .env("FANOUT_SMTP__PORT", config.smtp.port.to_string())
        .env(
            "FANOUT_DELIVERY__PAGE_SIZE",
            config.delivery.page_size.to_string(),
        )
        .env(
            "FANOUT_DELIVERY__CONCURRENCY",
            config.delivery.concurrency.to_string(),
        );
    for (key, value) in extra {
        command.env(key, value);
    }
    Ok(Process(command.spawn()?))
}

/// A `fanout-worker` process as [`start_worker_with`] makes it, with nothing extra.
pub fn start_worker(app: &TestApp) -> anyhow::Result<Process> {
    start_worker_with(app, &[])
}

/// A `fanout-api serve` process listening on `addr`, on the test's Temporal and store.
pub fn start_api(app: &TestApp, addr: &str) -> anyhow::Result<Process> {
    start_api_with(app, addr, &[], None)
}

/// As [`start_api`], with settings added (`FANOUT_...`, `OTEL_...`, `RUST_LOG` variables) and
/// its log (stderr) written to `log` when given.
pub fn start_api_with(
    app: &TestApp,
    addr: &str,
    extra: &[(&str, String)],
    log: Option<std::fs::File>,
) -> anyhow::Result<Process> {
    let mut command = base(app, "fanout-api")?;
    command.arg("serve").env("FANOUT_LISTEN_ADDR", addr);
    for (key, value) in extra {
        command.env(key, value);
    }
    if let Some(log) = log {
        command.stderr(log);
    }
    Ok(Process(command.spawn()?))
}
