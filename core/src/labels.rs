//! Label sets as Prometheus models them: sorted by name, unique names, no empty values.
//!
//! `Labels::hash` is Prometheus' `labels.Hash()` (xxHash64 over `name 0xff value 0xff ...`), so a
//! promlake `series_id` equals the hash Prometheus computes for the same series.
//! `Labels::fingerprint` is the FNV-1a label-set fingerprint of `prometheus/common/model` that
//! Alertmanager prints as an alert's `fingerprint`.

use std::fmt;

use xxhash_rust::xxh64::Xxh64;

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";
/// Prefix of labels that only exist during target relabeling and are removed afterwards.
pub const META_PREFIX: &str = "__meta_";
/// Prefix of labels reserved for internal use; they never reach stored series.
pub const RESERVED_PREFIX: &str = "__";

const SEP: u8 = 0xff;

/// One label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// An immutable label set, sorted by name.
///
/// Stored like Prometheus' `stringlabels`: one allocation holding every name and value with
/// their lengths, so a series costs its label bytes plus a few words, not two heap strings per
/// label. Iteration yields borrowed [`LabelRef`]s.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Labels(Box<[u8]>);

/// A label borrowed from a [`Labels`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelRef<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

impl LabelRef<'_> {
    pub fn to_owned(&self) -> Label {
        Label::new(self.name, self.value)
    }
}

/// Iterator over a [`Labels`].
#[derive(Clone, Debug)]
pub struct LabelsIter<'a> {
    buf: &'a [u8],
}

impl<'a> LabelsIter<'a> {
    /// One length-prefixed string. The buffer is only built from `&str`s (`Labels::encode`), so
    /// every string is valid UTF-8; the check costs little and keeps the crate free of `unsafe`.
    fn next_str(&mut self) -> &'a str {
        let (len, rest) = read_len(self.buf);
        let (s, rest) = rest.split_at(len);
        self.buf = rest;
        std::str::from_utf8(s).unwrap_or_default()
    }
}

impl<'a> Iterator for LabelsIter<'a> {
    type Item = LabelRef<'a>;
    fn next(&mut self) -> Option<LabelRef<'a>> {
        if self.buf.is_empty() {
            return None;
        }
        let name = self.next_str();
        let value = self.next_str();
        Some(LabelRef { name, value })
    }
}

fn write_len(out: &mut Vec<u8>, mut n: usize) {
    // LEB128.
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn read_len(buf: &[u8]) -> (usize, &[u8]) {
    let mut n = 0usize;
    let mut shift = 0;
    for (i, b) in buf.iter().enumerate() {
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return (n, &buf[i + 1..]);
        }
        shift += 7;
    }
    (0, &[])
}

impl Labels {
    pub fn empty() -> Self {
        Self::default()
    }

    fn encode<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Self {
        let mut out = Vec::new();
        for (n, v) in pairs {
            write_len(&mut out, n.len());
            out.extend_from_slice(n.as_bytes());
            write_len(&mut out, v.len());
            out.extend_from_slice(v.as_bytes());
        }
        Self(out.into_boxed_slice())
    }

    /// Builds a label set from pairs in any order. Later pairs win over earlier ones with the
    /// same name; empty values are dropped, as Prometheus' `labels.Builder` does.
    pub fn from_pairs<N, V, I>(pairs: I) -> Self
    where
        N: Into<String>,
        V: Into<String>,
        I: IntoIterator<Item = (N, V)>,
    {
        let mut b = LabelsBuilder::default();
        for (n, v) in pairs {
            b.set(n.into(), v.into());
        }
        b.labels()
    }

    /// Wraps labels that are already sorted by name, unique, and without empty values.
    pub fn from_sorted_unchecked(labels: Vec<Label>) -> Self {
        debug_assert!(labels.windows(2).all(|w| w[0].name < w[1].name));
        Self::encode(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|l| l.name == name).map(|l| l.value)
    }

    /// The metric name (`__name__`), or "" when the set has none.
    pub fn metric_name(&self) -> &str {
        self.get(METRIC_NAME).unwrap_or("")
    }

    pub fn iter(&self) -> LabelsIter<'_> {
        LabelsIter { buf: &self.0 }
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Heap bytes this label set uses.
    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }

    pub fn to_vec(&self) -> Vec<Label> {
        self.iter().map(|l| l.to_owned()).collect()
    }

    /// Prometheus' `labels.Hash()`: xxHash64 (seed 0) of every `name 0xff value 0xff`.
    pub fn hash(&self) -> u64 {
        hash_pairs(self.iter().map(|l| (l.name, l.value)))
    }

    /// Alertmanager's label-set fingerprint: FNV-1a 64 over `name 0xff value 0xff` in name order.
    pub fn fingerprint(&self) -> u64 {
        fingerprint_pairs(self.iter().map(|l| (l.name, l.value)))
    }

    /// The labels without the ones whose names start with `__` (what a stored series keeps of a
    /// target's labels).
    pub fn without_reserved(&self) -> Labels {
        Self::encode(
            self.iter()
                .filter(|l| !l.name.starts_with(RESERVED_PREFIX))
                .map(|l| (l.name, l.value)),
        )
    }

    pub fn builder(&self) -> LabelsBuilder {
        LabelsBuilder::new(self.clone())
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    /// Prometheus' `labels.Compare`: label by label, name then value.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.iter().cmp(other.iter())
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Labels({self})")
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = LabelRef<'a>;
    type IntoIter = LabelsIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Display for Labels {
    /// Prometheus' notation: `{a="1", b="2"}`, with the metric name in front when present.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name();
        f.write_str(name)?;
        let mut rest = self.iter().filter(|l| l.name != METRIC_NAME).peekable();
        if rest.peek().is_none() && !name.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, l) in rest.enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}=\"{}\"", l.name, escape_label_value(l.value))?;
        }
        f.write_str("}")
    }
}

/// Escapes a label value the way the text exposition format writes it (`\\`, `\"`, `\n`).
pub fn escape_label_value(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 4);
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// xxHash64 of `name 0xff value 0xff ...` for pairs already in name order.
pub fn hash_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = Xxh64::new(0);
    for (n, v) in pairs {
        h.update(n.as_bytes());
        h.update(&[SEP]);
        h.update(v.as_bytes());
        h.update(&[SEP]);
    }
    h.digest()
}

/// FNV-1a 64 of `name 0xff value 0xff ...` for pairs already in name order.
pub fn fingerprint_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    const OFFSET: u64 = 14695981039346656037;
    const PRIME: u64 = 1099511628211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (n, v) in pairs {
        add(n.as_bytes());
        add(&[SEP]);
        add(v.as_bytes());
        add(&[SEP]);
    }
    h
}

/// A label name is valid when it is not empty (Prometheus' UTF-8 name validation).
pub fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

/// A name that the classic (pre-UTF-8) exposition format can write without quoting.
pub fn is_legacy_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// A metric name the classic exposition format can write without quoting.
pub fn is_legacy_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// A mutable view of a label set with Prometheus' `labels.Builder` semantics: setting a label to
/// the empty string deletes it.
#[derive(Clone, Debug, Default)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
}

impl LabelsBuilder {
    pub fn new(base: Labels) -> Self {
        Self {
            labels: base.to_vec(),
        }
    }

    /// Replaces the whole content with `base`, keeping the allocation.
    pub fn reset(&mut self, base: &Labels) {
        self.labels.clear();
        self.labels.extend(base.iter().map(|l| l.to_owned()));
    }

    /// Makes room for `n` more labels.
    pub fn reserve(&mut self, n: usize) {
        self.labels.reserve(n);
    }

    pub fn get(&self, name: &str) -> &str {
        match self.find(name) {
            Ok(i) => &self.labels[i].value,
            Err(_) => "",
        }
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.labels.binary_search_by(|l| l.name.as_str().cmp(name))
    }

    pub fn set(&mut self, name: String, value: String) {
        if value.is_empty() {
            self.del(&name);
            return;
        }
        match self.find(&name) {
            Ok(i) => self.labels[i].value = value,
            Err(i) => self.labels.insert(i, Label { name, value }),
        }
    }

    pub fn set_str(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.del(name);
            return;
        }
        match self.find(name) {
            Ok(i) => {
                if self.labels[i].value != value {
                    self.labels[i].value = value.to_owned()
                }
            }
            Err(i) => self.labels.insert(i, Label::new(name, value)),
        }
    }

    pub fn del(&mut self, name: &str) {
        if let Ok(i) = self.find(name) {
            self.labels.remove(i);
        }
    }

    /// Keeps the labels for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Label) -> bool) {
        self.labels.retain(|l| keep(l));
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.labels.iter()
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// A snapshot of the current labels.
    pub fn labels(&self) -> Labels {
        Labels::encode(
            self.labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str())),
        )
    }

    pub fn into_labels(self) -> Labels {
        self.labels()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_pairs_sorts_and_drops_empty() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", ""), ("b", "3")]);
        let names: Vec<_> = l.iter().map(|l| (l.name, l.value)).collect();
        assert_eq!(names, vec![("a", "1"), ("b", "3")]);
    }

    #[test]
    fn fingerprint_matches_prometheus_common() {
        // Test vector of prometheus/common `model.LabelsToSignature`.
        let l = Labels::from_pairs([("name", "garland, briggs"), ("fear", "love is not enough")]);
        assert_eq!(l.fingerprint(), 5799056148416392346);
        // Empty label set: FNV-1a offset basis.
        assert_eq!(Labels::empty().fingerprint(), 14695981039346656037);
    }

    #[test]
    fn hash_is_xxhash64_of_pairs() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        let mut raw = Vec::new();
        raw.extend_from_slice(b"__name__\xffup\xffjob\xffx\xff");
        assert_eq!(l.hash(), xxhash_rust::xxh64::xxh64(&raw, 0));
    }

    #[test]
    fn compact_storage_round_trips_and_orders_like_prometheus() {
        let long = "v".repeat(300);
        let l = Labels::from_pairs([("a", ""), ("b", long.as_str()), ("c", "é\u{0}x")]);
        assert_eq!(l.len(), 2);
        assert_eq!(l.get("b"), Some(long.as_str()));
        assert_eq!(l.get("c"), Some("é\u{0}x"));
        assert_eq!(l.get("a"), None);
        let a = Labels::from_pairs([("a", "1"), ("b", "2")]);
        let b = Labels::from_pairs([("a", "1"), ("c", "0")]);
        let c = Labels::from_pairs([("a", "10")]);
        assert!(a < b && a < c && Labels::empty() < a);
        assert!(l.heap_bytes() < 320);
    }

    #[test]
    fn display_like_prometheus() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a\"b")]);
        assert_eq!(l.to_string(), "up{job=\"a\\\"b\"}");
        assert_eq!(Labels::from_pairs([("__name__", "up")]).to_string(), "up");
    }
}
