//! Typed configuration shared by the binaries, and the loader that layers it.
//!
//! Order: the type's defaults, then an optional TOML file, then `FANOUT_` environment variables
//! with `__` between nested keys (`FANOUT_TEMPORAL__ADDRESS`). The loader takes the environment
//! as an argument so tests inject it.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] config::ConfigError);

/// Loads `T` from its defaults, the optional `file`, and the `FANOUT_*` entries of `env`.
pub fn load<T>(file: Option<&Path>, env: &HashMap<String, String>) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let defaults = config::Config::try_from(&T::default())?;
    let mut builder = config::Config::builder().add_source(defaults);
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).required(true));
    }
    let env_source = config::Environment::with_prefix("FANOUT")
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .source(Some(env.clone().into_iter().collect()));
    Ok(builder.add_source(env_source).build()?.try_deserialize()?)
}

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

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Sample {
        temporal: TemporalConfig,
        store: StoreConfig,
        password: Secret,
    }

    #[test]
    fn environment_overrides_defaults_with_nesting() {
        let env = HashMap::from([
            (
                "FANOUT_TEMPORAL__ADDRESS".to_owned(),
                "http://10.0.0.1:7233".to_owned(),
            ),
            ("FANOUT_STORE__MAX_CONNECTIONS".to_owned(), "3".to_owned()),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ]);
        let cfg: Sample = load(None, &env).unwrap();
        assert_eq!(cfg.temporal.address, "http://10.0.0.1:7233");
        assert_eq!(cfg.temporal.task_queue, "fanout");
        assert_eq!(cfg.store.max_connections, Some(3));
        assert_eq!(cfg.store.pool_size(StoreConfig::WORKER_POOL), 3);
        assert_eq!(
            StoreConfig::default().pool_size(StoreConfig::WORKER_POOL),
            StoreConfig::WORKER_POOL
        );
    }

    #[test]
    fn bad_values_are_reported() {
        let env = HashMap::from([(
            "FANOUT_STORE__MAX_CONNECTIONS".to_owned(),
            "many".to_owned(),
        )]);
        let err = load::<Sample>(None, &env).unwrap_err().to_string();
        assert!(err.contains("max_connections"), "{err}");
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
