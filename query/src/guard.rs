//! What a SQL statement may be before it is planned: promlake's SQL is read-only by construction.
//!
//! Every statement — from `POST /api/v1/sql`, `promlake sql`, a rule's `sql`, the query Lambda —
//! is parsed once and checked here before DataFusion plans it:
//!
//! - only queries (`SELECT`, `WITH`, `VALUES`), `EXPLAIN` of a query, `DESCRIBE` and `SHOW
//!   TABLES`/`SHOW COLUMNS` are allowed; `COPY`, DDL (`CREATE`, `DROP`, `CREATE EXTERNAL
//!   TABLE`), DML (`INSERT`, `UPDATE`, `DELETE`), `SET`, `RESET` and every other kind are refused
//!   by name;
//! - expressions and subqueries nest at most [`MAX_DEPTH`] deep, so that a long chain such as
//!   `1+1+...` fails with a message instead of exhausting the planner's stack.
//!
//! The plan is checked again after planning ([`read_only_plan`]), and the session reads storage
//! through stores that refuse writes (`promlake_core::readonly`): three independent layers.

use std::ops::ControlFlow;

use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{self, Visit, Visitor};

use crate::error::QueryError;

/// How deep expressions and subqueries may nest.
pub const MAX_DEPTH: usize = 400;

/// Checks a parsed statement: its kind, then its depth.
pub fn check_statement(stmt: &Statement) -> Result<(), QueryError> {
    match stmt {
        Statement::Statement(s) => check_sql_statement(s),
        Statement::Explain(e) => check_statement(&e.statement),
        Statement::CopyTo(_) => Err(refused("COPY")),
        Statement::CreateExternalTable(_) => Err(refused("CREATE EXTERNAL TABLE")),
        Statement::Reset(_) => Err(refused("RESET")),
    }
}

fn check_sql_statement(s: &ast::Statement) -> Result<(), QueryError> {
    match s {
        ast::Statement::Query(_)
        | ast::Statement::ExplainTable { .. }
        | ast::Statement::ShowTables { .. }
        | ast::Statement::ShowColumns { .. } => check_depth(s),
        ast::Statement::Explain { statement, .. } => check_sql_statement(statement),
        other => Err(refused(statement_kind(other))),
    }
}

/// The statement's leading keywords, for the message (`INSERT`, `CREATE TABLE`, `SET`).
fn statement_kind(s: &ast::Statement) -> String {
    let text = s.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
        .take(2)
        .collect();
    match words.as_slice() {
        [] => "this".into(),
        [one] => one.to_ascii_uppercase(),
        [first, second] => {
            let first = first.to_ascii_uppercase();
            // Two-word kinds: CREATE TABLE, DROP VIEW, ALTER TABLE, ...
            if matches!(first.as_str(), "CREATE" | "DROP" | "ALTER" | "TRUNCATE") {
                format!("{first} {}", second.to_ascii_uppercase())
            } else {
                first
            }
        }
        _ => unreachable!("take(2)"),
    }
}

fn refused(kind: impl std::fmt::Display) -> QueryError {
    QueryError::BadQuery(format!(
        "{kind} statements are not allowed: promlake's SQL is read-only (SELECT, WITH, VALUES, \
         EXPLAIN, DESCRIBE and SHOW are)"
    ))
}

/// Counts how deep expressions and queries nest, stopping at the first level past the limit.
struct Depth {
    current: usize,
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, _: &ast::Expr) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_expr(&mut self, _: &ast::Expr) -> ControlFlow<()> {
        self.current -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_query(&mut self, _: &ast::Query) -> ControlFlow<()> {
        self.current -= 1;
        ControlFlow::Continue(())
    }
}

impl Depth {
    fn enter(&mut self) -> ControlFlow<()> {
        self.current += 1;
        if self.current > MAX_DEPTH {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn check_depth(s: &ast::Statement) -> Result<(), QueryError> {
    let mut depth = Depth { current: 0 };
    match s.visit(&mut depth) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(QueryError::BadQuery(format!(
            "the statement nests expressions or subqueries more than {MAX_DEPTH} deep (a long \
             chain of operators such as a+b+c+... counts one level per operator): split it"
        ))),
    }
}

/// Checks a plan: no DDL, DML, `COPY` or `SET` (the second layer, behind [`check_statement`]).
pub fn read_only_plan(plan: &LogicalPlan) -> Result<(), QueryError> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| QueryError::BadQuery(e.strip_backtrace()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    fn check(sql: &str) -> Result<(), QueryError> {
        let ctx = SessionContext::new();
        let stmt = ctx
            .state()
            .sql_to_statement(sql, &datafusion::config::Dialect::Generic)
            .expect("parses");
        check_statement(&stmt)
    }

    #[test]
    fn queries_pass() {
        for sql in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
            "VALUES (1), (2)",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SHOW TABLES",
            "SHOW COLUMNS FROM samples",
            "DESCRIBE samples",
            "SELECT (SELECT max(x) FROM (VALUES (1)) t(x)) + 1",
        ] {
            check(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn writes_and_settings_are_refused_by_name() {
        for (sql, kind) in [
            (
                "COPY (SELECT 'x' AS a) TO 'victim.txt' STORED AS CSV",
                "COPY",
            ),
            (
                "COPY (SELECT 1) TO 'promlake://r/blocks/x.parquet' STORED AS PARQUET",
                "COPY",
            ),
            ("EXPLAIN COPY (SELECT 1) TO 'x.csv' STORED AS CSV", "COPY"),
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/'",
                "CREATE EXTERNAL TABLE",
            ),
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            ("DROP TABLE samples", "DROP TABLE"),
            ("INSERT INTO samples VALUES (1)", "INSERT"),
            ("DELETE FROM samples", "DELETE"),
            ("UPDATE samples SET value = 1", "UPDATE"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("RESET datafusion.execution.batch_size", "RESET"),
        ] {
            let e = check(sql).expect_err(sql).to_string();
            assert!(
                e.starts_with(&format!("{kind} statements are not allowed")),
                "{sql}: {e}"
            );
        }
    }

    #[test]
    fn depth_is_bounded() {
        let chain = |n: usize, op: &str| {
            let mut s = String::from("SELECT 1");
            for _ in 1..n {
                s.push_str(op);
                s.push('1');
            }
            s
        };
        check(&chain(300, "+")).expect("300 terms are fine");
        for op in ["+", " OR 1=", " * "] {
            let e = check(&chain(2000, op)).expect_err("2000 terms").to_string();
            assert!(e.contains("more than 400 deep"), "{e}");
        }
    }
}
