//! Finds the line of a key path (`scrape_configs[1].relabel_configs[0].modulus`) in block-style
//! YAML, so that errors found after deserialisation can still name a line. Flow-style values
//! (`{...}`, `[...]`) are leaves: a path into one resolves to the line of its key.

/// One step of a path into a YAML document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Self {
        Seg::Key(s.to_owned())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// Renders a path as `a[0].b`.
pub fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

struct Frame {
    indent: usize,
    seg: Seg,
    is_seq: bool,
}

/// The 1-based line where `path` (or its nearest enclosing node) starts, if found.
pub fn line_of(text: &str, path: &[Seg]) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None; // (matched segments, line)
    let mut stack: Vec<Frame> = Vec::new();
    let mut consider = |stack: &[Frame], line: usize| {
        let cur: Vec<&Seg> = stack.iter().map(|f| &f.seg).collect();
        if cur.len() > path.len() {
            return;
        }
        if cur.iter().zip(path.iter()).all(|(a, b)| *a == b) {
            let n = cur.len();
            if best.is_none_or(|(m, _)| n > m) {
                best = Some((n, line));
            }
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = raw.trim_start_matches(' ');
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let mut col = raw.len() - trimmed.len();
        let mut rest = trimmed;
        // Sequence items, possibly several on one line (`- - a`).
        while rest == "-" || rest.starts_with("- ") {
            while stack.last().is_some_and(|f| f.indent > col) {
                stack.pop();
            }
            match stack.last_mut() {
                Some(top) if top.is_seq && top.indent == col => {
                    if let Seg::Index(n) = &mut top.seg {
                        *n += 1;
                    }
                }
                _ => stack.push(Frame {
                    indent: col,
                    seg: Seg::Index(0),
                    is_seq: true,
                }),
            }
            consider(&stack, line_no);
            let after = rest[1..].trim_start_matches(' ');
            col += rest.len() - after.len();
            rest = after;
            if rest.is_empty() {
                break;
            }
        }
        if let Some(key) = mapping_key(rest) {
            while stack.last().is_some_and(|f| f.indent >= col) {
                stack.pop();
            }
            stack.push(Frame {
                indent: col,
                seg: Seg::Key(key),
                is_seq: false,
            });
            consider(&stack, line_no);
        }
    }
    best.map(|(_, line)| line)
}

/// The key of a `key: value` or `key:` line, unquoted.
fn mapping_key(s: &str) -> Option<String> {
    if s.starts_with('{') || s.starts_with('[') {
        return None;
    }
    let (key, quoted) = if let Some(q @ ('"' | '\'')) = s.chars().next() {
        let end = s[1..].find(q)? + 1;
        (&s[1..end], &s[end + 1..])
    } else {
        let idx = find_colon(s)?;
        return Some(s[..idx].trim_end().to_owned());
    };
    let after = quoted.trim_start();
    (after.starts_with(':')).then(|| key.to_owned())
}

fn find_colon(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len()).find(|&i| b[i] == b':' && (i + 1 == b.len() || b[i + 1] == b' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    const Y: &str = "\
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: a
    relabel_configs:
      - source_labels: [__address__]
        action: keep
      - action: hashmod
        modulus: 0
  - job_name: b
    static_configs:
    - targets: ['x:1']
      labels: {a: b}
";

    fn p(segs: &[Seg]) -> Option<usize> {
        line_of(Y, segs)
    }

    #[test]
    fn finds_nested_keys_and_items() {
        use Seg::*;
        assert_eq!(p(&["global".into(), "scrape_interval".into()]), Some(2));
        assert_eq!(p(&["scrape_configs".into(), Index(0)]), Some(4));
        assert_eq!(
            p(&[
                "scrape_configs".into(),
                Index(0),
                "relabel_configs".into(),
                Index(1),
                "modulus".into()
            ]),
            Some(9)
        );
        assert_eq!(
            p(&["scrape_configs".into(), Index(1), "job_name".into()]),
            Some(10)
        );
        assert_eq!(
            p(&[
                "scrape_configs".into(),
                Index(1),
                "static_configs".into(),
                Index(0),
                "labels".into(),
                "a".into()
            ]),
            Some(13)
        );
    }

    #[test]
    fn renders_paths() {
        assert_eq!(
            render(&["a".into(), Seg::Index(2), "b".into()]),
            "a[2].b".to_string()
        );
    }
}
