//! Outbound webhooks: what tenants' endpoints hear about their deliveries without polling.
//!
//! The store writes each event into its outbox in the transaction that makes it true
//! (`fanout_store::webhooks::outbox`); this crate takes them out:
//! - [`dispatch`]: the dispatcher a worker runs, batching an endpoint's events into one call,
//!   retrying with full jitter and disabling an endpoint that fails for a day;
//! - [`sign`]: Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature`);
//! - [`destination`]: which URLs may receive webhooks (no private, loopback or link-local
//!   addresses unless the operator allows them), checked at registration and on every
//!   connection.

pub mod destination;
pub mod dispatch;
pub mod sign;

pub use destination::{RefusedUrl, check_url};
pub use dispatch::spawn;
