//! Fanout's shared vocabulary.
//!
//! Every other crate depends on this one and it depends on no I/O: it holds the validated
//! identifiers ([`ids`]), the channels ([`channel`]), the notification request as the platform
//! understands it once it has been parsed ([`request`]), stored audiences such as segments
//! ([`audience`]), delivery outcomes ([`receipt`]), users and their devices ([`user`]),
//! templates ([`template`]) and their rendering ([`render`]), digests of many triggers into one
//! notification ([`digest`]), the backoff of delivery retries ([`retry`]), frequency caps per
//! category ([`frequency`]), the in-app inbox ([`inbox`]),
//! outbound webhooks' events and destinations ([`webhook`]), when a request runs ([`timing`]),
//! and the settings' types the binaries load ([`config`]).
//!
//! It depends on neither Temporal nor anything that does I/O: the workflow and activity
//! contracts built on the Temporal SDK are `fanout-contracts`, and the configuration loader is
//! `fanout-runtime`.
//!
//! Raw HTTP bodies never get past the API: they are parsed into these types at the edge, so a
//! value of, say, [`ids::DedupeKey`] cannot exist without the tenant that scopes it.

pub mod audience;
pub mod channel;
pub mod config;
pub mod digest;
pub mod frequency;
pub mod ids;
pub mod inbox;
pub mod limits;
pub mod quiet;
pub mod receipt;
pub mod render;
pub mod request;
pub mod retry;
pub mod template;
pub mod timing;
pub mod user;
pub mod webhook;

pub use channel::Channel;
pub use ids::{
    DedupeKey, DigestId, InstanceId, RequestId, SegmentId, TemplateId, TenantId, UserId,
};

/// Milliseconds since the Unix epoch, the one timestamp representation stored and exchanged.
pub type UnixMillis = i64;
