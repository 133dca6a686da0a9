//! The byte-level pieces both grammars share: names, quoted strings and their escapes, floats,
//! and how error messages quote what they met.

use std::borrow::Cow;

use memchr::memchr2;

use super::PResult;

pub(super) fn with_nl(line: &[u8], end: usize, has_nl: bool) -> Vec<u8> {
    let mut v = line[..end.min(line.len())].to_vec();
    if end > line.len() && has_nl {
        v.push(b'\n');
    }
    v
}

pub(super) fn go_special(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
}

#[inline]
pub(super) fn skip_ws(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
        i += 1;
    }
    i
}

#[inline]
pub(super) fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

#[inline]
pub(super) fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

#[inline]
pub(super) fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

pub(super) fn as_str(b: &[u8]) -> PResult<&str> {
    std::str::from_utf8(b).map_err(|_| format!("invalid UTF-8: {}", quote_bytes(b, false)))
}

/// A double-quoted string starting after its opening quote: the unescaped content and the index
/// after the closing quote. `None` when unterminated or not UTF-8.
pub(super) fn quoted(line: &[u8], start: usize) -> Option<(Cow<'_, str>, usize)> {
    let rest = &line[start..];
    let close = memchr2(b'"', b'\\', rest)?;
    if rest[close] == b'"' {
        let s = std::str::from_utf8(&rest[..close]).ok()?;
        return Some((Cow::Borrowed(s), start + close + 1));
    }
    // Escapes: find the real closing quote.
    let mut i = close;
    while i < rest.len() {
        match rest[i] {
            b'\\' => i += 2,
            b'"' => {
                let s = std::str::from_utf8(&rest[..i]).ok()?;
                return Some((unescape(s, true), start + i + 1));
            }
            _ => i += 1,
        }
    }
    None
}

/// Undoes the exposition escapes: `\\` and `\n`, plus `\"` in label values (and OpenMetrics help).
/// Other backslashes stay as written.
pub(super) fn unescape(s: &str, quotes: bool) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.clone().next() {
            Some('\\') => {
                out.push('\\');
                chars.next();
            }
            Some('n') => {
                out.push('\n');
                chars.next();
            }
            Some('"') if quotes => {
                out.push('"');
                chars.next();
            }
            _ => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// Prometheus' `parseFloat`: Go's `strconv.ParseFloat` without hex floats and `_` separators.
pub fn parse_float(b: &[u8]) -> Result<f64, String> {
    let s = std::str::from_utf8(b).map_err(|_| {
        format!(
            "strconv.ParseFloat: parsing {}: invalid syntax",
            quote_bytes(b, false)
        )
    })?;
    if s.contains(['p', 'P', '_']) {
        return Err("unsupported character in float".into());
    }
    let lower = s.trim_start_matches(['+', '-']);
    let ok_special = lower.eq_ignore_ascii_case("inf")
        || lower.eq_ignore_ascii_case("infinity")
        || lower.eq_ignore_ascii_case("nan");
    if !ok_special
        && !s
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"));
    }
    s.parse::<f64>()
        .map_err(|_| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))
}

/// Go's `%q` of a byte string (close enough for error messages: printable ASCII as is, the rest
/// escaped). `tokenish` is accepted for symmetry with Prometheus' token display and ignored.
pub(super) fn quote_bytes(b: &[u8], _tokenish: bool) -> String {
    let mut out = String::from("\"");
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(c as char),
            _ => {
                // Valid UTF-8 multi-byte sequences print as characters.
                let w = utf8_width(c);
                if w > 1
                    && i + w <= b.len()
                    && let Ok(s) = std::str::from_utf8(&b[i..i + w])
                {
                    out.push_str(s);
                    i += w;
                    continue;
                }
                out.push_str(&format!("\\x{c:02x}"));
            }
        }
        i += 1;
    }
    out.push('"');
    out
}

pub(super) fn utf8_width(b: u8) -> usize {
    match b {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}
