//! Log output: JSON lines for files and collectors, text for a terminal.

use std::io::IsTerminal;

use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written (`FANOUT_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, with the event's fields and its spans' (a request's
    /// `request_id`, a delivery's `tenant_id`, `channel` and `page`).
    Json,
    /// Human-readable lines, coloured on a terminal.
    Text,
}

impl LogFormat {
    /// `FANOUT_LOG_FORMAT` if it is `json` or `text`; otherwise JSON unless stderr (where logs
    /// go) is a terminal, so log files never hold colour codes.
    pub fn from_env() -> Self {
        Self::choose(
            std::env::var("FANOUT_LOG_FORMAT").ok().as_deref(),
            std::io::stderr().is_terminal(),
        )
    }

    fn choose(setting: Option<&str>, terminal: bool) -> Self {
        match setting
            .map(str::trim)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("json") => Self::Json,
            Some("text") => Self::Text,
            _ if terminal => Self::Text,
            _ => Self::Json,
        }
    }
}

/// The layer writing log lines to stderr: the format from [`LogFormat::from_env`], the level
/// from `RUST_LOG` (default `info`).
pub fn layer<S>() -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match LogFormat::from_env() {
        LogFormat::Json => lines
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => lines
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_get_json_and_terminals_text_unless_told() {
        assert_eq!(LogFormat::choose(None, false), LogFormat::Json);
        assert_eq!(LogFormat::choose(None, true), LogFormat::Text);
        assert_eq!(LogFormat::choose(Some("text"), false), LogFormat::Text);
        assert_eq!(LogFormat::choose(Some(" JSON "), true), LogFormat::Json);
        assert_eq!(LogFormat::choose(Some("xml"), false), LogFormat::Json);
    }
}
