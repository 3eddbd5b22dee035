//! Typed configuration shared by the binaries: the settings' types and their defaults.
//!
//! Loading them (defaults, then an optional TOML file, then `FANOUT_` environment variables) is
//! I/O, so it lives in `fanout-runtime` (`fanout_runtime::config::load`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value that must not appear in logs or debug output.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where the Temporal frontend is and which namespace and task queue Fanout uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TemporalConfig {
    /// gRPC address of the frontend, as a URL.
    pub address: String,
    /// Namespace.
    pub namespace: String,
    /// Task queue for workflows and activities.
    pub task_queue: String,
}

impl Default for TemporalConfig {
    fn default() -> Self {
        Self {
            address: "http://127.0.0.1:7233".into(),
            namespace: "default".into(),
            task_queue: "fanout".into(),
        }
    }
}

/// The store's connection settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// `sqlite://path?mode=rwc` (the default, embedded) or, later, `postgres://...`.
    pub url: String,
    /// Connections in the pool (`FANOUT_STORE__MAX_CONNECTIONS`); unset, the process's role
    /// decides: [`StoreConfig::API_POOL`] for the API and tools, [`StoreConfig::WORKER_POOL`]
    /// for a worker.
    pub max_connections: Option<u32>,
}

impl StoreConfig {
    /// The pool of a process that runs short queries: the API, the seeding and admin tools.
    pub const API_POOL: u32 = 8;
    /// A worker's pool: 8 pages in flight, up to three channels each, every one flushing its
    /// receipts while the next batch sends, beside the pages' short reads. With 8, a worker on
    /// PostgreSQL spent seconds waiting for a connection and the mixed 40,000-recipient fan-out
    /// ran at 759 deliveries/s; with 32, at 4,887/s (`BENCH_STORE=postgres make bench`).
    pub const WORKER_POOL: u32 = 32;

    /// The pool size: the one configured, else `role_default`.
    pub fn pool_size(&self, role_default: u32) -> u32 {
        self.max_connections.unwrap_or(role_default).max(1)
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://.fanout/fanout.db?mode=rwc".into(),
            max_connections: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_is_the_configured_size_else_the_role_default() {
        let configured = StoreConfig {
            max_connections: Some(3),
            ..StoreConfig::default()
        };
        assert_eq!(configured.pool_size(StoreConfig::WORKER_POOL), 3);
        assert_eq!(
            StoreConfig::default().pool_size(StoreConfig::WORKER_POOL),
            StoreConfig::WORKER_POOL
        );
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
