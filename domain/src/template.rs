//! Templates: the content of each channel, written in a Jinja-like syntax (MiniJinja).

use serde::{Deserialize, Serialize};

use crate::{Channel, TemplateId, UnixMillis};

/// Email content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailContent {
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// An optional HTML alternative, auto-escaped.
    #[serde(default)]
    pub html: Option<String>,
}

/// In-app inbox content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InAppContent {
    /// A short title.
    pub title: String,
    /// The body.
    pub body: String,
}

/// A template as stored: one content block per channel it supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// The template's id within its tenant.
    pub template_id: TemplateId,
    /// Bumped on every change; caches key on it.
    pub version: i64,
    /// A human name.
    pub name: String,
    /// Email content, if the template supports email.
    pub email: Option<EmailContent>,
    /// In-app content, if the template supports the inbox.
    pub in_app: Option<InAppContent>,
    /// When this version was written.
    pub updated_at_ms: UnixMillis,
}

impl Template {
    /// Whether the template has content for `channel`.
    pub fn supports(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.email.is_some(),
            Channel::InApp => self.in_app.is_some(),
            Channel::Push => false,
        }
    }

    /// The channels the template has content for.
    pub fn channels(&self) -> Vec<Channel> {
        Channel::ALL
            .into_iter()
            .filter(|c| self.supports(*c))
            .collect()
    }
}
