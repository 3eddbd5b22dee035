//! Compiling and rendering template content with MiniJinja. Pure computation: the API uses it
//! to reject broken templates at creation, the activities to render per recipient.
//!
//! Templates see the request's `data` keys at top level, plus `user` (`id`, `name`, `email`,
//! `locale`) and `request_id`. Undefined variables are errors rather than blanks, so a typo
//! fails loudly instead of sending "Hello ,".

use crate::RequestId;
use crate::template::{EmailContent, InAppContent};
use crate::user::User;
use minijinja::{Environment, UndefinedBehavior, Value};

/// A rendering failure, naming the template part and the position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{part}: {message}")]
pub struct RenderError {
    /// Which part failed (`email.subject`, `in_app.body`, ...).
    pub part: &'static str,
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
}

/// The compiled parts of one template version for one channel; build once per page.
pub struct Compiled {
    env: Environment<'static>,
}

const EMAIL_SUBJECT: &str = "email.subject";
const EMAIL_TEXT: &str = "email.text";
// The `.html` suffix turns on MiniJinja's HTML auto-escaping for this part only.
const EMAIL_HTML: &str = "email.html";
const IN_APP_TITLE: &str = "in_app.title";
const IN_APP_BODY: &str = "in_app.body";

impl Compiled {
    fn new(parts: &[(&'static str, &str)]) -> Result<Self, RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, source) in parts {
            env.add_template_owned(*name, (*source).to_owned())
                .map_err(|e| RenderError {
                    part: name,
                    message: describe(&e),
                })?;
        }
        Ok(Self { env })
    }

    /// Compiles email content.
    pub fn email(content: &EmailContent) -> Result<Self, RenderError> {
        let mut parts = vec![
            (EMAIL_SUBJECT, content.subject.as_str()),
            (EMAIL_TEXT, content.text.as_str()),
        ];
        if let Some(html) = &content.html {
            parts.push((EMAIL_HTML, html.as_str()));
        }
        Self::new(&parts)
    }

    /// Compiles inbox content.
    pub fn in_app(content: &InAppContent) -> Result<Self, RenderError> {
        Self::new(&[
            (IN_APP_TITLE, content.title.as_str()),
            (IN_APP_BODY, content.body.as_str()),
        ])
    }

    fn render(&self, part: &'static str, ctx: &Value) -> Result<String, RenderError> {
        let tpl = self.env.get_template(part).map_err(|e| RenderError {
            part,
            message: describe(&e),
        })?;
        tpl.render(ctx).map_err(|e| RenderError {
            part,
            message: describe(&e),
        })
    }

    fn has(&self, part: &str) -> bool {
        self.env.get_template(part).is_ok()
    }

    /// Renders email content for a recipient.
    pub fn render_email(&self, ctx: &Value) -> Result<RenderedEmail, RenderError> {
        Ok(RenderedEmail {
            subject: self.render(EMAIL_SUBJECT, ctx)?.trim().to_owned(),
            text: self.render(EMAIL_TEXT, ctx)?,
            html: if self.has(EMAIL_HTML) {
                Some(self.render(EMAIL_HTML, ctx)?)
            } else {
                None
            },
        })
    }

    /// Renders inbox content for a recipient.
    pub fn render_in_app(&self, ctx: &Value) -> Result<RenderedInApp, RenderError> {
        Ok(RenderedInApp {
            title: self.render(IN_APP_TITLE, ctx)?,
            body: self.render(IN_APP_BODY, ctx)?,
        })
    }
}

/// Builds the variables one recipient's rendering sees.
pub fn context(
    data: &serde_json::Map<String, serde_json::Value>,
    user: &User,
    request_id: &RequestId,
) -> Value {
    let mut vars = data.clone();
    vars.insert(
        "user".into(),
        serde_json::json!({
            "id": user.user_id.as_str(),
            "name": user.name,
            "email": user.email.as_ref().map(|e| e.as_str()),
            "locale": user.locale,
        }),
    );
    vars.insert("request_id".into(), request_id.as_str().into());
    Value::from_serialize(&vars)
}

/// MiniJinja's error with its line, when it knows it.
fn describe(e: &minijinja::Error) -> String {
    let mut msg = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_owned);
    if let Some(line) = e.line() {
        msg = format!("{msg} (line {line})");
    }
    msg
}

/// Checks that email content compiles, for validation at template creation.
pub fn check_email(content: &EmailContent) -> Result<(), RenderError> {
    Compiled::email(content).map(|_| ())
}

/// Checks that inbox content compiles, for validation at template creation.
pub fn check_in_app(content: &InAppContent) -> Result<(), RenderError> {
    Compiled::in_app(content).map(|_| ())
}

#[cfg(test)]
mod tests {
    use crate::user::EmailAddress;
    use crate::{DedupeKey, TenantId, UserId};

    use super::*;

    fn ctx(data: serde_json::Value) -> Value {
        let user = User {
            user_id: UserId::parse("u1").unwrap(),
            email: Some(EmailAddress::parse("ada@example.com").unwrap()),
            name: Some("Ada".into()),
            locale: Some("en".into()),
            timezone: None,
            devices: Vec::new(),
        };
        let req = DedupeKey::new(TenantId::parse("t").unwrap(), "k")
            .unwrap()
            .request_id();
        context(data.as_object().unwrap(), &user, &req)
    }

    #[test]
    fn renders_data_and_user_and_escapes_html_only() {
        let compiled = Compiled::email(&EmailContent {
            subject: "{{ actor }} commented".into(),
            text: "Hi {{ user.name }}: {{ comment }}".into(),
            html: Some("<p>{{ comment }}</p>".into()),
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
    fn undefined_variables_fail_with_the_part_named() {
        let compiled = Compiled::in_app(&InAppContent {
            title: "t".into(),
            body: "{{ missing }}".into(),
        })
        .unwrap();
        let err = compiled
            .render_in_app(&ctx(serde_json::json!({})))
            .unwrap_err();
        assert_eq!(err.part, "in_app.body");
    }

    #[test]
    fn syntax_errors_name_part_and_line() {
        let err = check_in_app(&InAppContent {
            title: "ok".into(),
            body: "line one\n{{ broken".into(),
        })
        .unwrap_err();
        assert_eq!(err.part, "in_app.body");
        assert!(err.message.contains("line 2"), "{}", err.message);
    }
}
