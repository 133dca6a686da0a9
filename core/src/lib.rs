//! promlake-core: the model every promlake component shares.
//!
//! - [`labels`]: label sets and series ids exactly as Prometheus computes them;
//! - [`config`]: Prometheus' `prometheus.yml` plus promlake's sections, validated with located
//!   errors;
//! - [`duration`], [`value`]: Prometheus' durations, stale marker and float formatting;
//! - [`clock`]: injected time.
//!
//! This crate must not know HTTP, DataFusion or Lambda: it is the vocabulary the scrape, query
//! and alert crates speak, and it only depends on storage through `object_store`.

pub mod clock;
pub mod config;
pub mod duration;
pub mod labels;
pub mod testdata;
pub mod value;
