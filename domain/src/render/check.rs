//! Checking template content when it is written, and a notify's data against its template when
//! it is accepted: each part must parse, use only the variables [`super::context`] provides and
//! stay within the render budget on sample values ([`validate`]); trial renders find the
//! `data.*` values a template cannot render without ([`required_data`]).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use minijinja::Value;
use serde::Serialize;

use super::{
    RenderFailure, USER_FIELDS, all_parts, describe_plain, environment, part_path, render_bounded,
};
use crate::Channel;
use crate::template::ChannelContent;

/// What is wrong with a template part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The part does not parse.
    Syntax,
    /// The part uses a variable templates do not get.
    UnknownVariable,
    /// A trial render exceeds the render budget ([`RENDER_FUEL`](super::RENDER_FUEL) or [`MAX_RENDERED_BYTES`](super::MAX_RENDERED_BYTES)).
    Limit,
    /// The part reads no variables and its trial render fails, so every render would.
    Render,
}

/// One problem found by [`validate`], located as precisely as MiniJinja allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TemplateProblem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The channel whose content is at fault.
    pub channel: Channel,
    /// The field within the channel's content (`subject`, `body`, `data.url`).
    pub field: String,
    /// The locale variant, or `None` for the default content.
    pub locale: Option<String>,
    /// 1-based line within the field, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) within the line, when known.
    pub column: Option<usize>,
    /// What is wrong and, for unknown variables, what is available.
    pub message: String,
}

impl TemplateProblem {
    /// The part's path in the template as written (`email.subject`, `locales.fr.push.title`).
    pub fn path(&self) -> String {
        part_path(self.locale.as_deref(), self.channel, &self.field)
    }
}

impl fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
            if let Some(column) = self.column {
                write!(f, " column {column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Checks every part of a template (default content and variants): each must parse and use
/// only the variables [`context`] provides. Returns every problem found, in part order.
pub fn validate(
    content: &ChannelContent,
    locales: &BTreeMap<String, ChannelContent>,
) -> Result<(), Vec<TemplateProblem>> {
    let mut env = environment();
    let globals: HashSet<String> = env.globals().map(|(name, _)| name.to_owned()).collect();
    let mut problems = Vec::new();
    for part in all_parts(content, locales) {
        let name = part.key();
        if let Err(e) = env.add_template_owned(name.clone(), part.source.to_owned()) {
            let (line, column) = match e.range() {
                Some(range) => {
                    let (line, column) = line_column(part.source, range.start);
                    (Some(line), Some(column))
                }
                None => (e.line(), None),
            };
            let problem = part.problem(ProblemKind::Syntax, line, column, describe_plain(&e));
            problems.push(problem);
            continue;
        }
        let Ok(template) = env.get_template(&name) else {
            continue;
        };
        let mut unknown: Vec<String> = template
            .undeclared_variables(true)
            .into_iter()
            .filter(|var| !is_known(var, &globals))
            .collect();
        unknown.sort();
        let known = unknown.is_empty();
        for var in unknown {
            let position = locate(part.source, &var);
            problems.push(part.problem(
                ProblemKind::UnknownVariable,
                position.map(|p| p.0),
                position.map(|p| p.1),
                unknown_message(&var),
            ));
        }
        if known {
            // A trial render: over budget with sample values is over budget for real data
            // too. A part that reads no variables fails the same way on every render.
            let vars = variables(&template, &globals);
            let constant = vars.is_empty();
            match render_bounded(&template, &sample_context(&vars, None), part.path()) {
                Err(e) if e.failure == RenderFailure::Limit => {
                    problems.push(part.problem(ProblemKind::Limit, None, None, e.message));
                }
                Err(e) if constant => {
                    let message = format!("fails on every render: {}", e.message);
                    problems.push(part.problem(ProblemKind::Render, None, None, message));
                }
                _ => {}
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Whether a (dotted) variable MiniJinja found undeclared is one templates get.
fn is_known(var: &str, globals: &HashSet<String>) -> bool {
    let mut segments = var.split('.');
    let root = segments.next().unwrap_or_default();
    match root {
        // `digest` is empty outside a digest's request, so a template may always name it.
        "data" | "request_id" | "digest" => true,
        "user" => segments
            .next()
            .is_none_or(|field| USER_FIELDS.contains(&field)),
        other => globals.contains(other),
    }
}

fn unknown_message(var: &str) -> String {
    if var.starts_with("user.") {
        format!(
            "unknown variable '{var}': user has {}",
            USER_FIELDS.map(|f| format!("user.{f}")).join(", ")
        )
    } else {
        format!(
            "unknown variable '{var}': templates get data.* (the request's data), user.* and \
             request_id; write '{{{{ data.{var} }}}}' for a data key"
        )
    }
}

/// Finds where `var` (dotted) is first used inside a `{{ }}` or `{% %}` tag: the full dotted
/// name if written that way, else its root. Returns 1-based (line, column).
fn locate(source: &str, var: &str) -> Option<(usize, usize)> {
    let root = var.split('.').next().unwrap_or(var);
    find_in_tags(source, var)
        .or_else(|| find_in_tags(source, root))
        .map(|offset| line_column(source, offset))
}

fn find_in_tags(source: &str, needle: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(open) = find_open(&source[from..]).map(|i| i + from) {
        let close_marker = if source[open..].starts_with("{{") {
            "}}"
        } else {
            "%}"
        };
        let body_start = open + 2;
        let body_end = source[body_start..]
            .find(close_marker)
            .map_or(source.len(), |i| i + body_start);
        let body = &source[body_start..body_end];
        for (i, _) in body.match_indices(needle) {
            let before = body[..i].chars().next_back();
            let after = body[i + needle.len()..].chars().next();
            // An identifier boundary on both sides, and not an attribute of something else.
            if !before.is_some_and(|c| is_ident(c) || c == '.') && !after.is_some_and(is_ident) {
                return Some(body_start + i);
            }
        }
        from = body_end;
    }
    None
}

fn find_open(s: &str) -> Option<usize> {
    match (s.find("{{"), s.find("{%")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// 1-based line and character column of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The (dotted) variables a part reads from its context: what it does not declare itself,
/// less the environment's globals (`range`, `namespace`).
fn variables(template: &minijinja::Template<'_, '_>, globals: &HashSet<String>) -> HashSet<String> {
    template
        .undeclared_variables(true)
        .into_iter()
        .filter(|v| !globals.contains(v.split('.').next().unwrap_or_default()))
        .collect()
}

/// A stand-in value for every variable a trial render reads.
const SAMPLE: &str = "sample";

/// A context giving every dotted variable in `vars` a sample string (`data.a.b` becomes
/// `{"data": {"a": {"b": "sample"}}}`), leaving out `without` and everything under it.
fn sample_context(vars: &HashSet<String>, without: Option<&str>) -> Value {
    let mut root = serde_json::Map::new();
    for var in vars {
        if without.is_some_and(|w| var == w || var.starts_with(&format!("{w}."))) {
            continue;
        }
        let mut node = &mut root;
        let mut segments = var.split('.').peekable();
        while let Some(segment) = segments.next() {
            if segments.peek().is_none() {
                node.entry(segment.to_owned())
                    .or_insert_with(|| serde_json::Value::String(SAMPLE.into()));
                break;
            }
            let child = node
                .entry(segment.to_owned())
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if !child.is_object() {
                *child = serde_json::Value::Object(serde_json::Map::new());
            }
            let serde_json::Value::Object(next) = child else {
                break;
            };
            node = next;
        }
    }
    Value::from_serialize(&root)
}

/// The `data.*` values (dotted paths) the `channels` content of a template cannot render
/// without, in any locale: those it reads with no `default` filter, no `is defined` test and
/// no branch around them. Found by trial renders: with every variable given a sample value the
/// part renders, and without this one it fails on an undefined value. A part whose trial
/// render fails even with every sample (it does arithmetic on a value, say) adds nothing, so
/// the check only ever refuses what would certainly fail.
pub fn required_data(
    content: &ChannelContent,
    locales: &BTreeMap<String, ChannelContent>,
    channels: &[Channel],
) -> Vec<String> {
    let mut env = environment();
    let globals: HashSet<String> = env.globals().map(|(name, _)| name.to_owned()).collect();
    let mut required = std::collections::BTreeSet::new();
    for part in all_parts(content, locales) {
        if !channels.contains(&part.channel) {
            continue;
        }
        let name = part.key();
        if env
            .add_template_owned(name.clone(), part.source.to_owned())
            .is_err()
        {
            continue;
        }
        let Ok(template) = env.get_template(&name) else {
            continue;
        };
        let vars = variables(&template, &globals);
        if render_bounded(&template, &sample_context(&vars, None), part.path()).is_err() {
            continue;
        }
        for var in vars.iter().filter(|v| v.starts_with("data.")) {
            let without = sample_context(&vars, Some(var));
            if let Err(e) = render_bounded(&template, &without, part.path())
                && e.failure == RenderFailure::Template
            {
                required.insert(var.clone());
            }
        }
    }
    required.into_iter().collect()
}

/// The dotted `data.*` paths of `required` that `data` lacks (a `null` counts as present).
pub fn missing_data(
    required: &[String],
    data: &serde_json::Map<String, serde_json::Value>,
) -> Vec<String> {
    required
        .iter()
        .filter(|path| {
            let mut segments = path.split('.').skip(1);
            let Some(first) = segments.next() else {
                return false;
            };
            let mut node = data.get(first);
            for segment in segments {
                node = node.and_then(|n| n.get(segment));
            }
            node.is_none()
        })
        .cloned()
        .collect()
}
