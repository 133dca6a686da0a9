//! promlake-core: the model every promlake component shares.
//!
//! - [`labels`]: label sets and series ids exactly as Prometheus computes them;
//! - [`config`]: Prometheus' `prometheus.yml` plus promlake's sections, validated with located
//!   errors; [`relabel`]: applying relabel rules (`hashmod` included), as scrape targets,
//!   samples and alerts need it;
//! - [`duration`], [`value`]: Prometheus' durations, stale marker and float formatting;
//! - [`keys`]: every object key shape, built and parsed in one place;
//! - [`block`]: the Parquet block format; [`dedup`]: the one rule that counts each stored
//!   sample once (HA replicas, repeated writes); [`sink`]: the one way writers land samples as
//!   blocks (buffer, split by hour, create-only PUT, keep what failed, bound, spill);
//! - [`store`]: object storage from a URL; [`log`]: the create-only log that coordinates
//!   replicas; [`readonly`]: a store that refuses writes (what queries read through);
//!   [`faults`]: a request-counting, fault-injecting store wrapper for tests;
//! - [`clock`]: injected time; [`shard`]: `K/N`.
//!
//! This crate must not know HTTP servers, DataFusion or Lambda: it is the vocabulary the scrape,
//! query and alert crates speak, and it reaches storage only through `object_store`.

pub mod block;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod dedup;
pub mod duration;
pub mod error;
pub mod faults;
#[cfg(feature = "lambda")]
pub mod function;
pub mod keys;
pub mod labels;
pub mod log;
pub mod readonly;
pub mod relabel;
pub mod shard;
pub mod sink;
pub mod store;
pub mod telemetry;
pub mod testdata;
pub mod value;

pub use error::{Error, Result};
