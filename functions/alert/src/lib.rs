//! promlake-alert: alert evaluators.
//!
//! Rule files in Prometheus' format are evaluated against the query crate's session; any number
//! of identical evaluator replicas deduplicate their notifications through create-only writes to
//! the group's state log in object storage, instead of Alertmanager's gossip mesh.
//!
//! It must not know how samples are scraped or stored beyond what the query crate offers.

pub mod api;
pub mod dispatch;
pub mod error;
pub mod evaluator;
pub mod lambda;
pub mod notify;
pub mod results;
pub mod rules;
pub mod state;
pub mod template;
