//! `relabel_configs` as Prometheus writes and validates them. The regex is compiled anchored,
//! `^(?s:REGEX)$`, exactly as Prometheus compiles it. Applying the rules is the scrape crate's job.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The relabel actions Prometheus knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Prometheus lower-cases the action before matching.
        Ok(match s.to_ascii_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            "" => return Err("relabel action cannot be empty".to_owned()),
            other => return Err(format!("unknown relabel action {other:?}")),
        })
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The default relabel regex, as written.
pub const DEFAULT_REGEX: &str = "(.*)";

/// A relabel regex: the user's text and its anchored compilation.
#[derive(Clone, Debug)]
pub struct RelabelRegex {
    source: String,
    compiled: Regex,
}

impl RelabelRegex {
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        let compiled = Regex::new(&format!("^(?s:{source})$"))?;
        Ok(Self {
            source: source.to_owned(),
            compiled,
        })
    }

    /// The regex as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The anchored regex.
    pub fn regex(&self) -> &Regex {
        &self.compiled
    }

    pub fn is_default(&self) -> bool {
        self.source == DEFAULT_REGEX
    }
}

impl Default for RelabelRegex {
    fn default() -> Self {
        Self::new(DEFAULT_REGEX).expect("the default regex compiles")
    }
}

impl PartialEq for RelabelRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl<'de> Deserialize<'de> for RelabelRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RelabelRegex::new(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid regex {s:?}: {}",
                e.to_string().lines().last().unwrap_or_default()
            ))
        })
    }
}

impl Serialize for RelabelRegex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

fn default_separator() -> String {
    ";".to_owned()
}

fn default_replacement() -> String {
    "$1".to_owned()
}

/// One relabeling step, with Prometheus' defaults for absent keys.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` to form the input of the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_labels: Option<Vec<String>>,
    /// Joins the source label values (default `;`).
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Anchored regular expression matched against the joined value (default `(.*)`).
    #[serde(default)]
    pub regex: RelabelRegex,
    /// Modulus for `hashmod`.
    #[serde(default)]
    pub modulus: u64,
    /// Label written by `replace`, `hashmod`, `lowercase`, `uppercase`, compared by
    /// `keepequal`/`dropequal`.
    #[serde(default)]
    pub target_label: String,
    /// Replacement with `$1`/`${name}` references (default `$1`).
    #[serde(default = "default_replacement")]
    pub replacement: String,
    /// What to do (default `replace`).
    #[serde(default)]
    pub action: Action,
}

impl Default for RelabelConfig {
    fn default() -> Self {
        Self {
            source_labels: None,
            separator: default_separator(),
            regex: RelabelRegex::default(),
            modulus: 0,
            target_label: String::new(),
            replacement: default_replacement(),
            action: Action::Replace,
        }
    }
}

/// A relabel config that Prometheus would refuse, with the key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelabelConfigError {
    /// The key the problem is about (`modulus`, `target_label`, ...).
    pub key: &'static str,
    pub message: String,
}

impl RelabelConfig {
    /// The source labels (empty when none were given).
    pub fn sources(&self) -> &[String] {
        self.source_labels.as_deref().unwrap_or(&[])
    }

    /// Prometheus' `relabel.Config.Validate`, with UTF-8 label-name validation.
    pub fn validate(&self) -> Result<(), RelabelConfigError> {
        use Action::*;
        let err = |key, message: String| Err(RelabelConfigError { key, message });
        let a = self.action;
        if a == HashMod && self.modulus == 0 {
            return err(
                "modulus",
                "relabel configuration for hashmod requires non-zero modulus".into(),
            );
        }
        let needs_target = matches!(
            a,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        );
        if needs_target && self.target_label.is_empty() {
            return err(
                "target_label",
                format!("relabel configuration for {a} action requires 'target_label' value"),
            );
        }
        if matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual)
            && self.replacement != default_replacement()
        {
            return err(
                "replacement",
                format!("'replacement' can not be set for {a} action"),
            );
        }
        if a == LabelMap && self.replacement.is_empty() {
            return err(
                "replacement",
                format!(
                    "{:?} is invalid 'replacement' for {a} action",
                    self.replacement
                ),
            );
        }
        if matches!(a, KeepEqual | DropEqual)
            && (!self.regex.is_default()
                || self.modulus != 0
                || self.separator != default_separator()
                || self.replacement != default_replacement())
        {
            return err(
                "action",
                format!(
                    "{a} action requires only 'source_labels' and `target_label`, and no other fields"
                ),
            );
        }
        if matches!(a, LabelDrop | LabelKeep)
            && (self.source_labels.is_some()
                || !self.target_label.is_empty()
                || self.modulus != 0
                || self.separator != default_separator()
                || self.replacement != default_replacement())
        {
            return err(
                "action",
                format!("{a} action requires only 'regex', and no other fields"),
            );
        }
        if let Some(bad) = self.sources().iter().find(|s| s.is_empty()) {
            return err(
                "source_labels",
                format!("{bad:?} is not a valid label name"),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(y: &str) -> RelabelConfig {
        serde_yaml::from_str(y).unwrap()
    }

    #[test]
    fn defaults_are_prometheus_defaults() {
        let c = rc("source_labels: [a]\ntarget_label: b\n");
        assert_eq!(c.action, Action::Replace);
        assert_eq!(c.separator, ";");
        assert_eq!(c.regex.as_str(), "(.*)");
        assert_eq!(c.replacement, "$1");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn regex_is_anchored_and_dot_matches_newline() {
        let r = RelabelRegex::new("f|o").unwrap();
        assert!(!r.regex().is_match("foo"));
        assert!(r.regex().is_match("f"));
        assert!(RelabelRegex::new("a.*b").unwrap().regex().is_match("a\nb"));
    }

    #[test]
    fn prometheus_validation_rules() {
        let e = rc("action: hashmod\nsource_labels: [a]\ntarget_label: t\n")
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "modulus");
        let e = rc("action: replace\nsource_labels: [a]\n")
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "target_label");
        let e = rc("action: labeldrop\nregex: a\ntarget_label: x\n")
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "action");
        let e = rc("action: lowercase\nsource_labels: [a]\ntarget_label: b\nreplacement: x\n")
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "replacement");
        assert!(
            rc("action: KEEP\nsource_labels: [a]\nregex: x\n")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn bad_regex_and_action_are_deserialisation_errors() {
        assert!(serde_yaml::from_str::<RelabelConfig>("regex: '(('\n").is_err());
        assert!(serde_yaml::from_str::<RelabelConfig>("action: frobnicate\n").is_err());
        assert!(serde_yaml::from_str::<RelabelConfig>("modulos: 3\n").is_err());
    }
}
