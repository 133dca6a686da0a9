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
    #[error(transparent)]
    Core(#[from] promlake_core::Error),
}
