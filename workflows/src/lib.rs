//! Fanout's Temporal workflows: deterministic orchestration only.
//!
//! Nothing here touches the network, the clock or a random source except through the workflow
//! context; side effects are activities, declared in `fanout_contracts` and implemented
//! in `fanout-activities`. Every change to workflow code must keep replaying the histories
//! committed under `histories/` (see `tests/replay.rs`).
//!
//! - [`notification`]: one workflow per notification request, the parent of the tree;
//! - [`schedule`]: a scheduled request's wait for its time, before either path;
//! - [`release`]: release groups (local time, quiet hours), each on one timer;
//! - [`controls`]: operator signals and cancellation written through to the store;
//! - [`direct`]: its direct path, a small audience delivered without child workflows;
//! - [`resolve`]: the child that materialises the audience snapshot in pages;
//! - [`page`]: the child that delivers one page over every channel, in delivery rounds;
//! - [`redrive`]: delivers a request's re-driven dead letters again;
//! - [`digest`]: closes a digest when its window ends and delivers it as a request;
//! - [`options`]: retry policies and timeouts; [`window`]: a deterministic sliding window.

pub mod controls;
pub mod digest;
pub mod direct;
pub mod notification;
pub mod options;
pub mod page;
pub mod redrive;
pub mod release;
pub mod resolve;
pub mod schedule;
pub mod window;

pub use digest::DigestWorkflow;
pub use notification::NotificationWorkflow;
pub use page::FanoutPageWorkflow;
pub use redrive::RedriveWorkflow;
pub use resolve::ResolveAudienceWorkflow;
