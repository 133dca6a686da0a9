//! The subcommands.

pub mod blocks;
pub mod check;
pub mod common;
pub mod query;
pub mod scrape;
pub mod up;
