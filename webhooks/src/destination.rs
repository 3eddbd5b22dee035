//! Where webhooks may go: `http` or `https` URLs whose host resolves to public addresses only,
//! unless the operator allowed that `host:port` (`webhooks.allowed_private`, for the sandbox's
//! receiver in development). A tenant could otherwise make the platform call into its own
//! network: a metadata service, a database's HTTP port, an admin page (SSRF).
//!
//! The check runs when an endpoint is registered or changed ([`check_url`]), and again on every
//! connection ([`GuardedResolver`]): a name that resolved to a public address at registration
//! may resolve to a private one later (DNS rebinding), and its connection then fails.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use fanout_domain::webhook::{WebhooksConfig, check_destination};
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The longest URL an endpoint may have, in bytes.
pub const MAX_URL_BYTES: usize = 2_048;

/// Why a URL may not receive webhooks; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedUrl {
    #[error("url is not an absolute URL: {0}")]
    Malformed(String),
    #[error("url must be at most {MAX_URL_BYTES} bytes")]
    TooLong,
    #[error("url must be http or https, not {0}")]
    Scheme(String),
    #[error("url must not carry a user name or password")]
    Credentials,
    #[error("url's host {host} does not resolve: {reason}")]
    Unresolved { host: String, reason: String },
    #[error(
        "url's host {host} is {reason} ({ip}); webhooks go to public addresses only, unless the operator allows {host}:{port} (webhooks.allowed_private)"
    )]
    Forbidden {
        host: String,
        port: u16,
        ip: IpAddr,
        reason: String,
    },
}

/// Checks that `url` may receive webhooks now, resolving its host; returns it parsed.
pub async fn check_url(url: &str, config: &WebhooksConfig) -> Result<Url, RefusedUrl> {
    if url.len() > MAX_URL_BYTES {
        return Err(RefusedUrl::TooLong);
    }
    let parsed = Url::parse(url).map_err(|e| RefusedUrl::Malformed(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(RefusedUrl::Scheme(parsed.scheme().to_owned()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(RefusedUrl::Credentials);
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| RefusedUrl::Malformed("it has no host".into()))?
        .to_owned();
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| RefusedUrl::Malformed("it has no port".into()))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| RefusedUrl::Unresolved {
                host: host.clone(),
                reason: e.to_string(),
            })?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(RefusedUrl::Unresolved {
            host,
            reason: "no addresses".into(),
        });
    }
    if !config.allows_private(bare, port) {
        for addr in &addrs {
            if let Err(reason) = check_destination(addr.ip()) {
                return Err(RefusedUrl::Forbidden {
                    host,
                    port,
                    ip: addr.ip(),
                    reason: reason.to_string(),
                });
            }
        }
    }
    Ok(parsed)
}

/// A resolver that drops the addresses webhooks may not go to, so a connection to a name that
/// has come to resolve privately fails. Names the operator allowed (any port: the URL's port
/// was checked by [`check_url`] before the call) resolve as they are.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allowed_hosts: Arc<Vec<String>>,
}

impl GuardedResolver {
    /// The resolver for `config`'s allowances.
    pub fn new(config: &WebhooksConfig) -> Self {
        let hosts = config
            .allowed_private
            .iter()
            .filter_map(|entry| entry.trim().rsplit_once(':'))
            .map(|(host, _)| {
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase()
            })
            .collect();
        Self {
            allowed_hosts: Arc::new(hosts),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let allowed = self.allowed_hosts.contains(&host);
        Box::pin(resolve_guarded(host, allowed))
    }
}

/// `host`'s addresses webhooks may go to (every one when the operator allowed the host).
async fn resolve_guarded(
    host: String,
    allowed: bool,
) -> Result<Addrs, Box<dyn std::error::Error + Send + Sync>> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
        .await?
        .filter(|addr| allowed || check_destination(addr.ip()).is_ok())
        .collect();
    if found.is_empty() {
        return Err(format!("{host} resolves to no address webhooks may go to").into());
    }
    Ok(Box::new(found.into_iter()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowing(entries: &[&str]) -> WebhooksConfig {
        WebhooksConfig {
            allowed_private: entries.iter().map(|e| (*e).to_owned()).collect(),
            ..WebhooksConfig::default()
        }
    }

    #[tokio::test]
    async fn public_http_urls_pass_and_the_rest_say_why_not() {
        let config = WebhooksConfig::default();
        let ok = check_url("https://93.184.216.34:8443/hooks?x=1", &config).await;
        assert_eq!(ok.unwrap().port(), Some(8443));
        let refused = |url: &'static str| {
            let config = config.clone();
            async move { check_url(url, &config).await.unwrap_err() }
        };
        assert!(matches!(
            refused("not a url").await,
            RefusedUrl::Malformed(_)
        ));
        assert!(matches!(
            refused("ftp://93.184.216.34/").await,
            RefusedUrl::Scheme(_)
        ));
        assert!(matches!(
            refused("https://u:p@93.184.216.34/").await,
            RefusedUrl::Credentials
        ));
        for private in [
            "http://127.0.0.1:8080/",
            "http://10.0.0.5/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:9000/",
            "http://localhost:8080/",
        ] {
            let err = refused(private).await;
            assert!(
                matches!(err, RefusedUrl::Forbidden { .. }),
                "{private}: {err}"
            );
            assert!(
                err.to_string().contains("webhooks.allowed_private"),
                "{err}"
            );
        }
        let long = format!("https://93.184.216.34/{}", "a".repeat(MAX_URL_BYTES));
        assert_eq!(
            check_url(&long, &config).await.unwrap_err(),
            RefusedUrl::TooLong
        );
    }

    #[tokio::test]
    async fn the_operator_allows_private_destinations_by_host_and_port() {
        let config = allowing(&["127.0.0.1:8025", "localhost:9000"]);
        assert!(
            check_url("http://127.0.0.1:8025/hook", &config)
                .await
                .is_ok()
        );
        assert!(
            check_url("http://localhost:9000/hook", &config)
                .await
                .is_ok()
        );
        assert!(
            check_url("http://127.0.0.1:8026/hook", &config)
                .await
                .is_err()
        );
        assert!(
            check_url("http://10.0.0.1:8025/hook", &config)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_resolver_drops_private_addresses_of_names_not_allowed() {
        let guarded = GuardedResolver::new(&WebhooksConfig::default());
        let err = guarded
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("no address"), "{err}");
        let allowed = GuardedResolver::new(&allowing(&["localhost:9000"]));
        let addrs: Vec<SocketAddr> = allowed
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
