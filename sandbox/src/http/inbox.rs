//! The web inbox: a self-contained HTML list of the newest emails and a page per email.
//!
//! Every piece of message content is escaped; an HTML body is shown in a sandboxed iframe
//! (`srcdoc`), and the pages forbid scripts, so a hostile message cannot act in the browser.

use std::fmt::{self, Display, Write as _};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Sandbox;
use crate::mailbox::{Address, StoredEmail};

/// How many emails the index lists.
const INDEX_SIZE: usize = 50;

/// Seconds between automatic reloads of the index.
const REFRESH_SECS: u32 = 5;

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem;color:#222}\
    table{border-collapse:collapse;width:100%}\
    th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}\
    th{background:#f4f4f4}td.n{white-space:nowrap}\
    pre{background:#f8f8f8;padding:.8rem;white-space:pre-wrap;word-break:break-word}\
    iframe{width:100%;height:32rem;border:1px solid #ccc}.muted{color:#777}";

/// Lists the newest emails.
pub(crate) async fn index(State(sandbox): State<Arc<Sandbox>>) -> Response {
    let newest = sandbox.mailbox.newest(INDEX_SIZE);
    let total = sandbox.mailbox.count(None);
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>fanout-sandbox</h1><p class=\"muted\">{total} stored, newest {shown} shown, \
         refreshes every {REFRESH_SECS} s",
        shown = newest.len(),
    );
    if let Some(addr) = sandbox.smtp_addr {
        let _ = write!(body, "; SMTP on {}", Escaped(&addr.to_string()));
    }
    body.push_str("</p>");
    if newest.is_empty() {
        body.push_str("<p>No emails yet.</p>");
    } else {
        body.push_str(
            "<table><thead><tr><th>#</th><th>Received (UTC)</th><th>From</th><th>To</th>\
             <th>Subject</th></tr></thead><tbody>",
        );
        for message in &newest {
            let email = &message.email;
            let from = email
                .from
                .as_ref()
                .map_or_else(|| email.mail_from.clone(), address);
            let _ = write!(
                body,
                "<tr><td class=\"n\"><a href=\"/emails/{id}\">{id}</a></td>\
                 <td class=\"n\">{received}</td><td>{from}</td><td>{to}</td>\
                 <td><a href=\"/emails/{id}\">{subject}</a></td></tr>",
                id = email.id,
                received = UtcTime(email.received_at_ms),
                from = Escaped(&from),
                to = Escaped(&email.rcpt_to.join(", ")),
                subject = Escaped(subject(email)),
            );
        }
        body.push_str("</tbody></table>");
    }
    let refresh = format!("<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">");
    page(StatusCode::OK, "fanout-sandbox", &refresh, &body)
}

/// Shows one email: envelope, headers, text body and HTML body.
pub(crate) async fn email(State(sandbox): State<Arc<Sandbox>>, Path(id): Path<String>) -> Response {
    let Some(message) = id.parse().ok().and_then(|id| sandbox.mailbox.get(id)) else {
        let body = "<p><a href=\"/\">All emails</a></p><h1>Email not found</h1>";
        return page(StatusCode::NOT_FOUND, "email not found", "", body);
    };
    let email = &message.email;
    let mut body = String::new();
    let _ = write!(
        body,
        "<p><a href=\"/\">All emails</a> · <a href=\"/api/emails/{id}/raw\">raw</a> · \
         <a href=\"/api/emails/{id}\">json</a></p><h1>{subject}</h1><table>",
        id = email.id,
        subject = Escaped(subject(email)),
    );
    let from = email.from.as_ref().map(address).unwrap_or_default();
    let to: Vec<_> = email.to.iter().map(address).collect();
    let client = match &email.helo {
        Some(helo) => format!("{} ({helo})", email.peer),
        None => email.peer.clone(),
    };
    let rows = [
        ("Id", email.id.to_string()),
        ("Received", UtcTime(email.received_at_ms).to_string()),
        ("Envelope from", email.mail_from.clone()),
        ("Envelope to", email.rcpt_to.join(", ")),
        ("From", from),
        ("To", to.join(", ")),
        ("Subject", subject(email).to_owned()),
        ("Message-ID", email.message_id.clone().unwrap_or_default()),
        ("Size", format!("{} bytes", email.size)),
        ("Client", client),
    ];
    for (name, value) in rows {
        let _ = write!(
            body,
            "<tr><th>{name}</th><td>{value}</td></tr>",
            value = Escaped(&value)
        );
    }
    body.push_str("</table><h2>Text body</h2>");
    match &email.text {
        Some(text) => {
            let _ = write!(body, "<pre>{}</pre>", Escaped(text));
        }
        None => body.push_str("<p class=\"muted\">none</p>"),
    }
    body.push_str("<h2>HTML body</h2>");
    match &email.html {
        // An empty sandbox attribute denies scripts, forms, popups and same-origin access.
        Some(html) => {
            let _ = write!(
                body,
                "<iframe sandbox=\"\" referrerpolicy=\"no-referrer\" srcdoc=\"{}\"></iframe>",
                Escaped(html)
            );
        }
        None => body.push_str("<p class=\"muted\">none</p>"),
    }
    let title = format!("{} · fanout-sandbox", subject(email));
    page(StatusCode::OK, &title, "", &body)
}

fn subject(email: &StoredEmail) -> &str {
    email.subject.as_deref().unwrap_or("(no subject)")
}

fn address(address: &Address) -> String {
    match &address.name {
        Some(name) => format!("{name} <{}>", address.address),
        None => address.address.clone(),
    }
}

/// Wraps `body` in a complete document; `head` is trusted markup, `title` is escaped.
fn page(status: StatusCode, title: &str, head: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">{head}<title>{title}</title>\
         <style>{STYLE}</style></head><body>{body}</body></html>",
        title = Escaped(title),
    );
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (
            header::CONTENT_SECURITY_POLICY,
            "script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'",
        ),
    ];
    (status, headers, html).into_response()
}

/// Displays text with the HTML special characters escaped, safe in content and attributes.
struct Escaped<'a>(&'a str);

impl Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(index) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..index])?;
            f.write_str(match rest.as_bytes()[index] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[index + 1..];
        }
        f.write_str(rest)
    }
}

/// Displays Unix milliseconds as a UTC date and time, e.g. `2025-03-01 14:05:09`.
struct UtcTime(u64);

impl Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1000;
        let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_date(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
            secs_of_day / 3600,
            secs_of_day % 3600 / 60,
            secs_of_day % 60
        )
    }
}

/// Converts days since 1970-01-01 into a proleptic Gregorian (year, month, day).
fn civil_date(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01 so that the leap day ends each 4/100/400-year cycle.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        let escaped = Escaped("<a href=\"x\">Tom & 'Jerry'</a>").to_string();
        assert_eq!(
            escaped,
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(Escaped("café ✓").to_string(), "café ✓");
    }

    #[test]
    fn formats_utc_time() {
        assert_eq!(UtcTime(0).to_string(), "1970-01-01 00:00:00");
        assert_eq!(UtcTime(951_782_400_000).to_string(), "2000-02-29 00:00:00");
        assert_eq!(
            UtcTime(1_735_689_599_999).to_string(),
            "2024-12-31 23:59:59"
        );
        assert_eq!(
            UtcTime(1_740_837_909_000).to_string(),
            "2025-03-01 14:05:09"
        );
    }
}
