//! Rule files in Prometheus' format: `groups` of alerting (`alert`) and recording (`record`)
//! rules, checked the way `promtool check rules` checks them.
//!
//! Until promlake speaks PromQL, a rule's `expr` is SQL over the table `samples`. The contract:
//!
//! - the query returns one row per series, with a numeric column named `value`;
//! - every other column is a label: its name is the label name, its value (as text) the label
//!   value; NULL or empty means the label is absent;
//! - a column of type map (e.g. `labels`) contributes all its entries as labels, and a `metric`
//!   column is the series name (dropped for alerts, replaced by `record` for recording rules);
//! - `now()` is the evaluation time of the tick, so every replica evaluates the same instant.
//!
//! [`check_output`] holds a query's result schema to this contract; the evaluator applies it to
//! every result and `promlake check rules` to every planned query, so both refuse the same rules.
//!
//! ```yaml
//! groups:
//!   - name: node
//!     interval: 30s
//!     rules:
//!       - alert: TargetDown
//!         expr: >
//!           SELECT labels, value FROM samples
//!           WHERE metric = 'up' AND value = 0 AND timestamp > now() - INTERVAL '1 minute'
//!         for: 1m
//!         labels: {severity: page}
//!         annotations: {summary: "{{ $labels.job }} on {{ $labels.instance }} is down"}
//! ```
//!
//! An `expr` that is not SQL is refused with a message saying so; PromQL will be recognised the
//! same way when it lands.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use arrow::datatypes::{DataType, Schema};

use promlake_core::config::Config;
use promlake_core::config::locate::{self, Seg};
use promlake_core::duration::PromDuration;
use promlake_core::keys::AlertGroupKey;
use promlake_core::labels::is_legacy_metric_name;
use serde::Deserialize;

use crate::error::AlertError;
use crate::template::Template;

/// A rule file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default)]
    pub groups: Vec<RuleGroup>,
}

/// A group of rules evaluated together, every `interval`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleGroup {
    pub name: String,
    /// Default: `global.evaluation_interval`.
    #[serde(default)]
    pub interval: Option<PromDuration>,
    /// At most this many alerts per alerting rule, series per recording rule (0: no limit).
    #[serde(default)]
    pub limit: u64,
    /// Labels added to every rule's output.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Accepted for compatibility (Prometheus' evaluation offset); promlake evaluates at the tick.
    #[serde(default)]
    pub query_offset: Option<PromDuration>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub record: Option<String>,
    #[serde(default)]
    pub alert: Option<String>,
    #[serde(default)]
    pub expr: String,
    #[serde(default, rename = "for")]
    pub for_: Option<PromDuration>,
    #[serde(default)]
    pub keep_firing_for: Option<PromDuration>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Rule {
    /// The alert or record name.
    pub fn name(&self) -> &str {
        self.alert
            .as_deref()
            .or(self.record.as_deref())
            .unwrap_or("")
    }

    pub fn is_alert(&self) -> bool {
        self.alert.is_some()
    }
}

/// A group loaded from a file, with its effective interval and a key naming its state log.
#[derive(Clone, Debug)]
pub struct LoadedGroup {
    /// Where the file was read (a local path or a URL), for display.
    pub file: PathBuf,
    pub group: RuleGroup,
    pub interval: PromDuration,
    /// Names its state log; the same for every replica that loads this group, however it
    /// reached the file (see [`config_name`]).
    pub key: AlertGroupKey,
}

/// A rule file that Prometheus or promlake would refuse, located.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct RuleError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// Whether `expr` is one SQL query; the error explains what it is instead.
pub fn parse_sql(expr: &str) -> Result<(), String> {
    use datafusion::sql::parser::{DFParser, Statement};
    let stmts = DFParser::parse_sql(expr).map_err(|e| {
        format!(
            "expr is not SQL (promlake evaluates SQL rule expressions; PromQL comes later): {e}"
        )
    })?;
    if stmts.len() != 1 {
        return Err(format!(
            "expr must be one SQL query, found {} statements",
            stmts.len()
        ));
    }
    match &stmts[0] {
        Statement::Statement(s)
            if matches!(
                s.as_ref(),
                datafusion::sql::sqlparser::ast::Statement::Query(_)
            ) =>
        {
            Ok(())
        }
        _ => Err("expr must be a SQL query (SELECT ...)".into()),
    }
}

fn valid_label_name(n: &str) -> bool {
    promlake_core::labels::is_legacy_label_name(n)
}

/// Checks one parsed file as promtool does; returns the problems, each with its key path.
fn check_file(f: &RuleFile) -> Vec<(Vec<Seg>, String)> {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (gi, g) in f.groups.iter().enumerate() {
        let gp = |rest: &[Seg]| {
            let mut p: Vec<Seg> = vec!["groups".into(), gi.into()];
            p.extend(rest.iter().cloned());
            p
        };
        if g.name.is_empty() {
            errs.push((gp(&["name".into()]), "groupname must not be empty".into()));
        }
        if !names.insert(g.name.clone()) {
            errs.push((
                gp(&["name".into()]),
                format!("groupname: {:?} is repeated in the same file", g.name),
            ));
        }
        if g.interval.is_some_and(|i| i.is_zero()) {
            errs.push((gp(&["interval".into()]), "interval must be above 0".into()));
        }
        for k in g.labels.keys() {
            if !valid_label_name(k) {
                errs.push((
                    gp(&["labels".into(), k.as_str().into()]),
                    format!("invalid label name: {k}"),
                ));
            }
        }
        for (ri, r) in g.rules.iter().enumerate() {
            let rp = |key: &str| gp(&["rules".into(), ri.into(), key.into()]);
            let what = format!("group {:?}, rule {} ({:?})", g.name, ri + 1, r.name());
            match (&r.record, &r.alert) {
                (None, None) => errs.push((
                    gp(&["rules".into(), ri.into()]),
                    format!("{what}: one of 'record' or 'alert' must be set"),
                )),
                (Some(_), Some(_)) => errs.push((
                    rp("alert"),
                    format!("{what}: only one of 'record' and 'alert' must be set"),
                )),
                _ => {}
            }
            if r.expr.trim().is_empty() {
                errs.push((
                    gp(&["rules".into(), ri.into()]),
                    format!("{what}: field 'expr' must be set in rule"),
                ));
            } else if let Err(e) = parse_sql(&r.expr) {
                errs.push((rp("expr"), format!("{what}: {e}")));
            }
            if let Some(rec) = &r.record {
                if !is_legacy_metric_name(rec) {
                    errs.push((
                        rp("record"),
                        format!("{what}: invalid recording rule name: {rec}"),
                    ));
                }
                if !r.annotations.is_empty() {
                    errs.push((
                        rp("annotations"),
                        format!("{what}: invalid field 'annotations' in recording rule"),
                    ));
                }
                if r.for_.is_some() {
                    errs.push((
                        rp("for"),
                        format!("{what}: invalid field 'for' in recording rule"),
                    ));
                }
                if r.keep_firing_for.is_some() {
                    errs.push((
                        rp("keep_firing_for"),
                        format!("{what}: invalid field 'keep_firing_for' in recording rule"),
                    ));
                }
            }
            if let Some(a) = &r.alert
                && a.is_empty()
            {
                errs.push((rp("alert"), format!("{what}: alert name must not be empty")));
            }
            for (section, what_kind, map) in [
                ("labels", "label", &r.labels),
                ("annotations", "annotation", &r.annotations),
            ] {
                for (k, v) in map {
                    let at = || gp(&["rules".into(), ri.into(), section.into(), k.as_str().into()]);
                    if !valid_label_name(k) || (section == "labels" && k == "__name__") {
                        errs.push((at(), format!("{what}: invalid {what_kind} name: {k}")));
                    }
                    if let Err(e) = Template::parse(v) {
                        errs.push((at(), format!("{what}: {what_kind} {k}: {e}")));
                    }
                }
            }
        }
    }
    errs
}

/// Reads and checks one rule file; every problem is returned, located.
pub fn load_file(path: &Path) -> Result<RuleFile, Vec<RuleError>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![RuleError {
            file: file.clone(),
            line: None,
            message: format!("cannot read rule file: {e}"),
        }]
    })?;
    parse_text(&text, &file)
}

/// Parses and checks rule-file text.
pub fn parse_text(text: &str, file: &str) -> Result<RuleFile, Vec<RuleError>> {
    let parsed: RuleFile = if text.trim().is_empty() {
        RuleFile { groups: Vec::new() }
    } else {
        serde_yaml::from_str(text).map_err(|e| {
            let msg = e.to_string();
            let msg = match msg.rfind(" at line ") {
                Some(i) => msg[..i].to_owned(),
                None => msg,
            };
            vec![RuleError {
                file: file.to_owned(),
                line: e.location().map(|l| l.line()),
                message: msg,
            }]
        })?
    };
    let errs = check_file(&parsed);
    if errs.is_empty() {
        return Ok(parsed);
    }
    Err(errs
        .into_iter()
        .map(|(path, message)| RuleError {
            file: file.to_owned(),
            line: locate::line_of(text, &path),
            message,
        })
        .collect())
}

/// A text type, as label names and values need.
fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

/// Whether a query result with `schema` follows the rule contract: a numeric `value` column,
/// label columns that read as text, label maps from text to text. The error says which column is
/// wrong and why.
pub fn check_output(schema: &Schema) -> Result<(), String> {
    let Ok(value) = schema.field_with_name("value") else {
        return Err("the query returns no `value` column (a rule's SQL must return a numeric column named value)".into());
    };
    if !value.data_type().is_numeric() {
        return Err(format!(
            "the `value` column is {}, not a number",
            value.data_type()
        ));
    }
    for f in schema.fields().iter().filter(|f| f.name() != "value") {
        match f.data_type() {
            DataType::Map(entries, _) => {
                let DataType::Struct(kv) = entries.data_type() else {
                    return Err(format!("column `{}` is a map without entries", f.name()));
                };
                let (Some(k), Some(v)) = (kv.first(), kv.get(1)) else {
                    return Err(format!("column `{}` is a map without entries", f.name()));
                };
                if !is_text(k.data_type()) {
                    return Err(format!(
                        "column `{}` has {} keys, but a label map must map text to text",
                        f.name(),
                        k.data_type()
                    ));
                }
                if !is_text(v.data_type()) {
                    return Err(format!(
                        "column `{}` maps to {}, but a label map must map text to text",
                        f.name(),
                        v.data_type()
                    ));
                }
            }
            t if arrow::compute::can_cast_types(t, &DataType::Utf8) => {}
            t => {
                return Err(format!(
                    "column `{}` is {t}, which cannot be a label value",
                    f.name()
                ));
            }
        }
    }
    Ok(())
}

/// [`check_output`] for `rule` of group `group`, with an error naming both.
pub fn check_rule_output(group: &str, rule: &Rule, schema: &Schema) -> Result<(), AlertError> {
    check_output(schema).map_err(|reason| AlertError::RuleOutput {
        group: group.to_owned(),
        rule: rule.name().to_owned(),
        reason,
    })
}

/// How a rule file is named in `rule_files`, spelled one way: `.` and `x/..` steps removed,
/// `/` between steps. Replicas that reach one file through different working directories or
/// URLs (a local path, `s3://bucket/prefix/`) agree on it.
pub fn config_name(name: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut absolute = false;
    for c in name.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.last().is_some_and(|p| p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..".into());
                }
            }
            Component::RootDir | Component::Prefix(_) => absolute = true,
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

/// The name a file matched by the `rule_files` entry `pattern` goes by: the entry itself, or for
/// a glob the file's path relative to the config's folder (absolute when the glob is).
fn matched_name(pattern: &str, path: &Path, base_dir: Option<&Path>) -> String {
    if !pattern.contains(['*', '?', '[']) {
        return config_name(Path::new(pattern));
    }
    let path = config_name(path);
    if Path::new(pattern).is_absolute() {
        return path;
    }
    let base = config_name(base_dir.unwrap_or(Path::new(".")));
    if base.is_empty() {
        return path;
    }
    match path.strip_prefix(&base) {
        Some(rest) if rest.starts_with('/') => rest[1..].to_owned(),
        _ => path,
    }
}

/// The key of group `name` of the rule file `file` (as [`config_name`] spells it).
pub fn group_key(file: &str, name: &str) -> AlertGroupKey {
    AlertGroupKey::new(file, name)
}

/// Every group of the config's `rule_files`: from beside the config object when the config was
/// read from object storage (names, not globs), from disk otherwise.
pub async fn load_groups_for(
    config: &Config,
    store_options: &promlake_core::store::StoreOptions,
) -> Result<Vec<LoadedGroup>, Vec<RuleError>> {
    let Some(base) = &config.base_url else {
        return load_groups(config);
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for name in &config.rule_files {
        let url = format!("{base}{name}");
        match promlake_core::config::read_url(&url, store_options).await {
            Ok(text) => match parse_text(&text, &url) {
                Ok(f) => {
                    for g in f.groups {
                        let interval = g.interval.unwrap_or(config.global.evaluation_interval);
                        let key = group_key(&config_name(Path::new(name)), &g.name);
                        out.push(LoadedGroup {
                            file: PathBuf::from(&url),
                            group: g,
                            interval,
                            key,
                        });
                    }
                }
                Err(e) => errors.extend(e),
            },
            Err(message) => errors.push(RuleError {
                file: url,
                line: None,
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Every group of the config's `rule_files` (globs relative to the config file).
pub fn load_groups(config: &Config) -> Result<Vec<LoadedGroup>, Vec<RuleError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for pattern in &config.rule_files {
        let full = config.resolve_path(pattern);
        let matches: Vec<PathBuf> = match glob::glob(&full.display().to_string()) {
            Ok(p) => p.filter_map(Result::ok).collect(),
            Err(e) => {
                errors.push(RuleError {
                    file: pattern.clone(),
                    line: None,
                    message: format!("invalid rule file pattern: {e}"),
                });
                continue;
            }
        };
        if matches.is_empty() && !pattern.contains('*') {
            errors.push(RuleError {
                file: full.display().to_string(),
                line: None,
                message: "rule file not found".into(),
            });
        }
        for path in matches {
            match load_file(&path) {
                Ok(f) => {
                    for g in f.groups {
                        let interval = g.interval.unwrap_or(config.global.evaluation_interval);
                        let key = group_key(
                            &matched_name(pattern, &path, config.base_dir.as_deref()),
                            &g.name,
                        );
                        out.push(LoadedGroup {
                            file: path.clone(),
                            group: g,
                            interval,
                            key,
                        });
                    }
                }
                Err(e) => errors.extend(e),
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "groups:\n  - name: g\n    interval: 30s\n    rules:\n      - record: job:up:sum\n        expr: SELECT labels['job'] AS job, sum(value) AS value FROM samples WHERE metric = 'up' GROUP BY 1\n      - alert: TargetDown\n        expr: >\n          SELECT labels, value FROM samples WHERE metric = 'up' AND value = 0\n        for: 1m\n        labels: {severity: page}\n        annotations: {summary: '{{ $labels.job }} down'}\n";

    #[test]
    fn a_good_file_loads() {
        let f = parse_text(GOOD, "r.yml").unwrap();
        assert_eq!(f.groups[0].rules.len(), 2);
        assert_eq!(f.groups[0].rules[1].for_.unwrap().to_string(), "1m");
    }

    #[test]
    fn promtool_checks_with_lines() {
        let bad = "groups:\n  - name: g\n    rules:\n      - record: job:up:sum\n        expr: up == 0\n      - alert: A\n        record: b\n        expr: SELECT 1 AS value\n      - record: 'bad name'\n        expr: SELECT 1 AS value\n        annotations: {a: b}\n      - alert: C\n        expr: SELECT 1 AS value\n        annotations: {s: '{{ $labels.job'}\n  - name: g\n";
        let errs = parse_text(bad, "r.yml").unwrap_err();
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let find = |s: &str| {
            msgs.iter()
                .find(|m| m.contains(s))
                .unwrap_or_else(|| panic!("{s} in {msgs:#?}"))
                .clone()
        };
        assert!(find("expr is not SQL").starts_with("r.yml:5:"));
        assert!(find("only one of 'record' and 'alert'").starts_with("r.yml:6:"));
        assert!(find("invalid recording rule name").starts_with("r.yml:9:"));
        assert!(find("invalid field 'annotations'").starts_with("r.yml:11:"));
        assert!(find("annotation s: unclosed action").starts_with("r.yml:14:"));
        assert!(find("is repeated in the same file").starts_with("r.yml:15:"));
    }

    #[test]
    fn live_rules_are_promql_and_say_so() {
        let path = promlake_core::testdata::prometheus_file("live/rules.yml");
        let errs = load_file(&path).unwrap_err();
        assert!(
            errs.iter()
                .all(|e| e.message.contains("PromQL comes later")),
            "{errs:?}"
        );
        assert_eq!(errs.len(), 3);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = parse_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: SELECT 1 AS value\n        four: 1m\n", "r.yml").unwrap_err();
        assert_eq!(e[0].line, Some(6), "{e:?}");
    }

    #[test]
    fn rule_output_contract() {
        use arrow::datatypes::{Field, Fields};
        let map = |k: DataType, v: DataType| {
            let entries = Field::new(
                "entries",
                DataType::Struct(Fields::from(vec![
                    Field::new("keys", k, false),
                    Field::new("values", v, true),
                ])),
                false,
            );
            Field::new("labels", DataType::Map(entries.into(), false), true)
        };
        let value = |t: DataType| Field::new("value", t, true);
        let check = |fields: Vec<Field>| check_output(&Schema::new(fields));
        assert_eq!(
            check(vec![
                map(DataType::Utf8, DataType::Utf8View),
                Field::new("job", DataType::Int64, true),
                value(DataType::Int32),
            ]),
            Ok(())
        );
        let err = |fields: Vec<Field>| check(fields).unwrap_err();
        assert!(err(vec![Field::new("v", DataType::Float64, true)]).contains("no `value` column"));
        assert_eq!(
            err(vec![value(DataType::Utf8)]),
            "the `value` column is Utf8, not a number"
        );
        assert_eq!(
            err(vec![
                map(DataType::Utf8, DataType::Int64),
                value(DataType::Float64)
            ]),
            "column `labels` maps to Int64, but a label map must map text to text"
        );
        assert!(
            err(vec![
                map(DataType::Int64, DataType::Utf8),
                value(DataType::Float64)
            ])
            .starts_with("column `labels` has Int64 keys")
        );
        let rule: Rule = serde_yaml::from_str("alert: A\nexpr: SELECT 1 AS value\n").unwrap();
        let e = check_rule_output("g", &rule, &Schema::new(vec![value(DataType::Utf8)]));
        assert_eq!(
            e.unwrap_err().to_string(),
            "group \"g\", rule \"A\": the `value` column is Utf8, not a number"
        );
    }

    #[test]
    fn group_keys_are_key_safe_and_distinct() {
        let a = group_key("a.yml", "my group/1");
        let b = group_key("b.yml", "my group/1");
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("my_group_1-"));
    }

    #[test]
    fn rule_files_go_by_one_spelling() {
        for (given, name) in [
            ("rules.yml", "rules.yml"),
            ("./rules.yml", "rules.yml"),
            ("sub/../rules/./a.yml", "rules/a.yml"),
            ("../shared/r.yml", "../shared/r.yml"),
            ("/etc/promlake/./r.yml", "/etc/promlake/r.yml"),
        ] {
            assert_eq!(config_name(Path::new(given)), name, "{given}");
        }
        let base = Some(Path::new("/srv/./conf"));
        assert_eq!(
            matched_name("rules/*.yml", Path::new("/srv/conf/rules/a.yml"), base),
            "rules/a.yml"
        );
        assert_eq!(
            matched_name("./rules/*.yml", Path::new("/srv/conf/./rules/a.yml"), base),
            "rules/a.yml"
        );
        assert_eq!(
            matched_name(
                "rules/*.yml",
                Path::new("rules/a.yml"),
                Some(Path::new("."))
            ),
            "rules/a.yml"
        );
        assert_eq!(
            matched_name("/abs/*.yml", Path::new("/abs/a.yml"), base),
            "/abs/a.yml"
        );
    }
}
