//! Alert templates as Prometheus writes them in `labels` and `annotations`: a subset of Go's
//! `text/template` with Prometheus' data and helpers.
//!
//! Supported: `{{ $labels.x }}` / `{{ .Labels.x }}`, `{{ $value }}` / `{{ .Value }}`,
//! `{{ $externalLabels.x }}`, `{{ $externalURL }}`, string and number literals, pipelines
//! (`{{ $value | humanize }}`), calls (`{{ printf "%.2f" $value }}`), parentheses,
//! `{{ if ... }} ... {{ else }} ... {{ end }}`, trim markers (`{{-`, `-}}`), comments, and the
//! functions `humanize`, `humanize1024`, `humanizeDuration`, `humanizePercentage`,
//! `humanizeTimestamp`, `printf`, `toUpper`, `toLower`, `title`, `reReplaceAll`, `match`, `eq`,
//! `ne`, `lt`, `le`, `gt`, `ge`, `and`, `or`, `not`, `len`. A missing label is the empty string,
//! as in Prometheus. `range` and `with` are not supported: a template using them is refused when
//! the rule file is checked.

use std::collections::BTreeMap;
use std::fmt::Write;

use promlake_core::value::go_float;

/// Values inside a template.
#[derive(Clone, Debug, PartialEq)]
enum V {
    Str(String),
    Num(f64),
    Bool(bool),
    Map(BTreeMap<String, String>),
}

impl V {
    fn truthy(&self) -> bool {
        match self {
            V::Str(s) => !s.is_empty(),
            V::Num(n) => *n != 0.0,
            V::Bool(b) => *b,
            V::Map(m) => !m.is_empty(),
        }
    }

    fn render(&self) -> String {
        match self {
            V::Str(s) => s.clone(),
            V::Num(n) => go_float(*n),
            V::Bool(b) => b.to_string(),
            V::Map(m) => {
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", parts.join(" "))
            }
        }
    }

    fn num(&self) -> Result<f64, String> {
        match self {
            V::Num(n) => Ok(*n),
            V::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("can't convert {s:?} to float")),
            V::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
            V::Map(_) => Err("can't convert a map to float".into()),
        }
    }
}

/// The data a template sees.
#[derive(Clone, Debug, Default)]
pub struct TemplateData {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
}

#[derive(Clone, Debug, PartialEq)]
struct Pipeline(Vec<Command>);

#[derive(Clone, Debug, PartialEq)]
enum Command {
    Call(String, Vec<Arg>),
    Arg(Arg),
}

#[derive(Clone, Debug, PartialEq)]
enum Arg {
    Str(String),
    Num(f64),
    Field(Vec<String>),
    Var(String, Vec<String>),
    Paren(Pipeline),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

const FUNCS: &[&str] = &[
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "printf",
    "toUpper",
    "toLower",
    "title",
    "reReplaceAll",
    "match",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "len",
];

/// The header Prometheus puts in front of every alert template.
const VARS: &[&str] = &["labels", "value", "externalLabels", "externalURL"];

impl Template {
    /// Parses a template; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts: Vec<(bool, String)> = Vec::new(); // (is_action, content)
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let mut lit = rest[..open].to_owned();
            let mut after = &rest[open + 2..];
            if after.starts_with('-') && after[1..].starts_with([' ', '\t', '\n']) {
                lit = lit.trim_end().to_owned();
                after = &after[1..];
            }
            let close = after
                .find("}}")
                .ok_or("unclosed action: '{{' without '}}'")?;
            let mut inner = &after[..close];
            let mut next = &after[close + 2..];
            if inner.ends_with('-') && inner[..inner.len() - 1].ends_with([' ', '\t', '\n']) {
                inner = &inner[..inner.len() - 1];
                next = next.trim_start();
            }
            if !lit.is_empty() {
                parts.push((false, lit));
            }
            let inner = inner.trim();
            if !(inner.starts_with("/*") && inner.ends_with("*/")) {
                parts.push((true, inner.to_owned()));
            }
            rest = next;
        }
        if !rest.is_empty() {
            parts.push((false, rest.to_owned()));
        }
        let mut it = parts.into_iter().peekable();
        let nodes = parse_nodes(&mut it, false)?.0;
        Ok(Template { nodes })
    }

    /// Expands the template.
    pub fn render(&self, data: &TemplateData) -> Result<String, String> {
        let mut out = String::new();
        render_nodes(&self.nodes, data, &mut out)?;
        Ok(out)
    }
}

/// Expands `text` with `data`; on failure the result says so, as Prometheus does.
pub fn expand(text: &str, data: &TemplateData) -> String {
    if !text.contains("{{") {
        return text.to_owned();
    }
    match Template::parse(text).and_then(|t| t.render(data)) {
        Ok(s) => s,
        Err(e) => format!("<error expanding template: {e}>"),
    }
}

type Parts = std::iter::Peekable<std::vec::IntoIter<(bool, String)>>;

/// Nodes until `end`/`else` (when nested); returns the nodes and what stopped them.
fn parse_nodes(it: &mut Parts, nested: bool) -> Result<(Vec<Node>, Option<String>), String> {
    let mut nodes = Vec::new();
    while let Some((action, content)) = it.next() {
        if !action {
            nodes.push(Node::Text(content));
            continue;
        }
        let first = content.split_whitespace().next().unwrap_or("");
        match first {
            "end" | "else" => {
                if !nested {
                    return Err(format!("unexpected {{{{{first}}}}}"));
                }
                return Ok((nodes, Some(first.to_owned())));
            }
            "if" => {
                let cond = parse_pipeline(content[2..].trim())?;
                let (then, stop) = parse_nodes(it, true)?;
                let els = match stop.as_deref() {
                    Some("else") => {
                        let (e, stop) = parse_nodes(it, true)?;
                        if stop.as_deref() != Some("end") {
                            return Err("missing {{end}} after {{else}}".into());
                        }
                        e
                    }
                    Some("end") => Vec::new(),
                    _ => return Err("missing {{end}} for {{if}}".into()),
                };
                nodes.push(Node::If(cond, then, els));
            }
            "range" | "with" | "define" | "template" | "block" => {
                return Err(format!(
                    "{{{{{first}}}}} is not supported in promlake templates"
                ));
            }
            _ => nodes.push(Node::Action(parse_pipeline(&content)?)),
        }
    }
    if nested {
        return Err("missing {{end}}".into());
    }
    Ok((nodes, None))
}

fn tokenize(s: &str) -> Result<Vec<String>, String> {
    let mut toks = Vec::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '`' {
            let mut j = i + 1;
            while j < b.len() && b[j] != c {
                if c == '"' && b[j] == '\\' {
                    j += 1;
                }
                j += 1;
            }
            if j >= b.len() {
                return Err(format!("unterminated string in {s:?}"));
            }
            toks.push(b[i..=j].iter().collect());
            i = j + 1;
        } else if c == '(' || c == ')' || c == '|' {
            toks.push(c.to_string());
            i += 1;
        } else {
            let mut j = i;
            while j < b.len() && !b[j].is_whitespace() && !matches!(b[j], '(' | ')' | '|') {
                j += 1;
            }
            toks.push(b[i..j].iter().collect());
            i = j;
        }
    }
    Ok(toks)
}

fn parse_pipeline(s: &str) -> Result<Pipeline, String> {
    let toks = tokenize(s)?;
    let mut pos = 0;
    let p = pipeline(&toks, &mut pos)?;
    if pos != toks.len() {
        return Err(format!("unexpected {:?} in {s:?}", toks[pos]));
    }
    Ok(p)
}

fn pipeline(toks: &[String], pos: &mut usize) -> Result<Pipeline, String> {
    let mut cmds = vec![command(toks, pos)?];
    while *pos < toks.len() && toks[*pos] == "|" {
        *pos += 1;
        cmds.push(command(toks, pos)?);
    }
    Ok(Pipeline(cmds))
}

fn command(toks: &[String], pos: &mut usize) -> Result<Command, String> {
    let t = toks.get(*pos).ok_or("empty command")?.clone();
    if FUNCS.contains(&t.as_str()) {
        *pos += 1;
        let mut args = Vec::new();
        while *pos < toks.len() && toks[*pos] != "|" && toks[*pos] != ")" {
            args.push(arg(toks, pos)?);
        }
        return Ok(Command::Call(t, args));
    }
    let a = arg(toks, pos)?;
    Ok(Command::Arg(a))
}

fn arg(toks: &[String], pos: &mut usize) -> Result<Arg, String> {
    let t = toks.get(*pos).ok_or("missing argument")?.clone();
    *pos += 1;
    if t == "(" {
        let p = pipeline(toks, pos)?;
        if toks.get(*pos).map(String::as_str) != Some(")") {
            return Err("missing ')'".into());
        }
        *pos += 1;
        return Ok(Arg::Paren(p));
    }
    if t.starts_with('"') {
        return serde_json::from_str::<String>(&t)
            .map(Arg::Str)
            .map_err(|e| format!("bad string {t}: {e}"));
    }
    if let Some(raw) = t.strip_prefix('`') {
        return Ok(Arg::Str(raw.trim_end_matches('`').to_owned()));
    }
    if let Some(v) = t.strip_prefix('$') {
        let mut parts = v.split('.');
        let name = parts.next().unwrap_or("").to_owned();
        if !VARS.contains(&name.as_str()) {
            return Err(format!("undefined variable ${name}"));
        }
        return Ok(Arg::Var(name, parts.map(str::to_owned).collect()));
    }
    if let Some(f) = t.strip_prefix('.') {
        let fields: Vec<String> = if f.is_empty() {
            Vec::new()
        } else {
            f.split('.').map(str::to_owned).collect()
        };
        match fields.first().map(String::as_str) {
            None | Some("Labels" | "Value" | "ExternalLabels" | "ExternalURL") => {
                return Ok(Arg::Field(fields));
            }
            Some(other) => return Err(format!("can't evaluate field {other}")),
        }
    }
    if let Ok(n) = t.parse::<f64>() {
        return Ok(Arg::Num(n));
    }
    if t == "true" || t == "false" {
        return Ok(Arg::Str(t));
    }
    Err(format!("function {t:?} not defined"))
}

fn lookup(base: V, path: &[String]) -> Result<V, String> {
    let mut v = base;
    for p in path {
        v = match v {
            V::Map(m) => V::Str(m.get(p).cloned().unwrap_or_default()),
            other => return Err(format!("can't evaluate field {p} in {}", other.render())),
        };
    }
    Ok(v)
}

fn eval_arg(a: &Arg, d: &TemplateData) -> Result<V, String> {
    Ok(match a {
        Arg::Str(s) => V::Str(s.clone()),
        Arg::Num(n) => V::Num(*n),
        Arg::Paren(p) => eval_pipeline(p, d)?,
        Arg::Var(name, path) => {
            let base = match name.as_str() {
                "labels" => V::Map(d.labels.clone()),
                "value" => V::Num(d.value),
                "externalLabels" => V::Map(d.external_labels.clone()),
                _ => V::Str(d.external_url.clone()),
            };
            lookup(base, path)?
        }
        Arg::Field(path) => {
            let (base, rest) = match path.first().map(String::as_str) {
                Some("Labels") => (V::Map(d.labels.clone()), &path[1..]),
                Some("Value") => (V::Num(d.value), &path[1..]),
                Some("ExternalLabels") => (V::Map(d.external_labels.clone()), &path[1..]),
                Some("ExternalURL") => (V::Str(d.external_url.clone()), &path[1..]),
                _ => (V::Map(d.labels.clone()), &path[..]),
            };
            lookup(base, rest)?
        }
    })
}

fn eval_pipeline(p: &Pipeline, d: &TemplateData) -> Result<V, String> {
    let mut prev: Option<V> = None;
    for c in &p.0 {
        prev = Some(match c {
            Command::Arg(a) => {
                if prev.is_some() {
                    return Err("a pipeline stage must be a function".into());
                }
                eval_arg(a, d)?
            }
            Command::Call(f, args) => {
                let mut vals: Vec<V> = args
                    .iter()
                    .map(|a| eval_arg(a, d))
                    .collect::<Result<_, _>>()?;
                if let Some(p) = prev.take() {
                    vals.push(p);
                }
                call(f, &vals)?
            }
        });
    }
    prev.ok_or_else(|| "empty pipeline".into())
}

fn render_nodes(nodes: &[Node], d: &TemplateData, out: &mut String) -> Result<(), String> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&eval_pipeline(p, d)?.render()),
            Node::If(c, then, els) => {
                if eval_pipeline(c, d)?.truthy() {
                    render_nodes(then, d, out)?;
                } else {
                    render_nodes(els, d, out)?;
                }
            }
        }
    }
    Ok(())
}

fn arity(f: &str, args: &[V], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {f}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn cmp(a: &V, b: &V) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (V::Str(x), V::Str(y)) => Some(x.cmp(y)),
        _ => a.num().ok()?.partial_cmp(&b.num().ok()?),
    }
}

fn call(f: &str, a: &[V]) -> Result<V, String> {
    use std::cmp::Ordering::*;
    Ok(match f {
        "humanize" => {
            arity(f, a, 1)?;
            V::Str(humanize(a[0].num()?))
        }
        "humanize1024" => {
            arity(f, a, 1)?;
            V::Str(humanize1024(a[0].num()?))
        }
        "humanizeDuration" => {
            arity(f, a, 1)?;
            V::Str(humanize_duration(a[0].num()?))
        }
        "humanizePercentage" => {
            arity(f, a, 1)?;
            V::Str(format!("{}%", go_g(a[0].num()? * 100.0, 4)))
        }
        "humanizeTimestamp" => {
            arity(f, a, 1)?;
            let v = a[0].num()?;
            if !v.is_finite() {
                V::Str(go_g(v, 4))
            } else {
                let t = chrono::DateTime::from_timestamp_millis((v * 1000.0) as i64)
                    .unwrap_or_default();
                V::Str(t.format("%Y-%m-%d %H:%M:%S%.f +0000 UTC").to_string())
            }
        }
        "printf" => {
            let fmt = match a.first() {
                Some(V::Str(s)) => s.clone(),
                _ => return Err("printf needs a format string".into()),
            };
            V::Str(printf(&fmt, &a[1..])?)
        }
        "toUpper" => {
            arity(f, a, 1)?;
            V::Str(a[0].render().to_uppercase())
        }
        "toLower" => {
            arity(f, a, 1)?;
            V::Str(a[0].render().to_lowercase())
        }
        "title" => {
            arity(f, a, 1)?;
            let s = a[0].render();
            let mut out = String::with_capacity(s.len());
            let mut start = true;
            for c in s.chars() {
                if start && c.is_alphabetic() {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = !c.is_alphanumeric() && c != '\'';
            }
            V::Str(out)
        }
        "reReplaceAll" => {
            arity(f, a, 3)?;
            let re = regex::Regex::new(&a[0].render()).map_err(|e| e.to_string())?;
            V::Str(
                re.replace_all(&a[2].render(), a[1].render().as_str())
                    .into_owned(),
            )
        }
        "match" => {
            arity(f, a, 2)?;
            let re = regex::Regex::new(&a[0].render()).map_err(|e| e.to_string())?;
            V::Bool(re.is_match(&a[1].render()))
        }
        "eq" => {
            arity(f, a, 2)?;
            V::Bool(cmp(&a[0], &a[1]) == Some(Equal))
        }
        "ne" => {
            arity(f, a, 2)?;
            V::Bool(cmp(&a[0], &a[1]) != Some(Equal))
        }
        "lt" => {
            arity(f, a, 2)?;
            V::Bool(cmp(&a[0], &a[1]) == Some(Less))
        }
        "le" => {
            arity(f, a, 2)?;
            V::Bool(matches!(cmp(&a[0], &a[1]), Some(Less | Equal)))
        }
        "gt" => {
            arity(f, a, 2)?;
            V::Bool(cmp(&a[0], &a[1]) == Some(Greater))
        }
        "ge" => {
            arity(f, a, 2)?;
            V::Bool(matches!(cmp(&a[0], &a[1]), Some(Greater | Equal)))
        }
        "and" => a
            .iter()
            .find(|v| !v.truthy())
            .or(a.last())
            .cloned()
            .unwrap_or(V::Bool(true)),
        "or" => a
            .iter()
            .find(|v| v.truthy())
            .or(a.last())
            .cloned()
            .unwrap_or(V::Bool(false)),
        "not" => {
            arity(f, a, 1)?;
            V::Bool(!a[0].truthy())
        }
        "len" => {
            arity(f, a, 1)?;
            V::Num(match &a[0] {
                V::Map(m) => m.len() as f64,
                v => v.render().chars().count() as f64,
            })
        }
        _ => return Err(format!("function {f:?} not defined")),
    })
}

/// Go's `%.<prec>g`.
pub fn go_g(v: f64, prec: usize) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return "0".into();
    }
    let prec = prec.max(1);
    let e = format!("{:.*e}", prec - 1, v);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let mant = if mant.contains('.') {
            mant.trim_end_matches('0').trim_end_matches('.')
        } else {
            mant
        };
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    }
}

fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g(v, 4))
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g(v, 4))
}

fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", go_g(v, 4));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {h}h {m}m {s}s");
        }
        if h != 0 {
            return format!("{sign}{h}h {m}m {s}s");
        }
        if m != 0 {
            return format!("{sign}{m}m {s}s");
        }
        return format!("{sign}{}s", go_g(v, 4));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g(v, 4))
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %f %g %e %q %x %%`, with width and
/// precision.
fn printf(fmt: &str, args: &[V]) -> Result<String, String> {
    let mut out = String::new();
    let mut args = args.iter();
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        i += 1;
        if i < chars.len() && chars[i] == '%' {
            out.push('%');
            i += 1;
            continue;
        }
        let mut flags = String::new();
        while i < chars.len() && matches!(chars[i], '-' | '+' | ' ' | '0' | '#') {
            flags.push(chars[i]);
            i += 1;
        }
        let mut width = String::new();
        while i < chars.len() && chars[i].is_ascii_digit() {
            width.push(chars[i]);
            i += 1;
        }
        let mut prec: Option<usize> = None;
        if i < chars.len() && chars[i] == '.' {
            i += 1;
            let mut p = String::new();
            while i < chars.len() && chars[i].is_ascii_digit() {
                p.push(chars[i]);
                i += 1;
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let verb = *chars
            .get(i)
            .ok_or("printf: format ends in the middle of a verb")?;
        i += 1;
        let Some(a) = args.next() else {
            write!(out, "%!{verb}(MISSING)").ok();
            continue;
        };
        let s = match verb {
            's' | 'v' => a.render(),
            'q' => format!("{:?}", a.render()),
            'd' => format!("{}", a.num()?.trunc() as i64),
            'f' | 'F' => format!("{:.*}", prec.unwrap_or(6), a.num()?),
            'e' => {
                let s = format!("{:.*e}", prec.unwrap_or(6), a.num()?);
                let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                let e: i32 = e.parse().unwrap_or(0);
                format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
            }
            'g' => match prec {
                Some(p) => go_g(a.num()?, p),
                None => go_float(a.num()?),
            },
            'x' => format!("{:x}", a.num()? as i64),
            other => format!("%!{other}({})", a.render()),
        };
        let w: usize = width.parse().unwrap_or(0);
        if s.chars().count() < w {
            let pad = w - s.chars().count();
            if flags.contains('-') {
                out.push_str(&s);
                out.push_str(&" ".repeat(pad));
            } else if flags.contains('0') && !matches!(verb, 's' | 'q' | 'v') {
                out.push_str(&"0".repeat(pad));
                out.push_str(&s);
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(&s);
            }
        } else {
            out.push_str(&s);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> TemplateData {
        TemplateData {
            labels: BTreeMap::from([
                ("job".into(), "api".into()),
                ("instance".into(), "h:1".into()),
            ]),
            value: 1234567.0,
            external_labels: BTreeMap::from([("cluster".into(), "dc01".into())]),
            external_url: "http://promlake:9090".into(),
        }
    }

    fn r(t: &str) -> String {
        Template::parse(t).unwrap().render(&data()).unwrap()
    }

    #[test]
    fn prometheus_variables_and_fields() {
        assert_eq!(
            r("{{ $labels.job }} down on {{ $labels.instance }}"),
            "api down on h:1"
        );
        assert_eq!(r("{{ .Labels.job }}/{{ $labels.missing }}/"), "api//");
        assert_eq!(r("{{ $value }}"), "1.234567e+06");
        assert_eq!(r("{{ .Value }}"), "1.234567e+06");
        assert_eq!(
            r("{{ $externalLabels.cluster }} {{ $externalURL }}"),
            "dc01 http://promlake:9090"
        );
    }

    #[test]
    fn helpers_format_like_go() {
        assert_eq!(r("{{ $value | humanize }}"), "1.235M");
        assert_eq!(r("{{ humanize 0.0012 }}"), "1.2m");
        assert_eq!(r("{{ humanize 1234.5 }}"), "1.234k");
        assert_eq!(r("{{ humanize 12 }}"), "12");
        assert_eq!(r("{{ humanize1024 2048 }}"), "2ki");
        assert_eq!(r("{{ humanizeDuration 3661 }}"), "1h 1m 1s");
        assert_eq!(r("{{ humanizeDuration 90061 }}"), "1d 1h 1m 1s");
        assert_eq!(r("{{ humanizeDuration 1.5 }}"), "1.5s");
        assert_eq!(r("{{ humanizeDuration 0.25 }}"), "250ms");
        assert_eq!(r("{{ humanizePercentage 0.1234 }}"), "12.34%");
        assert_eq!(r("{{ printf \"%.2f\" $value }}"), "1234567.00");
        assert_eq!(
            r("{{ printf \"%s is %d%%\" $labels.job 42 }}"),
            "api is 42%"
        );
        assert_eq!(r("{{ $labels.job | toUpper }}"), "API");
        assert_eq!(r("{{ title \"hello world\" }}"), "Hello World");
        assert_eq!(r("{{ reReplaceAll \":.*\" \"\" $labels.instance }}"), "h");
        assert_eq!(go_g(123456.0, 4), "1.235e+05");
        assert_eq!(go_g(0.5, 4), "0.5");
    }

    #[test]
    fn conditionals_and_trimming() {
        assert_eq!(
            r("{{ if gt $value 1000.0 }}big{{ else }}small{{ end }}"),
            "big"
        );
        assert_eq!(r("{{ if eq $labels.job \"db\" }}db{{ end }}!"), "!");
        assert_eq!(r("a  {{- \"b\" -}}  c"), "abc");
        assert_eq!(r("x{{/* a comment */}}y"), "xy");
        assert_eq!(
            r("{{ (printf \"%s-%s\" $labels.job \"x\") | toUpper }}"),
            "API-X"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "{{ $labels.job ",
            "{{ nosuch $value }}",
            "{{ range $labels }}x{{ end }}",
            "{{ if $value }}x",
            "{{ $bogus }}",
            "{{ end }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        assert!(expand("{{ printf }}", &data()).starts_with("<error expanding template:"));
    }
}
