//! `fanout templates push FILE` writes a template from a JSON file (`PUT
//! /v1/templates/{id}`, a new version each time); `fanout templates get ID` reads the active
//! version. The file is checked as JSON here, with the line and column of a mistake; the API
//! then validates the template and refuses one that does not compile, every problem located.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use crate::client::{Api, Auth, Failure};
use crate::output;

/// `fanout templates ...`.
#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Write a template from a JSON file (see the README's Templates section for its shape);
    /// a template with problems is refused, each printed with its location.
    Push {
        /// The template document.
        file: PathBuf,
        /// The template id [default: the file name without its extension]
        #[arg(long)]
        id: Option<String>,
    },
    /// Print a template's active version (JSON).
    Get {
        /// The template id.
        template_id: String,
    },
}

/// Runs a templates command.
pub async fn run(api: &Api, command: TemplatesCommand, json: bool) -> Result<(), Failure> {
    match command {
        TemplatesCommand::Push { file, id } => {
            let id = match id {
                Some(id) => id,
                None => id_from_file(&file)?,
            };
            let document = read_document(&file)?;
            let written = api
                .send(
                    Auth::Tenant,
                    Method::PUT,
                    &["v1", "templates", &id],
                    Some(&document),
                )
                .await?;
            if json {
                output::print_json(&written);
            } else {
                println!(
                    "template {id}: version {} written and active",
                    output::cell(&written["version"])
                );
            }
        }
        TemplatesCommand::Get { template_id } => {
            let template = api.get(&["v1", "templates", &template_id], &[]).await?;
            output::print_json(&template);
        }
    }
    Ok(())
}

/// The id a file names: its stem (`welcome.json` -> `welcome`).
pub fn id_from_file(file: &Path) -> Result<String, Failure> {
    file.file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            Failure::Usage(format!(
                "cannot take a template id from '{}': pass --id",
                file.display()
            ))
        })
}

/// The file as JSON; a file that cannot be read is a usage error (2), one that is not JSON is
/// refused (1) with `FILE:line:column`.
pub fn read_document(file: &Path) -> Result<Value, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
    parse_document(&text, file)
}

/// Parses a template document, locating a JSON mistake.
pub fn parse_document(text: &str, file: &Path) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| {
        Failure::Invalid(format!(
            "{}:{}:{}: not JSON: {e}",
            file.display(),
            e.line(),
            e.column()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_mistake_is_refused_with_its_location() {
        let e =
            parse_document("{\n  \"name\": \"x\",\n  oops\n}", Path::new("t.json")).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.report().contains("t.json:3:3:"), "{}", e.report());
    }

    #[test]
    fn the_id_is_the_file_stem() {
        assert_eq!(
            id_from_file(Path::new("dir/welcome.json")).unwrap(),
            "welcome"
        );
    }
}
