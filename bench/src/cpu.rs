//! Where the cores went during a measurement, read from `/proc`: the worker process, the
//! Temporal dev server, this process (the sandbox's simulators and the ceiling clients live
//! here) and the whole machine (which includes whatever else shares it). Cores used over a
//! window say which stage was busy: a process near one core, or a machine near all of them,
//! bounds the run.

use std::time::Instant;

use serde_json::{Value, json};

/// Linux reports process times in USER_HZ ticks, fixed at 100 per second for user space.
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds (user + system, all threads) a process has used so far; 0 if it is gone.
fn process_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(0.0, |stat| stat_seconds(&stat))
}

/// CPU seconds in the text of a `/proc/<pid>/stat`.
fn stat_seconds(stat: &str) -> f64 {
    // The command name may hold spaces: fields are counted after its closing parenthesis,
    // where utime and stime are the 12th and 13th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / TICKS_PER_S
}

/// (busy, total) ticks over every core of the machine, from `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    // idle and iowait are the 4th and 5th.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The Temporal dev server listening on `port`, found by its command line (it runs under a
/// watchdog shell, so it is no child of ours).
pub fn temporal_pid(port: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            is_dev_server(&cmdline, port).then_some(pid)
        })
}

/// Whether a NUL-separated command line starts a dev server on `port`. The watchdog shell's
/// command line holds the same words, but in one argument, so it does not match.
fn is_dev_server(cmdline: &[u8], port: &str) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.contains(&b"start-dev".as_slice())
        && args
            .windows(2)
            .any(|w| w[0] == b"--port" && w[1] == port.as_bytes())
}

/// Processes to watch; `None` for one not running.
#[derive(Debug, Clone, Copy)]
pub struct Watched {
    /// The worker process.
    pub worker: Option<u32>,
    /// The Temporal dev server.
    pub temporal: Option<u32>,
}

/// CPU counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    at: Instant,
    worker: f64,
    temporal: f64,
    own: f64,
    machine: (u64, u64),
}

impl Snapshot {
    /// Reads the counters now.
    pub fn take(watched: Watched) -> Self {
        Self {
            at: Instant::now(),
            worker: watched.worker.map_or(0.0, process_seconds),
            temporal: watched.temporal.map_or(0.0, process_seconds),
            own: process_seconds(std::process::id()),
            machine: machine_ticks(),
        }
    }

    /// Cores each party used on average since `earlier`, as JSON.
    pub fn since(&self, earlier: &Snapshot) -> Value {
        let seconds = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        let cores = |now: f64, then: f64| ((now - then) / seconds * 100.0).round() / 100.0;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let busy = self.machine.0.saturating_sub(earlier.machine.0) as f64;
        let total = self.machine.1.saturating_sub(earlier.machine.1).max(1) as f64;
        json!({
            "worker": cores(self.worker, earlier.worker),
            "temporal": cores(self.temporal, earlier.temporal),
            "bench_and_sandbox": cores(self.own, earlier.own),
            "machine_busy": (busy / total * cpus * 100.0).round() / 100.0,
            "machine_cores": cpus,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_seconds_counts_user_and_system_time_after_a_command_with_spaces() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime ...
        let stat = "42 (tokio (rt) 1) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        assert!((stat_seconds(stat) - 3.0).abs() < 1e-9);
        assert_eq!(stat_seconds("garbage"), 0.0);
    }

    #[test]
    fn the_dev_server_matches_on_its_port_and_its_watchdog_does_not() {
        let server = b"/venv/bin/temporal\0server\0start-dev\0--port\x007233\0";
        assert!(is_dev_server(server, "7233"));
        assert!(!is_dev_server(server, "7234"));
        let watchdog = b"sh\0-c\0'temporal' 'server' 'start-dev' '--port' '7233' & child=$!\0";
        assert!(!is_dev_server(watchdog, "7233"));
    }

    #[test]
    fn this_process_used_cpu_and_the_machine_is_never_busier_than_its_total() {
        // The kernel counts CPU time in ticks (10 ms): spin until this process has used one,
        // rather than for a fixed amount of work that a fast machine finishes inside a tick.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut spin = 0u64;
        while process_seconds(std::process::id()) == 0.0 {
            assert!(
                std::time::Instant::now() < deadline,
                "10 s of spinning never showed in /proc/self/stat"
            );
            spin = (0..200_000u64).fold(spin, |a, b| a.wrapping_add(b.wrapping_mul(b)));
        }
        std::hint::black_box(spin);
        let (busy, total) = machine_ticks();
        assert!(busy <= total && total > 0);
        assert_eq!(
            process_seconds(u32::MAX),
            0.0,
            "a process that is gone used nothing"
        );
    }
}
