//! The subcommands.

pub mod alert;
pub mod blocks;
pub mod check;
pub mod common;
pub mod import;
pub mod query;
pub mod scrape;
pub mod up;
