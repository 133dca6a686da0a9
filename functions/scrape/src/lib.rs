//! promlake-scrape: the scrape worker.
//!
//! - [`exposition`]: Prometheus' text format 0.0.4 and OpenMetrics 1.0, parsed as Prometheus does;
//! - [`relabel`]: relabeling, bit-identical to Prometheus (including `hashmod`), from core;
//! - [`targets`]: target labels as Prometheus builds them, and this worker's shard of them.
//!
//! The crate must not know how blocks are queried or how alerts are evaluated; it reads targets
//! and writes samples.

pub mod discovery;
pub mod exposition;
pub mod fetch;
pub mod lambda;
pub use promlake_core::relabel;
pub mod samples;
pub mod state;
pub mod targets;
pub mod worker;
