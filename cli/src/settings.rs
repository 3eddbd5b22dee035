//! Where the API is and which keys to use: a flag, else its environment variable (clap reads
//! both), else the same key in `.fanout/dev.env`, the file `make up` writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::Args;
use fanout_domain::config::Secret;

/// The API used when nothing names one: where `make up` starts it.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8080";

/// The dev settings file, relative to the directory `make up` ran in.
pub const DEV_ENV: &str = ".fanout/dev.env";

/// The settings as given on the command line or in the environment.
#[derive(Debug, Clone, Default, Args)]
pub struct Flags {
    /// The API's base URL [default: FANOUT_API_URL in .fanout/dev.env, else http://127.0.0.1:8080]
    #[arg(long, env = "FANOUT_API_URL", global = true, help_heading = "Settings")]
    pub api_url: Option<String>,
    /// A tenant API key.
    #[arg(
        long,
        env = "FANOUT_API_KEY",
        global = true,
        hide_env_values = true,
        help_heading = "Settings"
    )]
    pub api_key: Option<String>,
    /// The operator's admin key (for `fanout admin`).
    #[arg(
        long,
        env = "FANOUT_ADMIN_KEY",
        global = true,
        hide_env_values = true,
        help_heading = "Settings"
    )]
    pub admin_key: Option<String>,
}

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The API's base URL.
    pub api_url: String,
    /// The tenant key, when one is set anywhere.
    pub api_key: Option<Secret>,
    /// The admin key, when one is set anywhere.
    pub admin_key: Option<Secret>,
}

impl Settings {
    /// Takes each setting from `flags` (a flag or its variable), else from the contents of a
    /// dev.env file, else the default.
    pub fn resolve(flags: &Flags, dev_env: Option<&str>) -> Self {
        let file = dev_env.map(parse_env_file).unwrap_or_default();
        let pick = |given: &Option<String>, key: &str| {
            given
                .clone()
                .filter(|v| !v.is_empty())
                .or_else(|| file.get(key).cloned().filter(|v| !v.is_empty()))
        };
        Self {
            api_url: pick(&flags.api_url, "FANOUT_API_URL")
                .unwrap_or_else(|| DEFAULT_API_URL.to_owned()),
            api_key: pick(&flags.api_key, "FANOUT_API_KEY").map(Secret::new),
            admin_key: pick(&flags.admin_key, "FANOUT_ADMIN_KEY").map(Secret::new),
        }
    }
}

/// The contents of the nearest `.fanout/dev.env` from the working directory upwards, if any.
pub fn dev_env_from_cwd() -> Option<String> {
    let cwd = std::env::current_dir().ok()?;
    let path = find_dev_env(&cwd)?;
    std::fs::read_to_string(path).ok()
}

/// The nearest `.fanout/dev.env` in `dir` or one of its ancestors.
pub fn find_dev_env(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join(DEV_ENV))
        .find(|candidate| candidate.is_file())
}

/// Reads `KEY=value` lines; blank lines, `#` comments and an `export ` prefix are allowed, and
/// a value may be quoted.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let unquoted = ['"', '\'']
                .iter()
                .find_map(|q| value.strip_prefix(*q)?.strip_suffix(*q))
                .unwrap_or(value);
            Some((key.trim().to_owned(), unquoted.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# written by make up
FANOUT_API_URL=http://127.0.0.1:9999
export FANOUT_API_KEY='fo_file'
FANOUT_ADMIN_KEY=\"fo_admin_file\"
OTHER=x=y
";

    #[test]
    fn a_flag_or_variable_wins_over_the_file_which_wins_over_the_default() {
        let flags = Flags {
            api_key: Some("fo_flag".into()),
            ..Flags::default()
        };
        let s = Settings::resolve(&flags, Some(FILE));
        assert_eq!(s.api_url, "http://127.0.0.1:9999");
        assert_eq!(s.api_key.unwrap().expose(), "fo_flag");
        assert_eq!(s.admin_key.unwrap().expose(), "fo_admin_file");

        let s = Settings::resolve(&Flags::default(), None);
        assert_eq!(s.api_url, DEFAULT_API_URL);
        assert!(s.api_key.is_none());
    }

    #[test]
    fn an_empty_value_counts_as_unset() {
        let flags = Flags {
            api_key: Some(String::new()),
            ..Flags::default()
        };
        let s = Settings::resolve(&flags, Some(FILE));
        assert_eq!(s.api_key.unwrap().expose(), "fo_file");
    }

    #[test]
    fn the_file_parser_keeps_everything_after_the_first_equals_sign() {
        let vars = parse_env_file(FILE);
        assert_eq!(vars["OTHER"], "x=y");
        assert_eq!(vars["FANOUT_API_KEY"], "fo_file");
        assert_eq!(vars.len(), 4);
    }

    #[test]
    fn the_dev_env_is_found_from_a_subdirectory() {
        let root = std::env::temp_dir().join(format!("fanout-cli-{}", std::process::id()));
        let sub = root.join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::create_dir_all(root.join(".fanout")).unwrap();
        std::fs::write(root.join(DEV_ENV), FILE).unwrap();
        assert_eq!(find_dev_env(&sub), Some(root.join(DEV_ENV)));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
