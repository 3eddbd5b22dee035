//! Shared test infrastructure: the real services (a Temporal dev server, the SMTP sandbox, a
//! worker) started for the end-to-end suite (`main.rs`) and the benchmark (`fanout-bench`), and
//! what a workflow history costs ([`history`]).

pub mod history;
pub mod stack;
