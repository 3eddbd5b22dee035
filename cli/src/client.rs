//! The one HTTP client every command goes through, and [`Failure`], the one error, which
//! decides the exit code.

use std::fmt::Write as _;
use std::time::Duration;

use fanout_domain::config::Secret;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

use crate::settings::Settings;

/// How long one call may take: above the API's own request timeout (30 s), so its 503 says why.
const CALL_TIMEOUT: Duration = Duration::from_secs(45);

/// Why a command did not succeed. Each kind is one exit code (see [`crate::EXIT_CODES`]).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The API answered 4xx: the call was refused as made.
    #[error("{0}")]
    Refused(Box<Refusal>),
    /// Input refused before any call, as the API would refuse it (a template file that is
    /// not JSON).
    #[error("{0}")]
    Invalid(String),
    /// Something the command line itself got wrong, found before or instead of a call.
    #[error("{0}")]
    Usage(String),
    /// The API could not be reached, timed out or failed (5xx).
    #[error("{0}")]
    Unavailable(String),
    /// `status --watch`: the request ended, but not completed.
    #[error("request {request_id} ended {state}")]
    Ended {
        /// The request.
        request_id: String,
        /// `failed` or `cancelled`.
        state: String,
    },
}

impl Failure {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Refused(_) | Failure::Invalid(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unavailable(_) => 3,
            Failure::Ended { .. } => 4,
        }
    }

    /// What to print on stderr: `error: ...`; for a refused template, its problems one per
    /// line instead of the API's message (which lists the same problems run together).
    pub fn report(&self) -> String {
        match self {
            Failure::Refused(refusal) if !refusal.problems.is_empty() => {
                let mut out = format!(
                    "error: {} {}: {} problem(s), each located as path:line:column",
                    refusal.status.as_u16(),
                    refusal.code,
                    refusal.problems.len()
                );
                for problem in &refusal.problems {
                    let _ = write!(out, "\n  {problem}");
                }
                out
            }
            _ => format!("error: {self}"),
        }
    }
}

/// A 4xx answer: the status and the API's `{"error": {...}}`.
#[derive(Debug)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// The error's stable code (`not_found`, `invalid_field`, ...).
    pub code: String,
    /// Its message.
    pub message: String,
    /// The field it names, if any.
    pub field: Option<String>,
    /// An `invalid_template`'s located problems.
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )?;
        if let Some(field) = &self.field {
            write!(f, " (field {field})")?;
        }
        Ok(())
    }
}

/// One located template problem, as the API lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Problem {
    /// `syntax` or `unknown_variable`.
    pub kind: String,
    /// Where in the template document, e.g. `locales.fr.email.subject`.
    #[serde(default)]
    pub path: Option<String>,
    /// 1-based line within the part.
    #[serde(default)]
    pub line: Option<u64>,
    /// 1-based column within the line.
    #[serde(default)]
    pub column: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.path.as_deref().unwrap_or("?"))?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}: {}", self.kind, self.message)
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    problems: Option<Vec<Problem>>,
}

/// Which key a call authenticates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The tenant's API key (`/v1/...`).
    Tenant,
    /// The operator's admin key (`/v1/admin/...`).
    Admin,
}

/// The API, as the settings name it.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    api_key: Option<Secret>,
    admin_key: Option<Secret>,
}

impl Api {
    /// A client for the API the settings name.
    pub fn new(settings: Settings) -> Result<Self, Failure> {
        let base = Url::parse(&settings.api_url).map_err(|e| {
            Failure::Usage(format!(
                "the API URL '{}' is not a URL: {e}",
                settings.api_url
            ))
        })?;
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .user_agent(concat!("fanout-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::Unavailable(format!("no HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            api_key: settings.api_key,
            admin_key: settings.admin_key,
        })
    }

    /// The URL of `segments` under the base, each segment escaped, with `query` pairs (those
    /// without a value left out).
    pub fn url(&self, segments: &[&str], query: &[(&str, Option<String>)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        let present: Vec<_> = query
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
            .collect();
        if !present.is_empty() {
            url.query_pairs_mut().extend_pairs(present);
        }
        url
    }

    /// A GET as the tenant.
    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
    ) -> Result<Value, Failure> {
        self.call(Auth::Tenant, Method::GET, self.url(segments, query), None)
            .await
    }

    /// A call with a JSON body (or none), as the tenant or the operator; answers the body
    /// (`null` when empty).
    pub async fn send(
        &self,
        auth: Auth,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        self.call(auth, method, self.url(segments, &[]), body).await
    }

    /// Makes the call and sorts the answer into a value or a [`Failure`].
    pub async fn call(
        &self,
        auth: Auth,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let key = match auth {
            Auth::Tenant => self.api_key.as_ref().ok_or_else(|| {
                Failure::Usage(
                    "no API key: pass --api-key, set FANOUT_API_KEY, or run `make up` (it writes .fanout/dev.env)"
                        .into(),
                )
            })?,
            Auth::Admin => self.admin_key.as_ref().ok_or_else(|| {
                Failure::Usage(
                    "no admin key: pass --admin-key, set FANOUT_ADMIN_KEY, or run `make up` (it writes .fanout/dev.env)"
                        .into(),
                )
            })?,
        };
        let mut request = self
            .http
            .request(method, url.clone())
            .bearer_auth(key.expose());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            Failure::Unavailable(format!("cannot reach the API at {}: {e}", self.base))
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            Failure::Unavailable(format!("the API's answer was cut off ({status}): {e}"))
        })?;
        answer(status, &text, &url)
    }
}

/// Sorts a status and body into a value (2xx), a refusal (4xx) or unavailability.
pub fn answer(status: StatusCode, text: &str, url: &Url) -> Result<Value, Failure> {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    if status.is_success() {
        return match parsed {
            Some(value) => Ok(value),
            None if text.trim().is_empty() => Ok(Value::Null),
            None => Err(Failure::Unavailable(format!(
                "{status} from {} is not JSON: {}",
                url.path(),
                excerpt(text)
            ))),
        };
    }
    let detail = parsed
        .and_then(|v| serde_json::from_value::<ErrorBody>(v).ok())
        .map(|b| b.error);
    if status.is_client_error() {
        let refusal = match detail {
            Some(d) => Refusal {
                status,
                code: d.code,
                message: d.message,
                field: d.field,
                problems: d.problems.unwrap_or_default(),
            },
            None => Refusal {
                status,
                code: "http".into(),
                message: format!("{} answered: {}", url.path(), excerpt(text)),
                field: None,
                problems: Vec::new(),
            },
        };
        return Err(Failure::Refused(Box::new(refusal)));
    }
    let why = detail.map_or_else(|| excerpt(text), |d| format!("{}: {}", d.code, d.message));
    Err(Failure::Unavailable(format!(
        "the API failed ({}) on {}: {why}",
        status.as_u16(),
        url.path()
    )))
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "(empty body)".into(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://api.test/v1/templates/t").unwrap()
    }

    #[test]
    fn a_refused_template_lists_its_located_problems_one_per_line() {
        let body = r#"{"error":{"code":"invalid_template","message":"the template has 2 problems","field":"email.subject",
            "problems":[{"kind":"syntax","channel":"email","field":"subject","locale":null,"path":"email.subject","line":1,"column":7,"message":"unexpected end"},
                        {"kind":"unknown_variable","channel":"in_app","field":"body","locale":"fr","path":"locales.fr.in_app.body","line":2,"column":null,"message":"unknown variable 'x'"}]}}"#;
        let failure = answer(StatusCode::BAD_REQUEST, body, &url()).unwrap_err();
        assert_eq!(failure.exit_code(), 1);
        assert_eq!(
            failure.report(),
            "error: 400 invalid_template: 2 problem(s), each located as path:line:column\n  \
             email.subject:1:7: syntax: unexpected end\n  \
             locales.fr.in_app.body:2: unknown_variable: unknown variable 'x'"
        );
    }

    #[test]
    fn statuses_map_to_exit_codes() {
        let not_found = r#"{"error":{"code":"not_found","message":"no such request"}}"#;
        assert_eq!(
            answer(StatusCode::NOT_FOUND, not_found, &url())
                .unwrap_err()
                .exit_code(),
            1
        );
        let unavailable = r#"{"error":{"code":"unavailable","message":"temporal is down"}}"#;
        let failure = answer(StatusCode::SERVICE_UNAVAILABLE, unavailable, &url()).unwrap_err();
        assert_eq!(failure.exit_code(), 3);
        assert!(failure.report().contains("temporal is down"));
        assert_eq!(
            answer(StatusCode::BAD_GATEWAY, "<html>", &url())
                .unwrap_err()
                .exit_code(),
            3
        );
        assert_eq!(
            answer(StatusCode::NO_CONTENT, "", &url()).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn path_segments_are_escaped_and_absent_query_values_left_out() {
        let api = Api::new(Settings {
            api_url: "http://127.0.0.1:8080/".into(),
            api_key: None,
            admin_key: None,
        })
        .unwrap();
        let url = api.url(
            &["v1", "status", "../admin x"],
            &[("request_id", Some("r 1".into())), ("cursor", None)],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/v1/status/..%2Fadmin%20x?request_id=r+1"
        );
    }
}
