//! The configuration loader every binary uses, and the flag that names its file.
//!
//! Order: the type's defaults, then an optional TOML file, then `FANOUT_` environment variables
//! with `__` between nested keys (`FANOUT_TEMPORAL__ADDRESS`). The loader takes the environment
//! as an argument so tests inject it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] config::ConfigError);

/// The `--config FILE` flag (or `FANOUT_CONFIG_FILE`), the same in every binary: flatten it
/// into the binary's `clap` parser.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigFile {
    /// A TOML configuration file, layered under FANOUT_* environment variables.
    #[arg(long = "config", env = "FANOUT_CONFIG_FILE", value_name = "FILE")]
    pub path: Option<PathBuf>,
}

impl ConfigFile {
    /// Loads `T` from its defaults, this file if one is named, and the process's environment.
    pub fn load<T>(&self) -> Result<T, ConfigError>
    where
        T: DeserializeOwned + Serialize + Default,
    {
        let env: HashMap<String, String> = std::env::vars().collect();
        load(self.path.as_deref(), &env)
    }
}

/// The settings that are lists, given in the environment comma-separated
/// (`FANOUT_WEBHOOKS__ALLOWED_PRIVATE=127.0.0.1:8025,[::1]:8025`); every other value is one
/// string, commas and all.
const LIST_KEYS: [&str; 1] = ["webhooks.allowed_private"];

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
    let mut env_source = config::Environment::with_prefix("FANOUT")
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .list_separator(",");
    for key in LIST_KEYS {
        env_source = env_source.with_list_parse_key(key);
    }
    let env_source = env_source.source(Some(env.clone().into_iter().collect()));
    Ok(builder.add_source(env_source).build()?.try_deserialize()?)
}

#[cfg(test)]
mod tests {
    use fanout_domain::config::{Secret, StoreConfig, TemporalConfig};
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Sample {
        temporal: TemporalConfig,
        store: StoreConfig,
        password: Secret,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    struct Lists {
        webhooks: fanout_domain::webhook::WebhooksConfig,
        store: StoreConfig,
    }

    #[test]
    fn list_settings_split_on_commas_and_others_do_not() {
        let env = HashMap::from([
            (
                "FANOUT_WEBHOOKS__ALLOWED_PRIVATE".to_owned(),
                "127.0.0.1:8025,[::1]:8025".to_owned(),
            ),
            (
                "FANOUT_STORE__URL".to_owned(),
                "postgres://a,b@h/db".to_owned(),
            ),
        ]);
        let loaded: Lists = load(None, &env).unwrap();
        assert_eq!(
            loaded.webhooks.allowed_private,
            ["127.0.0.1:8025", "[::1]:8025"]
        );
        assert_eq!(loaded.store.url, "postgres://a,b@h/db");
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
    }

    #[test]
    fn a_file_is_layered_under_the_environment() {
        let dir = std::env::temp_dir().join(format!("fanout-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("fanout.toml");
        std::fs::write(
            &file,
            "[temporal]\nnamespace = \"from-file\"\ntask_queue = \"file-queue\"\n",
        )
        .unwrap();
        let env = HashMap::from([(
            "FANOUT_TEMPORAL__TASK_QUEUE".to_owned(),
            "env-queue".to_owned(),
        )]);
        let cfg: Sample = load(Some(&file), &env).unwrap();
        assert_eq!(cfg.temporal.namespace, "from-file");
        assert_eq!(cfg.temporal.task_queue, "env-queue");
        std::fs::remove_dir_all(&dir).unwrap();
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
    fn a_named_file_that_is_missing_is_an_error() {
        let missing = ConfigFile {
            path: Some(PathBuf::from("/nonexistent/fanout.toml")),
        };
        assert!(missing.load::<Sample>().is_err());
    }
}
