//! The crate's errors.

/// Errors of the alert evaluator: what stops it from starting, and what a rule's query returned
/// that the rule contract (see [`crate::rules`]) does not allow.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("{0}")]
    Invalid(String),
    /// A rule's query returns columns a rule cannot turn into series.
    #[error("group {group:?}, rule {rule:?}: {reason}")]
    RuleOutput {
        group: String,
        rule: String,
        reason: String,
    },
    /// Two of an alerting rule's results have the same labels once the rule's labels are added.
    #[error("vector contains metrics with the same labelset after applying alert labels")]
    DuplicateAlertLabels,
    /// A group's `limit` on pending and firing alerts was exceeded: the rule's alerts are dropped.
    #[error("exceeded limit of {limit} with {count} alerts")]
    AlertLimit { limit: u64, count: u64 },
    #[error(transparent)]
    Core(#[from] promlake_core::Error),
}
