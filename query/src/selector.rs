//! Series selectors as `match[]` takes them (`up`, `{__name__=~"job:.*"}`,
//! `http_requests_total{job="api", code!="200"}`): the grammar of Prometheus'
//! `parser.ParseMetricSelector`, with its error messages and positions, so that a client sees
//! the same `1:12: parse error: ...` from promlake as from Prometheus.
//!
//! A selector is an optional metric name followed by optional braces of matchers; nothing else
//! (no `offset`, `@`, ranges, functions, or `or` between matchers). As in Prometheus, a selector
//! whose matchers all match the empty string (`{}`, `{job=~".*"}`) selects every series.

use promql_parser::label::{MatchOp, Matcher};
use regex::Regex;

use promlake_core::labels::METRIC_NAME;

/// A selector that does not parse: Prometheus' message and the byte offset it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
    /// `line:column` (1-based), as Prometheus prints it.
    pub position: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: parse error: {}", self.position, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses one selector into its matchers (the metric name as a `__name__` matcher first).
pub fn parse(input: &str) -> Result<Vec<Matcher>, ParseError> {
    Parser {
        input,
        pos: 0,
        in_braces: false,
    }
    .selector()
    .map_err(|(offset, message)| ParseError {
        offset,
        position: position(input, offset),
        message,
    })
}

fn position(input: &str, offset: usize) -> String {
    let before = &input[..offset.min(input.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    format!("{line}:{}", offset - line_start + 1)
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A metric or label name; `metric` when it contains a colon.
    Ident {
        metric: bool,
    },
    /// `offset`, `by`, `bool`, ...: shown as `<offset>`.
    Keyword,
    /// `sum`, `topk`, ...: shown as `<aggr:sum>`.
    Aggregator,
    /// `-`, `and`, `@`, ...: shown as `<op:->`.
    Operator,
    /// `=`, `!=`, `=~`, `!~` inside braces.
    MatchOp,
    Number,
    Duration,
    /// A quoted string; the token's value is the unquoted text.
    Str,
    /// `(`, `)`, `[`, `]`, `,`, `{`, `}`: shown quoted.
    Punct,
    Eof,
    /// The lexer's own error: its message.
    Error,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    /// The source text of the token.
    text: String,
    /// The unquoted value of a string.
    value: String,
    offset: usize,
}

impl Token {
    /// How Prometheus names an unexpected token (`identifier "x"`, `<op:->`, `"("`).
    fn describe(&self) -> String {
        match self.kind {
            Kind::Ident { metric: false } => format!("identifier {}", go_quote(&self.text)),
            Kind::Ident { metric: true } => format!("metric identifier {}", go_quote(&self.text)),
            Kind::Keyword => format!("<{}>", self.text),
            Kind::Aggregator => format!("<aggr:{}>", self.text),
            Kind::Operator | Kind::MatchOp => format!("<op:{}>", self.text),
            Kind::Number => format!("number {}", short_quote(&self.text)),
            Kind::Duration => format!("duration {}", short_quote(&self.text)),
            Kind::Str => format!("string {}", short_quote(&self.text)),
            Kind::Punct => go_quote(&self.text),
            Kind::Eof => "end of input".into(),
            Kind::Error => self.text.clone(),
        }
    }
}

/// Go's `%q`.
fn go_quote(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%.10q...` for long values, `%q` otherwise (how Prometheus shows literals).
fn short_quote(s: &str) -> String {
    if s.chars().count() > 10 {
        format!("{}...", go_quote(&s.chars().take(10).collect::<String>()))
    } else {
        go_quote(s)
    }
}

const AGGREGATORS: &[&str] = &[
    "avg",
    "bottomk",
    "count",
    "count_values",
    "group",
    "max",
    "min",
    "quantile",
    "stddev",
    "stdvar",
    "sum",
    "topk",
];
const WORD_OPERATORS: &[&str] = &["and", "or", "unless", "atan2"];
const KEYWORDS: &[&str] = &[
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "start",
    "end",
];
/// Words that can name a metric although they are keywords elsewhere (Prometheus'
/// `metric_identifier` rule).
const NAME_KEYWORDS: &[&str] = &[
    "by", "offset", "without", "start", "end", "and", "or", "unless",
];

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    in_braces: bool,
}

type PResult<T> = Result<T, (usize, String)>;

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn token(&self, kind: Kind, start: usize) -> Token {
        Token {
            kind,
            text: self.input[start..self.pos].to_owned(),
            value: String::new(),
            offset: start,
        }
    }

    fn error(&self, message: String, offset: usize) -> Token {
        Token {
            kind: Kind::Error,
            text: message,
            value: String::new(),
            offset,
        }
    }

    fn eat_while(&mut self, f: impl Fn(char) -> bool) {
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    fn next(&mut self) -> Token {
        self.eat_while(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
        let start = self.pos;
        let Some(c) = self.peek() else {
            return if self.in_braces {
                self.error("unexpected end of input inside braces".into(), start)
            } else {
                self.token(Kind::Eof, start)
            };
        };
        if self.in_braces {
            self.next_in_braces(c, start)
        } else {
            self.next_outside(c, start)
        }
    }

    fn next_in_braces(&mut self, c: char, start: usize) -> Token {
        self.pos += c.len_utf8();
        match c {
            c if c.is_ascii_alphabetic() || c == '_' => {
                self.eat_while(|c| c.is_ascii_alphanumeric() || c == '_');
                self.token(Kind::Ident { metric: false }, start)
            }
            ',' => self.token(Kind::Punct, start),
            '}' => {
                self.in_braces = false;
                self.token(Kind::Punct, start)
            }
            '"' | '\'' | '`' => self.string(c, start),
            '=' => {
                if self.peek() == Some('~') {
                    self.pos += 1;
                }
                self.token(Kind::MatchOp, start)
            }
            '!' => match self.peek() {
                Some('~' | '=') => {
                    self.pos += 1;
                    self.token(Kind::MatchOp, start)
                }
                Some(n) => self.error(
                    format!("unexpected character after '!' inside braces: {}", rune(n)),
                    start,
                ),
                None => self.error("unexpected end of input inside braces".into(), self.pos),
            },
            '{' => self.error("unexpected left brace '{'".into(), start),
            c => self.error(
                format!("unexpected character inside braces: {}", rune(c)),
                start,
            ),
        }
    }

    fn next_outside(&mut self, c: char, start: usize) -> Token {
        self.pos += c.len_utf8();
        match c {
            '{' => {
                self.in_braces = true;
                self.token(Kind::Punct, start)
            }
            '(' | ')' | '[' | ']' | ',' => self.token(Kind::Punct, start),
            '"' | '\'' | '`' => self.string(c, start),
            '+' | '-' | '*' | '/' | '%' | '^' | '@' => self.token(Kind::Operator, start),
            '=' | '!' | '<' | '>' => {
                if self.peek() == Some('=') {
                    self.pos += 1;
                } else if c == '!' {
                    return self.error(format!("unexpected character: {}", rune(c)), start);
                }
                self.token(Kind::Operator, start)
            }
            c if c.is_ascii_digit()
                || (c == '.' && self.peek().is_some_and(|n| n.is_ascii_digit())) =>
            {
                self.eat_while(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
                let text = &self.input[start..self.pos];
                let kind = if text.parse::<f64>().is_ok() || text.starts_with("0x") {
                    Kind::Number
                } else {
                    Kind::Duration
                };
                self.token(kind, start)
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                self.eat_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
                let word = self.input[start..self.pos].to_ascii_lowercase();
                let kind = if AGGREGATORS.contains(&word.as_str()) {
                    Kind::Aggregator
                } else if WORD_OPERATORS.contains(&word.as_str()) {
                    Kind::Operator
                } else if KEYWORDS.contains(&word.as_str()) {
                    Kind::Keyword
                } else if word == "inf" || word == "nan" {
                    Kind::Number
                } else {
                    Kind::Ident {
                        metric: word.contains(':'),
                    }
                };
                self.token(kind, start)
            }
            c => self.error(format!("unexpected character: {}", rune(c)), start),
        }
    }

    /// A quoted string, unescaped as Go's `strconv.Unquote` does; raw strings (backquotes) take
    /// their text as is.
    fn string(&mut self, quote: char, start: usize) -> Token {
        let mut value = String::new();
        loop {
            let Some(c) = self.peek() else {
                let what = if quote == '`' {
                    "raw string"
                } else {
                    "quoted string"
                };
                return self.error(format!("unterminated {what}"), start);
            };
            self.pos += c.len_utf8();
            if c == quote {
                break;
            }
            if quote == '`' {
                value.push(c);
                continue;
            }
            match c {
                '\n' => return self.error("unterminated quoted string".into(), start),
                '\\' => match self.escape(quote) {
                    Ok(ch) => value.push(ch),
                    Err(message) => return self.error(message, start),
                },
                c => value.push(c),
            }
        }
        let mut t = self.token(Kind::Str, start);
        t.value = value;
        t
    }

    fn escape(&mut self, quote: char) -> Result<char, String> {
        let Some(c) = self.peek() else {
            return Err("escape sequence not terminated".into());
        };
        self.pos += c.len_utf8();
        let simple = match c {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' => Some('\\'),
            c if c == quote => Some(c),
            _ => None,
        };
        if let Some(ch) = simple {
            return Ok(ch);
        }
        let (digits, radix) = match c {
            '0'..='7' => {
                self.pos -= 1;
                (3, 8)
            }
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            c => {
                return Err(format!(
                    "unknown escape sequence U+{:04X} {}",
                    c as u32,
                    rune(c)
                ));
            }
        };
        let mut n: u32 = 0;
        for _ in 0..digits {
            let Some(d) = self.peek().and_then(|d| d.to_digit(radix)) else {
                return Err(match self.peek() {
                    Some(d) => format!(
                        "illegal character U+{:04X} {} in escape sequence",
                        d as u32,
                        rune(d)
                    ),
                    None => "escape sequence not terminated".into(),
                });
            };
            self.pos += 1;
            n = n * radix + d;
        }
        char::from_u32(n).ok_or_else(|| "escape sequence is an invalid Unicode code point".into())
    }

    fn selector(mut self) -> PResult<Vec<Matcher>> {
        let mut matchers = Vec::new();
        let mut name: Option<String> = None;
        let mut t = self.next();
        let names_metric = match &t.kind {
            Kind::Ident { .. } => true,
            Kind::Keyword | Kind::Operator => NAME_KEYWORDS.contains(&t.text.as_str()),
            Kind::Aggregator => true,
            _ => false,
        };
        if names_metric {
            name = Some(t.text.clone());
            t = self.next();
        } else if !(t.kind == Kind::Punct && t.text == "{") {
            return Err(unexpected(&t, "", ""));
        }
        if t.kind == Kind::Punct && t.text == "{" {
            self.matchers(&mut matchers)?;
            t = self.next();
        }
        if t.kind != Kind::Eof {
            return Err(unexpected(&t, "", ""));
        }
        if let Some(name) = name {
            matchers.insert(0, Matcher::new(MatchOp::Equal, METRIC_NAME, &name));
        }
        Ok(matchers)
    }

    /// The matchers after `{`, up to and including `}`.
    fn matchers(&mut self, out: &mut Vec<Matcher>) -> PResult<()> {
        let mut t = self.next();
        if t.kind == Kind::Punct && t.text == "}" {
            return Ok(());
        }
        loop {
            let Kind::Ident { .. } = t.kind else {
                return Err(unexpected(&t, "label matching", "identifier or \"}\""));
            };
            let label = t;
            let op = self.next();
            if op.kind != Kind::MatchOp {
                return Err(unexpected(&op, "label matching", "label matching operator"));
            }
            let value = self.next();
            if value.kind != Kind::Str {
                return Err(unexpected(&value, "label matching", "string"));
            }
            out.push(matcher(&label, &op.text, &value.value)?);
            t = self.next();
            match (&t.kind, t.text.as_str()) {
                (Kind::Punct, "}") => return Ok(()),
                (Kind::Punct, ",") => {
                    t = self.next();
                    if t.kind == Kind::Punct && t.text == "}" {
                        return Ok(());
                    }
                }
                _ => return Err(unexpected(&t, "label matching", "\",\" or \"}\"")),
            }
        }
    }
}

fn matcher(label: &Token, op: &str, value: &str) -> PResult<Matcher> {
    let regex = |v: &str| {
        Regex::new(&format!("^(?s:{v})$")).map_err(|e| {
            let detail = e.to_string();
            let last = detail.lines().last().unwrap_or("").trim();
            let last = last.strip_prefix("error: ").unwrap_or(last);
            (
                label.offset,
                format!("error parsing regexp: {last}: `^(?:{v})$`"),
            )
        })
    };
    let op = match op {
        "=" => MatchOp::Equal,
        "!=" => MatchOp::NotEqual,
        "=~" => MatchOp::Re(regex(value)?),
        _ => MatchOp::NotRe(regex(value)?),
    };
    Ok(Matcher::new(op, &label.text, value))
}

fn unexpected(t: &Token, context: &str, expected: &str) -> (usize, String) {
    if t.kind == Kind::Error {
        return (t.offset, t.text.clone());
    }
    let mut m = format!("unexpected {}", t.describe());
    if !context.is_empty() {
        m.push_str(" in ");
        m.push_str(context);
    }
    if !expected.is_empty() {
        m.push_str(", expected ");
        m.push_str(expected);
    }
    (t.offset, m)
}

/// Go's `%q` of a rune.
fn rune(c: char) -> String {
    match c {
        '\'' => "'\\''".into(),
        '\\' => "'\\\\'".into(),
        '\n' => "'\\n'".into(),
        '\t' => "'\\t'".into(),
        c if c.is_control() => format!("'\\x{:02x}'", c as u32),
        c => format!("'{c}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Vec<String> {
        parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .iter()
            .map(|m| m.to_string())
            .collect()
    }

    #[test]
    fn selectors_parse() {
        assert_eq!(ok("up"), ["__name__=\"up\""]);
        assert_eq!(ok("up{job=\"x\",}"), ["__name__=\"up\"", "job=\"x\""]);
        assert_eq!(ok("{__name__=~\"job:.*\"}"), ["__name__=~\"job:.*\""]);
        assert_eq!(ok("job:up:sum"), ["__name__=\"job:up:sum\""]);
        assert_eq!(ok("{}"), Vec::<String>::new());
        assert_eq!(ok("up{job='x'}"), ["__name__=\"up\"", "job=\"x\""]);
        assert_eq!(ok("up{job=`a\\b`}"), ["__name__=\"up\"", "job=\"a\\\\b\""]);
        assert_eq!(
            ok(" up { job !~ \"a|b\" } "),
            ["__name__=\"up\"", "job!~\"a|b\""]
        );
        // Keywords that Prometheus' grammar lets name a metric.
        assert_eq!(ok("sum"), ["__name__=\"sum\""]);
        assert_eq!(ok("offset{a=\"b\"}"), ["__name__=\"offset\"", "a=\"b\""]);
        let m = parse("{job=~\"a.b\"}").unwrap();
        assert!(m[0].is_match("a\nb"), "`.` matches a newline");
        assert!(!m[0].is_match("xa\nb"), "anchored");
    }

    /// What Prometheus 2.42's `/federate` answered for these inputs (`tests/query.rs` compares
    /// every one with a live Prometheus).
    #[test]
    fn errors_read_as_prometheus_writes_them() {
        for (input, want) in [
            ("-", "1:1: parse error: unexpected <op:->"),
            (
                "up{",
                "1:4: parse error: unexpected end of input inside braces",
            ),
            (
                "up{job=\"x\"",
                "1:11: parse error: unexpected end of input inside braces",
            ),
            ("rate(up[5m])", "1:5: parse error: unexpected \"(\""),
            (
                "{__name__=\"a\" or __name__=\"b\"}",
                "1:15: parse error: unexpected identifier \"or\" in label matching, expected \",\" or \"}\"",
            ),
            ("up offset 5m", "1:4: parse error: unexpected <offset>"),
            ("up[5m]", "1:3: parse error: unexpected \"[\""),
            ("1 + 1", "1:1: parse error: unexpected number \"1\""),
            (
                "up{job=x}",
                "1:8: parse error: unexpected identifier \"x\" in label matching, expected string",
            ),
            (
                "up{job}",
                "1:7: parse error: unexpected \"}\" in label matching, expected label matching operator",
            ),
            (
                "up{,}",
                "1:4: parse error: unexpected \",\" in label matching, expected identifier or \"}\"",
            ),
            (
                "up{job=\"\\q\"}",
                "1:8: parse error: unknown escape sequence U+0071 'q'",
            ),
            (
                "up{job=\"x\"}}",
                "1:12: parse error: unexpected character: '}'",
            ),
            ("foo bar", "1:5: parse error: unexpected identifier \"bar\""),
            (
                "{job=\"a\"} offset 5m",
                "1:11: parse error: unexpected <offset>",
            ),
            ("sum(up)", "1:4: parse error: unexpected \"(\""),
            ("", "1:1: parse error: unexpected end of input"),
            ("123", "1:1: parse error: unexpected number \"123\""),
            (
                "up{job=\"a\"} == 1",
                "1:13: parse error: unexpected <op:==>",
            ),
            ("on", "1:1: parse error: unexpected <on>"),
            ("bool{a=\"b\"}", "1:1: parse error: unexpected <bool>"),
            ("inf", "1:1: parse error: unexpected number \"inf\""),
            (
                "up{job!a}",
                "1:7: parse error: unexpected character after '!' inside braces: 'a'",
            ),
            (
                "up{job=\"a\" {",
                "1:12: parse error: unexpected left brace '{'",
            ),
            (
                "up{1}",
                "1:4: parse error: unexpected character inside braces: '1'",
            ),
            (
                "x\"a\"",
                "1:2: parse error: unexpected string \"\\\"a\\\"\"",
            ),
            (
                "up{job=\"x}",
                "1:8: parse error: unterminated quoted string",
            ),
        ] {
            assert_eq!(
                parse(input).map(|_| ()).unwrap_err().to_string(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn bad_regexes_are_errors() {
        let e = parse("up{job!~\"(\"}").unwrap_err().to_string();
        assert!(
            e.starts_with("1:4: parse error: error parsing regexp: "),
            "{e}"
        );
        assert!(e.ends_with(": `^(?:()$`"), "{e}");
    }
}
