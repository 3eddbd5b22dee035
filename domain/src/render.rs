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
//! Templates are tenant code running on workers every tenant shares, so each render is
//! bounded: [`RENDER_FUEL`] instructions per part and [`MAX_RENDERED_BYTES`] of output per
//! part. A part that exceeds either fails with [`RenderFailure::Limit`]; [`validate`] trial
//! renders every part so a template that exceeds them on any data is refused when written.
//! [`required_data`] finds the `data.*` values a template cannot render without, so the API
//! refuses a notify that lacks them instead of failing every recipient later.
//!
//! A [`Compiled`] holds every channel and locale variant of one template version, compiled
//! once; each render picks the variant for the recipient's locale (see
//! [`crate::template::resolve_locale`]).

use std::collections::BTreeMap;
use std::fmt;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::Serialize;

use crate::digest::DigestView;
use crate::limits::MAX_INBOX_PAYLOAD_BYTES;
use crate::template::{
    ChannelContent, EmailContent, InAppContent, PushContent, Template, resolve_locale,
};
use crate::user::User;
use crate::{Channel, RequestId};

mod check;

pub use check::{ProblemKind, TemplateProblem, missing_data, required_data, validate};

/// The fields of `user` templates may use; [`context`] provides exactly these.
pub const USER_FIELDS: [&str; 5] = ["user_id", "name", "email", "locale", "timezone"];

/// The instructions one render of one part may execute. A loop over a hundred items with a
/// few expressions each uses a few thousand; the budget stops a runaway template (nested
/// loops over `range(100000)`) in a few milliseconds.
pub const RENDER_FUEL: u64 = 200_000;

/// The most output one render of one part may produce, in bytes.
pub const MAX_RENDERED_BYTES: usize = 256 * 1024;

/// Why a render failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RenderFailure {
    /// The template does not render with this data (an undefined value, a type error).
    Template,
    /// The render exceeded its budget: [`RENDER_FUEL`], [`MAX_RENDERED_BYTES`] or the
    /// worker's render timeout.
    Limit,
}

/// A rendering failure, naming the template part and the position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{part}: {message}")]
pub struct RenderError {
    /// Which part failed, as a path in the template (`email.subject`,
    /// `locales.fr.in_app.body`, `push.data.url`).
    pub part: String,
    /// MiniJinja's description, with line information.
    pub message: String,
    /// Whether the template or its budget failed.
    pub failure: RenderFailure,
}

impl RenderError {
    /// A failure of the render's budget, outside the engine (a timeout).
    pub fn limit(part: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            part: part.into(),
            message: message.into(),
            failure: RenderFailure::Limit,
        }
    }

    fn from_engine(part: String, e: &minijinja::Error, overflowed: bool) -> Self {
        let limit = overflowed || e.kind() == minijinja::ErrorKind::OutOfFuel;
        let message = if overflowed {
            format!("the output exceeds {MAX_RENDERED_BYTES} bytes")
        } else if e.kind() == minijinja::ErrorKind::OutOfFuel {
            format!("the render exceeds its budget of {RENDER_FUEL} instructions")
        } else {
            describe(e)
        };
        Self {
            part,
            message,
            failure: if limit {
                RenderFailure::Limit
            } else {
                RenderFailure::Template
            },
        }
    }
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
    /// The template's payload, rendered.
    pub payload: BTreeMap<String, String>,
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
    let vars = variables(data, user, request_id);
    RenderContext::new(Value::from_serialize(&vars), user.locale.clone())
}

/// What one recipient of a digest's request sees: [`context`] and `digest` (their items and
/// count, see [`crate::digest`]).
pub fn digest_context(
    data: &serde_json::Map<String, serde_json::Value>,
    user: &User,
    request_id: &RequestId,
    digest: &DigestView,
) -> RenderContext {
    let mut vars = variables(data, user, request_id);
    vars.insert(
        "digest".into(),
        serde_json::json!({"items": digest.items, "count": digest.count}),
    );
    RenderContext::new(Value::from_serialize(&vars), user.locale.clone())
}

fn variables(
    data: &serde_json::Map<String, serde_json::Value>,
    user: &User,
    request_id: &RequestId,
) -> serde_json::Map<String, serde_json::Value> {
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
    vars
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
        for (name, value) in &in_app.payload {
            push(Channel::InApp, format!("payload.{name}"), value);
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
    env.set_fuel(Some(RENDER_FUEL));
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
                .map_err(|e| RenderError::from_engine(part.path(), &e, false))?;
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
        let path = part_path(locale, channel, field);
        let template = self
            .env
            .get_template(&key(locale, channel, field))
            .map_err(|e| RenderError::from_engine(path.clone(), &e, false))?;
        render_bounded(&template, ctx.vars(), path)
    }

    fn missing(channel: Channel) -> RenderError {
        RenderError {
            part: channel.to_string(),
            message: format!("the template has no {channel} content"),
            failure: RenderFailure::Template,
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
        let part = |field: &str| self.render(locale, Channel::InApp, field, ctx);
        let payload: BTreeMap<String, String> = in_app
            .payload
            .keys()
            .map(|name| Ok((name.clone(), part(&format!("payload.{name}"))?)))
            .collect::<Result<_, RenderError>>()?;
        let size: usize = payload.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_INBOX_PAYLOAD_BYTES {
            return Err(RenderError::limit(
                "in_app.payload",
                format!("the rendered payload exceeds {MAX_INBOX_PAYLOAD_BYTES} bytes"),
            ));
        }
        Ok(RenderedInApp {
            title: part("title")?,
            body: part("body")?,
            action_url: in_app
                .action_url
                .as_ref()
                .map(|_| part("action_url").map(|u| u.trim().to_owned()))
                .transpose()?,
            payload,
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

/// Renders one part within [`MAX_RENDERED_BYTES`] (the environment's fuel bounds the work).
fn render_bounded(
    template: &minijinja::Template<'_, '_>,
    vars: &Value,
    part: String,
) -> Result<String, RenderError> {
    let mut out = Bounded::default();
    match template.render_captured_to(vars, &mut out) {
        Ok(_) => String::from_utf8(out.buf).map_err(|_| RenderError {
            part,
            message: "the output is not valid UTF-8".into(),
            failure: RenderFailure::Template,
        }),
        Err(e) => Err(RenderError::from_engine(part, &e, out.overflowed)),
    }
}

/// An output buffer that refuses to grow past [`MAX_RENDERED_BYTES`].
#[derive(Default)]
struct Bounded {
    buf: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + bytes.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("rendered output too large"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
mod tests;
