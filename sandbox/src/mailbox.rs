//! The in-memory store of accepted emails and the JSON shapes the read-back API returns.
//!
//! The store keeps the newest [`CAPACITY`] messages and evicts the oldest beyond that, so a
//! long-running sandbox (a benchmark, a soak test) stays bounded in memory. Ids are assigned at
//! insertion, start at 1, and keep increasing across [`Mailbox::clear`], so an `after_id` cursor
//! held by a poller never sees an old id reused.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use mail_parser::{MessageParser, PartType};
use serde::{Deserialize, Serialize};

use crate::arrivals::now_ms;
use crate::http::Count;

/// How many messages the sandbox keeps; older ones are evicted first.
pub const CAPACITY: usize = 200_000;

/// One accepted email as the read-back API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEmail {
    /// Sequence number assigned on acceptance; increases monotonically.
    pub id: u64,
    /// Envelope sender (`MAIL FROM`); empty for the null reverse path `<>`.
    pub mail_from: String,
    /// Envelope recipients (`RCPT TO`), in the order the client sent them.
    pub rcpt_to: Vec<String>,
    /// When the message was accepted, in milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// Size of the message content in bytes, after undoing dot-stuffing.
    pub size: usize,
    /// Client socket address, e.g. `127.0.0.1:50412`; equal values mean one SMTP connection.
    pub peer: String,
    /// Domain the client announced with `EHLO` or `HELO`.
    pub helo: Option<String>,
    /// Whether the message arrived over TLS (STARTTLS or the implicit-TLS listener).
    #[serde(default)]
    pub tls: bool,
    /// The user the client authenticated as with `AUTH`, if it did.
    #[serde(default)]
    pub auth_user: Option<String>,
    /// Decoded `Subject` header.
    pub subject: Option<String>,
    /// First address of the `From` header.
    pub from: Option<Address>,
    /// Addresses of the `To` header.
    pub to: Vec<Address>,
    /// `Message-ID` header, without angle brackets.
    pub message_id: Option<String>,
    /// First text body part, decoded (converted from HTML when the message has no text part).
    pub text: Option<String>,
    /// First HTML body part, decoded; absent when the message has no HTML part.
    pub html: Option<String>,
}

/// A mailbox from a message header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Display name, if the header has one.
    pub name: Option<String>,
    /// The address itself, e.g. `user@example.com`.
    pub address: String,
}

/// One page of `GET /api/emails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailList {
    /// Matching emails, oldest first.
    pub emails: Vec<StoredEmail>,
    /// Cursor for the next page (`after_id`); `null` when no further email matched.
    pub next_after_id: Option<u64>,
}

/// Body of `GET /api/emails/count`.
pub type EmailCount = Count;

/// The SMTP envelope and connection facts of a message about to be stored.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub peer: String,
    pub helo: Option<String>,
    pub tls: bool,
    pub auth_user: Option<String>,
}

/// A stored email together with the bytes it was parsed from.
#[derive(Debug)]
pub(crate) struct StoredMessage {
    pub email: StoredEmail,
    pub raw: Vec<u8>,
}

/// Which stored emails a listing returns.
#[derive(Debug, Default, Clone)]
pub(crate) struct Filter<'a> {
    /// Envelope recipient, compared case-insensitively.
    pub to: Option<&'a str>,
    /// Only emails with a greater id.
    pub after_id: Option<u64>,
}

/// The bounded, shared message store.
#[derive(Debug)]
pub(crate) struct Mailbox {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Sorted by id because ids are assigned under the same lock that appends.
    messages: VecDeque<Arc<StoredMessage>>,
    next_id: u64,
    /// Stored emails per lowercased envelope recipient, so counting is O(1) at any size.
    per_recipient: HashMap<String, u64>,
}

impl Mailbox {
    /// Creates an empty mailbox that keeps at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                messages: VecDeque::new(),
                next_id: 1,
                per_recipient: HashMap::new(),
            }),
        }
    }

    /// Parses `raw`, stores it under the next id, and returns that id.
    pub fn store(&self, envelope: Envelope, raw: Vec<u8>) -> u64 {
        // Parse outside the lock: it is the expensive part and needs no shared state.
        let mut email = parse(envelope, &raw);
        let recipients = distinct_recipients(&email.rcpt_to);
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        email.id = id;
        while inner.messages.len() >= self.capacity {
            let Some(evicted) = inner.messages.pop_front() else {
                break;
            };
            inner.forget_recipients(&evicted.email.rcpt_to);
        }
        for recipient in recipients {
            *inner.per_recipient.entry(recipient).or_default() += 1;
        }
        inner
            .messages
            .push_back(Arc::new(StoredMessage { email, raw }));
        id
    }

    /// Returns the message with `id`, if it is still stored.
    pub fn get(&self, id: u64) -> Option<Arc<StoredMessage>> {
        let inner = self.lock();
        let index = inner
            .messages
            .binary_search_by_key(&id, |message| message.email.id)
            .ok()?;
        inner.messages.get(index).cloned()
    }

    /// Returns up to `limit` matching messages, oldest first, and the `after_id` of the next page
    /// when more matched.
    pub fn list(
        &self,
        filter: &Filter<'_>,
        limit: usize,
    ) -> (Vec<Arc<StoredMessage>>, Option<u64>) {
        let inner = self.lock();
        let start = match filter.after_id {
            Some(after) => inner
                .messages
                .partition_point(|message| message.email.id <= after),
            None => 0,
        };
        let mut matching = inner
            .messages
            .range(start..)
            .filter(|message| filter.to.is_none_or(|to| message.is_for(to)));
        let page: Vec<_> = matching.by_ref().take(limit).cloned().collect();
        let next_after_id = match (matching.next(), page.last()) {
            (Some(_), Some(last)) => Some(last.email.id),
            _ => None,
        };
        (page, next_after_id)
    }

    /// Returns the newest `limit` messages, newest first.
    pub fn newest(&self, limit: usize) -> Vec<Arc<StoredMessage>> {
        let inner = self.lock();
        inner.messages.iter().rev().take(limit).cloned().collect()
    }

    /// Counts stored messages, only those addressed to `to` when given: an address (O(1)), or
    /// `@domain` for every address at that domain, as the listing matches them. A message to
    /// two addresses at the domain counts once.
    pub fn count(&self, to: Option<&str>) -> u64 {
        let inner = self.lock();
        match to {
            Some(domain) if domain.starts_with('@') => {
                inner.messages.iter().filter(|m| m.is_for(domain)).count() as u64
            }
            Some(to) => inner
                .per_recipient
                .get(&to.to_lowercase())
                .copied()
                .unwrap_or(0),
            None => inner.messages.len() as u64,
        }
    }

    /// Removes every stored message; ids keep increasing afterwards.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.messages.clear();
        inner.per_recipient.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the store half-updated in a way that
        // matters for a test double, so keep serving rather than propagating the poison.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn forget_recipients(&mut self, rcpt_to: &[String]) {
        for recipient in distinct_recipients(rcpt_to) {
            if let Some(count) = self.per_recipient.get_mut(&recipient) {
                *count -= 1;
                if *count == 0 {
                    self.per_recipient.remove(&recipient);
                }
            }
        }
    }
}

impl StoredMessage {
    /// Tells whether `to` is one of the envelope recipients.
    fn is_for(&self, to: &str) -> bool {
        self.email
            .rcpt_to
            .iter()
            .any(|recipient| address_matches(to, recipient))
    }
}

/// Whether `address` is matched by `pattern`: the same address, or, for a pattern `@domain`,
/// any address at that domain.
pub(crate) fn address_matches(pattern: &str, address: &str) -> bool {
    if pattern.starts_with('@') {
        let Some(at) = address.rfind('@') else {
            return false;
        };
        return same_address(pattern, &address[at..]);
    }
    same_address(pattern, address)
}

/// Compares two addresses case-insensitively, without allocating for ASCII ones.
pub(crate) fn same_address(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

/// Lowercased recipients without duplicates, so a repeated `RCPT TO` counts once.
fn distinct_recipients(rcpt_to: &[String]) -> HashSet<String> {
    rcpt_to.iter().map(|r| r.to_lowercase()).collect()
}

/// Builds the JSON view of a message; `id` is filled in by the caller.
fn parse(envelope: Envelope, raw: &[u8]) -> StoredEmail {
    let mut email = StoredEmail {
        id: 0,
        mail_from: envelope.mail_from,
        rcpt_to: envelope.rcpt_to,
        received_at_ms: now_ms(),
        size: raw.len(),
        peer: envelope.peer,
        helo: envelope.helo,
        tls: envelope.tls,
        auth_user: envelope.auth_user,
        subject: None,
        from: None,
        to: Vec::new(),
        message_id: None,
        text: None,
        html: None,
    };
    // Unparseable content is still stored: the raw bytes are what a test wants to inspect then.
    let Some(message) = MessageParser::default().parse(raw) else {
        return email;
    };
    email.subject = message.subject().map(str::to_owned);
    email.from = message
        .from()
        .and_then(|from| from.first())
        .and_then(to_address);
    email.to = message
        .to()
        .map(|to| to.iter().filter_map(to_address).collect())
        .unwrap_or_default();
    email.message_id = message.message_id().map(str::to_owned);
    email.text = message.body_text(0).map(|text| text.into_owned());
    // `body_html` converts a text part into HTML when there is no HTML part; report only a
    // real one so a test can assert that a message was sent as plain text.
    email.html = message
        .html_body
        .first()
        .and_then(|&index| message.parts.get(index as usize))
        .and_then(|part| match &part.body {
            PartType::Html(html) => Some(html.to_string()),
            _ => None,
        });
    email
}

fn to_address(addr: &mail_parser::Addr<'_>) -> Option<Address> {
    Some(Address {
        name: addr.name().map(str::to_owned),
        address: addr.address()?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_patterns_match_every_address_at_the_domain() {
        assert!(address_matches("@Example.com", "a@example.COM"));
        assert!(!address_matches("@example.com", "a@example.org"));
        assert!(!address_matches("@example.com", "a@sub.example.com"));
        assert!(address_matches("a@example.com", "A@example.com"));
        assert!(!address_matches("@example.com", "no-at-sign"));
    }

    fn envelope(rcpt_to: &[&str]) -> Envelope {
        Envelope {
            mail_from: "sender@example.com".to_owned(),
            rcpt_to: rcpt_to.iter().map(|&r| r.to_owned()).collect(),
            peer: "127.0.0.1:1".to_owned(),
            helo: Some("client.example".to_owned()),
            tls: false,
            auth_user: None,
        }
    }

    const MULTIPART: &str = "From: Fanout <noreply@example.com>\r\n\
        To: a@example.com, \"Bee\" <b@example.com>\r\n\
        Subject: =?utf-8?q?Caf=C3=A9?=\r\n\
        Message-ID: <abc@example.com>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/alternative; boundary=\"b\"\r\n\
        \r\n\
        --b\r\n\
        Content-Type: text/plain\r\n\
        \r\n\
        plain body\r\n\
        --b\r\n\
        Content-Type: text/html\r\n\
        \r\n\
        <p>html body</p>\r\n\
        --b--\r\n";

    #[test]
    fn parses_headers_and_bodies() {
        let mailbox = Mailbox::new(10);
        let id = mailbox.store(envelope(&["a@example.com"]), MULTIPART.as_bytes().to_vec());
        let email = &mailbox.get(id).unwrap().email;
        assert_eq!(email.subject.as_deref(), Some("Café"));
        assert_eq!(
            email.from,
            Some(Address {
                name: Some("Fanout".to_owned()),
                address: "noreply@example.com".to_owned(),
            })
        );
        let to: Vec<_> = email.to.iter().map(|a| a.address.as_str()).collect();
        assert_eq!(to, ["a@example.com", "b@example.com"]);
        assert_eq!(email.message_id.as_deref(), Some("abc@example.com"));
        assert_eq!(email.text.as_deref(), Some("plain body"));
        assert_eq!(email.html.as_deref(), Some("<p>html body</p>"));
        assert_eq!(email.size, MULTIPART.len());
    }

    #[test]
    fn plain_text_message_has_no_html() {
        let mailbox = Mailbox::new(10);
        let raw = b"Subject: hi\r\n\r\njust text\r\n".to_vec();
        let id = mailbox.store(envelope(&["a@example.com"]), raw);
        let email = &mailbox.get(id).unwrap().email;
        assert_eq!(email.text.as_deref(), Some("just text\r\n"));
        assert_eq!(email.html, None);
    }

    #[test]
    fn evicts_oldest_and_keeps_counts_exact() {
        let mailbox = Mailbox::new(2);
        mailbox.store(envelope(&["a@example.com"]), b"\r\n".to_vec());
        mailbox.store(
            envelope(&["A@example.com", "b@example.com"]),
            b"\r\n".to_vec(),
        );
        mailbox.store(envelope(&["b@example.com"]), b"\r\n".to_vec());
        assert!(mailbox.get(1).is_none());
        assert_eq!(mailbox.count(None), 2);
        assert_eq!(mailbox.count(Some("a@EXAMPLE.com")), 1);
        assert_eq!(mailbox.count(Some("b@example.com")), 2);
    }

    #[test]
    fn a_domain_counts_every_message_to_it_once() {
        let mailbox = Mailbox::new(10);
        mailbox.store(envelope(&["a@example.com"]), b"\r\n".to_vec());
        mailbox.store(
            envelope(&["B@Example.com", "c@example.com"]),
            b"\r\n".to_vec(),
        );
        mailbox.store(envelope(&["d@example.org"]), b"\r\n".to_vec());
        assert_eq!(mailbox.count(Some("@example.com")), 2);
        assert_eq!(mailbox.count(Some("@EXAMPLE.org")), 1);
        assert_eq!(mailbox.count(Some("@nowhere.test")), 0);
    }

    #[test]
    fn repeated_recipient_counts_once() {
        let mailbox = Mailbox::new(10);
        mailbox.store(
            envelope(&["a@example.com", "A@example.com"]),
            b"\r\n".to_vec(),
        );
        assert_eq!(mailbox.count(Some("a@example.com")), 1);
    }

    #[test]
    fn lists_pages_after_cursor() {
        let mailbox = Mailbox::new(10);
        for rcpt in [
            "a@example.com",
            "b@example.com",
            "a@example.com",
            "a@example.com",
        ] {
            mailbox.store(envelope(&[rcpt]), b"\r\n".to_vec());
        }
        let filter = Filter {
            to: Some("A@example.com"),
            after_id: None,
        };
        let (page, next) = mailbox.list(&filter, 2);
        let ids: Vec<_> = page.iter().map(|m| m.email.id).collect();
        assert_eq!((ids, next), (vec![1, 3], Some(3)));

        let filter = Filter {
            after_id: Some(3),
            ..filter
        };
        let (page, next) = mailbox.list(&filter, 2);
        let ids: Vec<_> = page.iter().map(|m| m.email.id).collect();
        assert_eq!((ids, next), (vec![4], None));
    }

    #[test]
    fn ids_keep_increasing_after_clear() {
        let mailbox = Mailbox::new(10);
        mailbox.store(envelope(&["a@example.com"]), b"\r\n".to_vec());
        mailbox.clear();
        assert_eq!(mailbox.count(Some("a@example.com")), 0);
        let id = mailbox.store(envelope(&["a@example.com"]), b"\r\n".to_vec());
        assert_eq!(id, 2);
    }
}
