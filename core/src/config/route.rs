//! `alerting.route` and `alerting.receivers`: Alertmanager's routing tree and webhook receivers,
//! in Alertmanager's own format, for the notifications promlake sends itself.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::PromDuration;

/// Alertmanager's defaults.
pub const DEFAULT_GROUP_WAIT: PromDuration = PromDuration::from_secs(30);
pub const DEFAULT_GROUP_INTERVAL: PromDuration = PromDuration::from_secs(300);
pub const DEFAULT_REPEAT_INTERVAL: PromDuration = PromDuration::from_secs(4 * 3600);

/// A label matcher: `name="value"`, `name!="value"`, `name=~"regex"`, `name!~"regex"`.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, String> {
        let re = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("invalid regex {value:?}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Self {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            re,
        })
    }

    /// Whether a label value (empty when the label is absent) matches.
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRe => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

impl std::str::FromStr for Matcher {
    type Err = String;
    /// Alertmanager's matcher syntax: `name op value`, the value quoted or not.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let pos = s
            .find(['=', '!'])
            .ok_or_else(|| format!("matcher {s:?} has no operator (=, !=, =~, !~)"))?;
        let name = s[..pos].trim();
        let rest = &s[pos..];
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (MatchOp::Re, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (MatchOp::NotRe, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (MatchOp::Ne, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (MatchOp::Eq, v)
        } else {
            return Err(format!("matcher {s:?} has no operator (=, !=, =~, !~)"));
        };
        if name.is_empty() {
            return Err(format!("matcher {s:?} has no label name"));
        }
        let value = value.trim();
        let value = if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            serde_json::from_str::<String>(value).map_err(|e| format!("matcher {s:?}: {e}"))?
        } else {
            value.to_owned()
        };
        Matcher::new(name, op, &value)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        };
        write!(f, "{}{op}{:?}", self.name, self.value)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A node of the routing tree (Alertmanager's `route`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Receiver of the alerts this route takes (inherited from the parent when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// Labels that split alerts into notification groups (`[...]` groups by every label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<PromDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<PromDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<PromDuration>,
    /// Alerts this route takes: every matcher must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<Matcher>,
    /// Older forms of `matchers`: equality and regex matchers by label.
    #[serde(default, rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub match_eq: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_re: BTreeMap<String, String>,
    /// Keep looking at the following sibling routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
}

impl RouteConfig {
    /// Every matcher of the route, `match` and `match_re` included.
    pub fn all_matchers(&self) -> Result<Vec<Matcher>, String> {
        let mut m = self.matchers.clone();
        for (k, v) in &self.match_eq {
            m.push(Matcher::new(k, MatchOp::Eq, v)?);
        }
        for (k, v) in &self.match_re {
            m.push(Matcher::new(k, MatchOp::Re, v)?);
        }
        Ok(m)
    }
}

/// A receiver (Alertmanager's `receivers` entry); promlake sends webhooks.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_configs: Vec<WebhookConfig>,
}

/// A webhook with Alertmanager's payload (version 4).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Notify about resolved alerts (default true, as Alertmanager).
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// At most this many alerts per notification (0: all).
    #[serde(default)]
    pub max_alerts: u64,
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse_like_alertmanager() {
        let m: Matcher = "severity=\"page\"".parse().unwrap();
        assert_eq!(
            (m.name.as_str(), m.op, m.value.as_str()),
            ("severity", MatchOp::Eq, "page")
        );
        assert!(m.matches("page") && !m.matches("pager"));
        let m: Matcher = "alertname =~ \"Disk.*|Node\"".parse().unwrap();
        assert!(m.matches("DiskFull") && m.matches("Node") && !m.matches("NodeX"));
        let m: Matcher = "team!=ops".parse().unwrap();
        assert!(m.matches("") && !m.matches("ops"));
        assert!("novalue".parse::<Matcher>().is_err());
        assert!("a=~\"(\"".parse::<Matcher>().is_err());
    }
}
