//! The subcommands.

pub mod check;
