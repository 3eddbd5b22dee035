//! Fanout's Temporal workflows: deterministic orchestration only.
//!
//! Nothing here touches the network, the clock or a random source except through the workflow
//! context; side effects are activities, declared in `fanout_domain::contracts` and implemented
//! in `fanout-activities`. Every change to workflow code must keep replaying the histories
//! committed under `histories/` (see `tests/replay.rs`).
//!
//! - [`notification`]: one workflow per notification request.

pub mod notification;

pub use notification::NotificationWorkflow;
