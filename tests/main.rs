//! End-to-end tests: the real stack, driven over HTTP as a user would.
//!
//! Run with `make test` (which installs the temporal CLI) or `cargo test -p fanout-tests`.

mod cli;
mod concurrency;
mod crash;
mod digests;
mod direct;
mod failover;
mod frequency_caps;
mod hardening;
mod helpers;
mod inbox_stream;
mod ingest;
mod kill;
mod limits;
mod notify;
mod observability;
mod orchestration;
mod preferences;
mod preflight;
mod push;
mod quiet_hours;
mod record;
mod retries;
mod scale_out;
mod scheduling;
mod timing;
mod webhooks;
