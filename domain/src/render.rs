//! Compiling, checking and rendering template content with MiniJinja. Pure computation: the
//! API uses it to reject broken templates when they are written, the activities to render per
//! recipient.
//!
//! Templates see three variables (see [`context`]):
//! - `data`: the request's data object, anything in it (`{{ data.actor }}`);
//! - `user`: the recipient, with `user_id`, `name`, `email`, `locale` and `timezone`;
//! - `request_id`.
//!
//! [`validate`] rejects anything else at write time, and undefined values are errors rather
//! than blanks when rendering, so a typo fails loudly instead of sending "Hello ,".
//!
//! A [`Compiled`] holds every channel and locale variant of one template version, compiled
//! once; each render picks the variant for the recipient's locale (see
//! [`crate::template::resolve_locale`]).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::Serialize;

use crate::template::{
    ChannelContent, EmailContent, InAppContent, PushContent, Template, resolve_locale,
};
use crate::user::User;
use crate::{Channel, RequestId};

/// The fields of `user` templates may use; [`context`] provides exactly these.
pub const USER_FIELDS: [&str; 5] = ["user_id", "name", "email", "locale", "timezone"];

/// A rendering failure, naming the template part and the position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{part}: {message}")]
pub struct RenderError {
    /// Which part failed, as a path in the template (`email.subject`,
    /// `locales.fr.in_app.body`, `push.data.url`).
    pub part: String,
    /// MiniJinja's description, with line information.
    pub message: String,
}

/// Rendered email content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body, auto-escaped.
    pub html: Option<String>,
}

/// Rendered inbox content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedInApp {
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Where the client goes when the message is opened.
    pub action_url: Option<String>,
}

/// Rendered push content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPush {
    /// Alert title.
    pub title: String,
    /// Alert body.
    pub body: String,
    /// Custom key/values for the app.
    pub data: BTreeMap<String, String>,
}

/// What one recipient's rendering sees: the variables and the locale that picks the variant.
#[derive(Debug, Clone)]
pub struct RenderContext {
    vars: Value,
    locale: Option<String>,
}

impl RenderContext {
    /// A context from raw variables and a locale.
    pub fn new(vars: Value, locale: Option<String>) -> Self {
        Self { vars, locale }
    }

    /// The locale the variant is resolved for.
    pub fn locale(&self) -> Option<&str> {
        self.locale.as_deref()
    }

    /// The variables.
    pub fn vars(&self) -> &Value {
        &self.vars
    }
}

/// Builds what one recipient's rendering sees (see the module docs).
pub fn context(
    data: &serde_json::Map<String, serde_json::Value>,
    user: &User,
    request_id: &RequestId,
) -> RenderContext {
    // Versions written before `data.` existed read data keys at top level; they stay there,
    // under the reserved names, so those versions keep rendering. Validation accepts only
    // `data.*` for new writes.
    let mut vars = data.clone();
    vars.insert("data".into(), serde_json::Value::Object(data.clone()));
    vars.insert(
        "user".into(),
        serde_json::json!({
            "user_id": user.user_id.as_str(),
            // The pre-versions name of `user_id`, kept for the same reason.
            "id": user.user_id.as_str(),
            "name": user.name,
            "email": user.email.as_ref().map(|e| e.as_str()),
            "locale": user.locale,
            "timezone": user.timezone.as_ref().map(|t| t.as_str()),
        }),
    );
    vars.insert("request_id".into(), request_id.as_str().into());
    RenderContext::new(Value::from_serialize(&vars), user.locale.clone())
}

/// What is wrong with a template part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The part does not parse.
    Syntax,
    /// The part uses a variable templates do not get.
    UnknownVariable,
}

/// One problem found by [`validate`], located as precisely as MiniJinja allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

fn part_path(locale: Option<&str>, channel: Channel, field: &str) -> String {
    match locale {
        Some(tag) => format!("locales.{tag}.{channel}.{field}"),
        None => format!("{channel}.{field}"),
    }
}

/// One template source: where it sits, and its text.
struct Part<'a> {
    locale: Option<&'a str>,
    channel: Channel,
    field: String,
    source: &'a str,
}

impl Part<'_> {
    /// The name the part has in the environment. `|` cannot occur in a locale tag or a
    /// channel, so the name splits back into its pieces whatever the field is.
    fn key(&self) -> String {
        key(self.locale, self.channel, &self.field)
    }

    fn path(&self) -> String {
        part_path(self.locale, self.channel, &self.field)
    }

    fn problem(
        &self,
        kind: ProblemKind,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    ) -> TemplateProblem {
        TemplateProblem {
            kind,
            channel: self.channel,
            field: self.field.clone(),
            locale: self.locale.map(str::to_owned),
            line,
            column,
            message,
        }
    }
}

fn key(locale: Option<&str>, channel: Channel, field: &str) -> String {
    format!("{}|{channel}|{field}", locale.unwrap_or_default())
}

/// Lists the parts of one locale's content.
fn parts_of<'a>(locale: Option<&'a str>, content: &'a ChannelContent, out: &mut Vec<Part<'a>>) {
    let mut push = |channel, field: String, source: &'a str| {
        out.push(Part {
            locale,
            channel,
            field,
            source,
        });
    };
    if let Some(email) = &content.email {
        push(Channel::Email, "subject".into(), &email.subject);
        push(Channel::Email, "text".into(), &email.text);
        if let Some(html) = &email.html {
            push(Channel::Email, "html".into(), html);
        }
    }
    if let Some(in_app) = &content.in_app {
        push(Channel::InApp, "title".into(), &in_app.title);
        push(Channel::InApp, "body".into(), &in_app.body);
        if let Some(url) = &in_app.action_url {
            push(Channel::InApp, "action_url".into(), url);
        }
    }
    if let Some(p) = &content.push {
        push(Channel::Push, "title".into(), &p.title);
        push(Channel::Push, "body".into(), &p.body);
        for (name, value) in &p.data {
            push(Channel::Push, format!("data.{name}"), value);
        }
    }
}

fn all_parts<'a>(
    content: &'a ChannelContent,
    locales: &'a BTreeMap<String, ChannelContent>,
) -> Vec<Part<'a>> {
    let mut parts = Vec::new();
    parts_of(None, content, &mut parts);
    for (tag, variant) in locales {
        parts_of(Some(tag), variant, &mut parts);
    }
    parts
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Only the email's HTML alternative is HTML; a push data key that happens to end in
    // `.html` must not be escaped.
    env.set_auto_escape_callback(|name| {
        let mut pieces = name.splitn(3, '|').skip(1);
        if pieces.next() == Some("email") && pieces.next() == Some("html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env
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
        for var in unknown {
            let position = locate(part.source, &var);
            problems.push(part.problem(
                ProblemKind::UnknownVariable,
                position.map(|p| p.0),
                position.map(|p| p.1),
                unknown_message(&var),
            ));
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
        "data" | "request_id" => true,
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

/// Every channel and locale variant of one template version, compiled once; cheap to share.
pub struct Compiled {
    env: Environment<'static>,
    content: ChannelContent,
    locales: BTreeMap<String, ChannelContent>,
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiled")
            .field("content", &self.content)
            .field("locales", &self.locales.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Compiled {
    /// Compiles every part of default content and variants.
    pub fn new(
        content: &ChannelContent,
        locales: &BTreeMap<String, ChannelContent>,
    ) -> Result<Self, RenderError> {
        let mut env = environment();
        for part in all_parts(content, locales) {
            env.add_template_owned(part.key(), part.source.to_owned())
                .map_err(|e| RenderError {
                    part: part.path(),
                    message: describe(&e),
                })?;
        }
        Ok(Self {
            env,
            content: content.clone(),
            locales: locales.clone(),
        })
    }

    /// Compiles a stored template version.
    pub fn template(template: &Template) -> Result<Self, RenderError> {
        Self::new(&template.content, &template.locales)
    }

    /// Compiles email content alone.
    pub fn email(content: &EmailContent) -> Result<Self, RenderError> {
        Self::new(
            &ChannelContent {
                email: Some(content.clone()),
                ..ChannelContent::default()
            },
            &BTreeMap::new(),
        )
    }

    /// Compiles inbox content alone.
    pub fn in_app(content: &InAppContent) -> Result<Self, RenderError> {
        Self::new(
            &ChannelContent {
                in_app: Some(content.clone()),
                ..ChannelContent::default()
            },
            &BTreeMap::new(),
        )
    }

    /// Compiles push content alone.
    pub fn push(content: &PushContent) -> Result<Self, RenderError> {
        Self::new(
            &ChannelContent {
                push: Some(content.clone()),
                ..ChannelContent::default()
            },
            &BTreeMap::new(),
        )
    }

    /// Whether there is content for `channel`.
    pub fn supports(&self, channel: Channel) -> bool {
        self.content.has(channel)
    }

    /// The variant serving `channel` for `locale` (`None`: the default content).
    pub fn resolve(&self, channel: Channel, locale: Option<&str>) -> Option<&str> {
        resolve_locale(&self.locales, channel, locale)
    }

    /// The content of `channel` for `ctx`'s locale, and the variant it came from.
    fn pick(&self, channel: Channel, ctx: &RenderContext) -> (Option<&str>, &ChannelContent) {
        match self.resolve(channel, ctx.locale()) {
            Some(tag) => (Some(tag), &self.locales[tag]),
            None => (None, &self.content),
        }
    }

    fn render(
        &self,
        locale: Option<&str>,
        channel: Channel,
        field: &str,
        ctx: &RenderContext,
    ) -> Result<String, RenderError> {
        let failed = |e: minijinja::Error| RenderError {
            part: part_path(locale, channel, field),
            message: describe(&e),
        };
        self.env
            .get_template(&key(locale, channel, field))
            .map_err(failed)?
            .render(ctx.vars())
            .map_err(failed)
    }

    fn missing(channel: Channel) -> RenderError {
        RenderError {
            part: channel.to_string(),
            message: format!("the template has no {channel} content"),
        }
    }

    /// Renders email content for a recipient, in their locale's variant.
    pub fn render_email(&self, ctx: &RenderContext) -> Result<RenderedEmail, RenderError> {
        let (locale, content) = self.pick(Channel::Email, ctx);
        let email = content
            .email
            .as_ref()
            .ok_or_else(|| Self::missing(Channel::Email))?;
        let part = |field| self.render(locale, Channel::Email, field, ctx);
        Ok(RenderedEmail {
            subject: part("subject")?.trim().to_owned(),
            text: part("text")?,
            html: email.html.as_ref().map(|_| part("html")).transpose()?,
        })
    }

    /// Renders inbox content for a recipient, in their locale's variant.
    pub fn render_in_app(&self, ctx: &RenderContext) -> Result<RenderedInApp, RenderError> {
        let (locale, content) = self.pick(Channel::InApp, ctx);
        let in_app = content
            .in_app
            .as_ref()
            .ok_or_else(|| Self::missing(Channel::InApp))?;
        let part = |field| self.render(locale, Channel::InApp, field, ctx);
        Ok(RenderedInApp {
            title: part("title")?,
            body: part("body")?,
            action_url: in_app
                .action_url
                .as_ref()
                .map(|_| part("action_url").map(|u| u.trim().to_owned()))
                .transpose()?,
        })
    }

    /// Renders push content for a recipient, in their locale's variant.
    pub fn render_push(&self, ctx: &RenderContext) -> Result<RenderedPush, RenderError> {
        let (locale, content) = self.pick(Channel::Push, ctx);
        let push = content
            .push
            .as_ref()
            .ok_or_else(|| Self::missing(Channel::Push))?;
        let part = |field: &str| self.render(locale, Channel::Push, field, ctx);
        let data = push
            .data
            .keys()
            .map(|name| Ok((name.clone(), part(&format!("data.{name}"))?)))
            .collect::<Result<_, RenderError>>()?;
        Ok(RenderedPush {
            title: part("title")?,
            body: part("body")?,
            data,
        })
    }
}

/// MiniJinja's error with its line, when it knows it.
fn describe(e: &minijinja::Error) -> String {
    let mut msg = describe_plain(e);
    if let Some(line) = e.line() {
        msg = format!("{msg} (line {line})");
    }
    msg
}

fn describe_plain(e: &minijinja::Error) -> String {
    e.detail()
        .map_or_else(|| e.kind().to_string(), str::to_owned)
}

/// Checks that email content compiles.
pub fn check_email(content: &EmailContent) -> Result<(), RenderError> {
    Compiled::email(content).map(|_| ())
}

/// Checks that inbox content compiles.
pub fn check_in_app(content: &InAppContent) -> Result<(), RenderError> {
    Compiled::in_app(content).map(|_| ())
}

#[cfg(test)]
mod tests {
    use crate::user::{EmailAddress, Timezone};
    use crate::{DedupeKey, TenantId, UserId};

    use super::*;

    fn user(locale: Option<&str>) -> User {
        User {
            user_id: UserId::parse("u1").unwrap(),
            email: Some(EmailAddress::parse("ada@example.com").unwrap()),
            name: Some("Ada".into()),
            locale: locale.map(str::to_owned),
            timezone: Some(Timezone::parse("Europe/Paris").unwrap()),
            devices: Vec::new(),
        }
    }

    fn ctx_for(locale: Option<&str>, data: serde_json::Value) -> RenderContext {
        let req = DedupeKey::new(TenantId::parse("t").unwrap(), "k")
            .unwrap()
            .request_id();
        context(data.as_object().unwrap(), &user(locale), &req)
    }

    fn ctx(data: serde_json::Value) -> RenderContext {
        ctx_for(Some("en"), data)
    }

    fn in_app(title: &str, body: &str) -> InAppContent {
        InAppContent {
            title: title.into(),
            body: body.into(),
            action_url: None,
        }
    }

    fn only_in_app(title: &str, body: &str) -> ChannelContent {
        ChannelContent {
            in_app: Some(in_app(title, body)),
            ..ChannelContent::default()
        }
    }

    #[test]
    fn renders_data_and_user_and_escapes_html_only() {
        let compiled = Compiled::email(&EmailContent {
            subject: "{{ data.actor }} commented".into(),
            text: "Hi {{ user.name }}: {{ data.comment }}".into(),
            html: Some("<p>{{ data.comment }}</p>".into()),
        })
        .unwrap();
        let out = compiled
            .render_email(&ctx(
                serde_json::json!({"actor": "Bob", "comment": "<b>yo</b>"}),
            ))
            .unwrap();
        assert_eq!(out.subject, "Bob commented");
        assert_eq!(out.text, "Hi Ada: <b>yo</b>");
        assert_eq!(
            out.html.as_deref(),
            Some("<p>&lt;b&gt;yo&lt;&#x2f;b&gt;</p>")
        );
    }

    #[test]
    fn the_context_offers_what_validation_accepts() {
        let fields = USER_FIELDS
            .map(|f| format!("{f}={{{{ user.{f} }}}}"))
            .join(" ");
        let content = only_in_app("{{ request_id }}", &format!("{fields} {{{{ data.x }}}}"));
        validate(&content, &BTreeMap::new()).unwrap();
        let out = Compiled::new(&content, &BTreeMap::new())
            .unwrap()
            .render_in_app(&ctx(serde_json::json!({"x": 1})))
            .unwrap();
        assert_eq!(
            out.body,
            "user_id=u1 name=Ada email=ada@example.com locale=en timezone=Europe/Paris 1"
        );
        assert!(!out.title.is_empty());
    }

    #[test]
    fn versions_from_before_data_namespacing_still_render() {
        let compiled = Compiled::in_app(&in_app("{{ actor }}", "{{ user.id }}")).unwrap();
        let out = compiled
            .render_in_app(&ctx(serde_json::json!({"actor": "Bob"})))
            .unwrap();
        assert_eq!((out.title.as_str(), out.body.as_str()), ("Bob", "u1"));
    }

    #[test]
    fn undefined_variables_fail_with_the_part_named() {
        let compiled = Compiled::in_app(&in_app("t", "{{ data.missing }}")).unwrap();
        let err = compiled
            .render_in_app(&ctx(serde_json::json!({})))
            .unwrap_err();
        assert_eq!(err.part, "in_app.body");
    }

    #[test]
    fn syntax_errors_name_part_and_line() {
        let err = check_in_app(&in_app("ok", "line one\n{{ broken")).unwrap_err();
        assert_eq!(err.part, "in_app.body");
        assert!(err.message.contains("line 2"), "{}", err.message);
    }

    #[test]
    fn validation_locates_syntax_errors_by_channel_field_locale_line_and_column() {
        let mut locales = BTreeMap::new();
        locales.insert(
            "fr".to_owned(),
            only_in_app("Salut", "ligne un\n  {{ data.x }} {% if %}"),
        );
        let problems = validate(&only_in_app("Hi", "{{ data.x }}"), &locales).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert_eq!(p.kind, ProblemKind::Syntax);
        assert_eq!(p.channel, Channel::InApp);
        assert_eq!(p.field, "body");
        assert_eq!(p.locale.as_deref(), Some("fr"));
        assert_eq!(p.path(), "locales.fr.in_app.body");
        assert_eq!(p.line, Some(2));
        let column = p.column.expect("a syntax error has a column");
        assert!((15..=22).contains(&column), "{p}");
    }

    #[test]
    fn validation_rejects_unknown_variables_with_their_position() {
        let content = ChannelContent {
            email: Some(EmailContent {
                subject: "Hi {{ user.name }}".into(),
                text: "Hello\n  {{ actor }} and {{ user.nmae }}".into(),
                html: None,
            }),
            ..ChannelContent::default()
        };
        let problems = validate(&content, &BTreeMap::new()).unwrap_err();
        let found: Vec<_> = problems
            .iter()
            .map(|p| {
                (
                    p.kind,
                    p.path(),
                    p.line,
                    p.column,
                    p.message.split(':').next().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    ProblemKind::UnknownVariable,
                    "email.text".to_owned(),
                    Some(2),
                    Some(6),
                    "unknown variable 'actor'".to_owned()
                ),
                (
                    ProblemKind::UnknownVariable,
                    "email.text".to_owned(),
                    Some(2),
                    Some(22),
                    "unknown variable 'user.nmae'".to_owned()
                ),
            ]
        );
        assert!(
            problems[0].message.contains("data.actor"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn validation_accepts_loops_sets_and_builtins() {
        let content = only_in_app(
            "{% set n = data.items | length %}{{ n }}",
            "{% for i in range(3) %}{{ loop.index }}{{ i }}{% endfor %}\
             {% for item in data.items %}{{ item.name | upper }}{% endfor %}",
        );
        validate(&content, &BTreeMap::new()).unwrap();
    }

    #[test]
    fn locale_variants_render_per_channel_with_fallback() {
        let mut content = only_in_app("Hello {{ user.name }}", "en body");
        content.push = Some(PushContent {
            title: "Hi".into(),
            body: "en push".into(),
            data: BTreeMap::new(),
        });
        let mut locales = BTreeMap::new();
        locales.insert(
            "fr".to_owned(),
            only_in_app("Bonjour {{ user.name }}", "fr"),
        );
        locales.insert(
            "fr-CA".to_owned(),
            only_in_app("Allô {{ user.name }}", "ca"),
        );
        let compiled = Compiled::new(&content, &locales).unwrap();
        let title = |locale| {
            compiled
                .render_in_app(&ctx_for(locale, serde_json::json!({})))
                .unwrap()
                .title
        };
        assert_eq!(title(Some("fr-CA")), "Allô Ada");
        assert_eq!(title(Some("fr-FR")), "Bonjour Ada");
        assert_eq!(title(Some("de")), "Hello Ada");
        assert_eq!(title(None), "Hello Ada");
        // No French push: the default content serves it.
        let push = compiled
            .render_push(&ctx_for(Some("fr-CA"), serde_json::json!({})))
            .unwrap();
        assert_eq!(push.body, "en push");
    }

    #[test]
    fn push_renders_title_body_and_each_data_value() {
        let compiled = Compiled::push(&PushContent {
            title: "{{ data.actor }} posted".into(),
            body: "Look, {{ user.name }}".into(),
            data: [
                (
                    "url".to_owned(),
                    "app://posts/{{ data.post_id }}".to_owned(),
                ),
                ("kind.html".to_owned(), "<{{ data.actor }}>".to_owned()),
            ]
            .into(),
        })
        .unwrap();
        let out = compiled
            .render_push(&ctx(serde_json::json!({"actor": "Bob", "post_id": 7})))
            .unwrap();
        assert_eq!(out.title, "Bob posted");
        assert_eq!(out.body, "Look, Ada");
        assert_eq!(out.data["url"], "app://posts/7");
        assert_eq!(out.data["kind.html"], "<Bob>", "push data is never escaped");
        assert!(compiled.render_email(&ctx(serde_json::json!({}))).is_err());
    }

    #[test]
    fn action_urls_render_and_are_validated() {
        let mut content = only_in_app("t", "b");
        content.in_app.as_mut().unwrap().action_url = Some("https://x/{{ data.id }}".into());
        let out = Compiled::new(&content, &BTreeMap::new())
            .unwrap()
            .render_in_app(&ctx(serde_json::json!({"id": "p1"})))
            .unwrap();
        assert_eq!(out.action_url.as_deref(), Some("https://x/p1"));
        content.in_app.as_mut().unwrap().action_url = Some("{{ id }}".into());
        let problems = validate(&content, &BTreeMap::new()).unwrap_err();
        assert_eq!(problems[0].path(), "in_app.action_url");
    }
}
