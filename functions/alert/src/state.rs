//! Alert state, as Prometheus' `AlertingRule` keeps it, and the state of a rule group after a
//! tick: what the create-only log stores, so that any replica can continue from it.

use std::collections::{BTreeMap, HashMap};

use promlake_core::labels::Labels;
use serde::{Deserialize, Serialize};

use crate::error::AlertError;
use crate::rules::Rule;
use crate::template::{TemplateData, expand};

/// How long a resolved alert is kept (and sent as resolved), as Prometheus' `resolvedRetention`.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Pending,
    Firing,
    Inactive,
}

/// One alert of a rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Final labels: the result's, the group's, the rule's (templated), `alertname`.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertStatus,
    pub value: f64,
    pub active_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_since: Option<i64>,
    /// Last time it was sent to the Alertmanagers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent_at: Option<i64>,
}

impl Alert {
    pub fn fingerprint(&self) -> u64 {
        Labels::from_pairs(self.labels.iter().map(|(k, v)| (k.clone(), v.clone()))).fingerprint()
    }

    /// Prometheus' `needsSending` with its resend delay.
    pub fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertStatus::Pending {
            return false;
        }
        if let Some(r) = self.resolved_at
            && self.last_sent_at.is_none_or(|s| r > s)
        {
            return true;
        }
        self.last_sent_at.is_none_or(|s| s + resend_delay_ms <= ts)
    }
}

/// Health of a rule after its last evaluation, as `/api/v1/rules` reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleHealth {
    pub name: String,
    /// `ok`, `err` or `unknown`.
    pub health: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub evaluation_seconds: f64,
    /// Alerting rules only.
    #[serde(default)]
    pub alerts: Vec<Alert>,
}

/// What a rule group's log holds for one tick.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    pub version: u32,
    pub tick_ms: i64,
    /// The replica whose evaluation this is.
    pub replica: String,
    pub rules: Vec<RuleHealth>,
    /// Notification groups of promlake's own routing (Alertmanager semantics).
    #[serde(default)]
    pub dispatch: Vec<DispatchGroup>,
    /// Notifications due this tick, written before they are sent.
    #[serde(default)]
    pub intents: Vec<crate::notify::Intent>,
    /// Notifications of earlier ticks found unmarked when this tick was evaluated: those
    /// `taken_over` (their sender's deadline passed: it crashed, or the receiver was down) the
    /// owner of this tick sends; the others still belong to their sender.
    #[serde(default)]
    pub carried: Vec<CarriedIntent>,
}

/// The last notification of a group to one webhook (Alertmanager's notification log entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyEntry {
    pub at_ms: i64,
    pub firing: Vec<u64>,
    pub resolved: Vec<u64>,
}

/// A notification group of promlake's own routing ([`crate::dispatch`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DispatchGroup {
    /// Alertmanager's group key: `<route key>:<group labels>`.
    pub key: String,
    pub receiver: String,
    pub group_labels: BTreeMap<String, String>,
    pub next_flush_ms: i64,
    /// One entry per webhook of the receiver.
    pub sent: Vec<Option<NotifyEntry>>,
}

/// A notification decided at an earlier tick and not known to be delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedIntent {
    pub tick_ms: i64,
    /// Its deadline is that of the replica it belongs to now.
    pub intent: crate::notify::Intent,
    /// Whether the owner of the tick carrying it took it over (and sends it).
    #[serde(default)]
    pub taken_over: bool,
}

impl GroupState {
    pub fn encode(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec(self).expect("state serialises"))
    }

    pub fn decode(b: &[u8]) -> Result<GroupState, String> {
        let s: GroupState =
            serde_json::from_slice(b).map_err(|e| format!("not a rule group state: {e}"))?;
        if s.version != 1 {
            return Err(format!("rule group state version {} is not 1", s.version));
        }
        Ok(s)
    }

    /// Every alert of every rule.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.rules.iter().flat_map(|r| r.alerts.iter())
    }
}

/// One row of a rule's result: its labels and value.
pub type SeriesRow = (BTreeMap<String, String>, f64);

/// Everything a template and the labels of a rule's output need besides the result.
pub struct EvalContext<'a> {
    pub ts: i64,
    pub group_labels: &'a BTreeMap<String, String>,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    pub limit: u64,
}

/// One evaluation of an alerting rule over `results` (label set, value), from `prev`.
pub fn eval_alerting(
    rule: &Rule,
    prev: &[Alert],
    results: Vec<SeriesRow>,
    cx: &EvalContext<'_>,
) -> Result<Vec<Alert>, AlertError> {
    let name = rule.alert.as_deref().unwrap_or_default();
    let hold = rule.for_.map(|d| d.as_millis() as i64).unwrap_or(0);
    let keep_for = rule
        .keep_firing_for
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut active: HashMap<u64, Alert> =
        prev.iter().map(|a| (a.fingerprint(), a.clone())).collect();
    let mut seen: HashMap<u64, ()> = HashMap::new();
    for (mut labels, value) in results {
        labels.remove("__name__");
        let data = TemplateData {
            labels: labels.clone(),
            value,
            external_labels: cx.external_labels.clone(),
            external_url: cx.external_url.to_owned(),
        };
        let mut final_labels = labels;
        for (k, v) in cx.group_labels {
            final_labels.insert(k.clone(), v.clone());
        }
        for (k, v) in &rule.labels {
            let v = expand(v, &data);
            if v.is_empty() {
                final_labels.remove(k);
            } else {
                final_labels.insert(k.clone(), v);
            }
        }
        final_labels.insert("alertname".into(), name.to_owned());
        let annotations: BTreeMap<String, String> = rule
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), expand(v, &data)))
            .collect();
        let a = Alert {
            labels: final_labels,
            annotations,
            state: AlertStatus::Pending,
            value,
            active_at: cx.ts,
            fired_at: None,
            resolved_at: None,
            keep_firing_since: None,
            last_sent_at: None,
        };
        let fp = a.fingerprint();
        if seen.insert(fp, ()).is_some() {
            return Err(AlertError::DuplicateAlertLabels);
        }
        match active.get_mut(&fp) {
            Some(existing) if existing.state != AlertStatus::Inactive => {
                existing.value = a.value;
                existing.annotations = a.annotations;
            }
            _ => {
                active.insert(fp, a);
            }
        }
    }
    let mut out = Vec::new();
    for (fp, mut a) in active {
        if !seen.contains_key(&fp) {
            let mut keep_firing = false;
            if a.state == AlertStatus::Firing && keep_for > 0 {
                let since = *a.keep_firing_since.get_or_insert(cx.ts);
                keep_firing = cx.ts - since < keep_for;
            }
            if !keep_firing {
                if a.state == AlertStatus::Pending
                    || a.resolved_at
                        .is_some_and(|r| cx.ts - r > RESOLVED_RETENTION_MS)
                {
                    continue;
                }
                if a.state != AlertStatus::Inactive {
                    a.state = AlertStatus::Inactive;
                    a.resolved_at = Some(cx.ts);
                }
                out.push(a);
                continue;
            }
        } else {
            a.keep_firing_since = None;
        }
        if a.state == AlertStatus::Pending && cx.ts - a.active_at >= hold {
            a.state = AlertStatus::Firing;
            a.fired_at = Some(cx.ts);
        }
        out.push(a);
    }
    let pending_or_firing = out
        .iter()
        .filter(|a| a.state != AlertStatus::Inactive)
        .count() as u64;
    if cx.limit > 0 && pending_or_firing > cx.limit {
        return Err(AlertError::AlertLimit {
            limit: cx.limit,
            count: pending_or_firing,
        });
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

/// The `ALERTS` and `ALERTS_FOR_STATE` series of a rule's alerts at `ts`.
pub fn alert_series(alerts: &[Alert]) -> Vec<(Labels, f64)> {
    let mut out = Vec::new();
    for a in alerts.iter().filter(|a| a.state != AlertStatus::Inactive) {
        let state = if a.state == AlertStatus::Firing {
            "firing"
        } else {
            "pending"
        };
        let mut l: Vec<(String, String)> = a
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        l.push(("__name__".into(), "ALERTS".into()));
        l.push(("alertstate".into(), state.into()));
        out.push((Labels::from_pairs(l), 1.0));
        let mut l: Vec<(String, String)> = a
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        l.push(("__name__".into(), "ALERTS_FOR_STATE".into()));
        out.push((Labels::from_pairs(l), a.active_at as f64 / 1000.0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(y: &str) -> Rule {
        serde_yaml::from_str(y).unwrap()
    }

    fn cx(ts: i64) -> EvalContext<'static> {
        static EMPTY: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
        let e = EMPTY.get_or_init(BTreeMap::new);
        EvalContext {
            ts,
            group_labels: e,
            external_labels: e,
            external_url: "",
            limit: 0,
        }
    }

    fn res(job: &str, v: f64) -> Vec<SeriesRow> {
        vec![(BTreeMap::from([("job".to_string(), job.to_string())]), v)]
    }

    #[test]
    fn pending_then_firing_then_resolved() {
        let r = rule(
            "alert: Down\nexpr: SELECT 1 AS value\nfor: 30s\nlabels: {severity: page}\nannotations: {summary: '{{ $labels.job }} is {{ $value }}'}\n",
        );
        let a = eval_alerting(&r, &[], res("api", 0.0), &cx(0)).unwrap();
        assert_eq!(a[0].state, AlertStatus::Pending);
        assert_eq!(a[0].labels["alertname"], "Down");
        assert_eq!(a[0].labels["severity"], "page");
        assert_eq!(a[0].annotations["summary"], "api is 0");
        let a = eval_alerting(&r, &a, res("api", 0.0), &cx(15_000)).unwrap();
        assert_eq!(a[0].state, AlertStatus::Pending);
        let a = eval_alerting(&r, &a, res("api", 0.0), &cx(30_000)).unwrap();
        assert_eq!(a[0].state, AlertStatus::Firing);
        assert_eq!(a[0].fired_at, Some(30_000));
        assert_eq!(a[0].active_at, 0);
        let a = eval_alerting(&r, &a, vec![], &cx(45_000)).unwrap();
        assert_eq!(a[0].state, AlertStatus::Inactive);
        assert_eq!(a[0].resolved_at, Some(45_000));
        // Kept for 15 minutes, then dropped.
        let a = eval_alerting(&r, &a, vec![], &cx(45_000 + RESOLVED_RETENTION_MS)).unwrap();
        assert_eq!(a.len(), 1);
        let a = eval_alerting(&r, &a, vec![], &cx(46_000 + RESOLVED_RETENTION_MS)).unwrap();
        assert!(a.is_empty());
    }

    #[test]
    fn pending_alerts_that_stop_vanish_and_keep_firing_for_holds() {
        let r = rule("alert: A\nexpr: SELECT 1 AS value\nfor: 1m\n");
        let a = eval_alerting(&r, &[], res("x", 1.0), &cx(0)).unwrap();
        assert!(
            eval_alerting(&r, &a, vec![], &cx(15_000))
                .unwrap()
                .is_empty()
        );
        let r = rule("alert: A\nexpr: SELECT 1 AS value\nkeep_firing_for: 30s\n");
        let a = eval_alerting(&r, &[], res("x", 1.0), &cx(0)).unwrap();
        assert_eq!(a[0].state, AlertStatus::Firing);
        let a = eval_alerting(&r, &a, vec![], &cx(15_000)).unwrap();
        assert_eq!(a[0].state, AlertStatus::Firing, "kept firing");
        let a = eval_alerting(&r, &a, vec![], &cx(40_000)).unwrap();
        assert_eq!(a[0].state, AlertStatus::Firing);
        let a = eval_alerting(&r, &a, vec![], &cx(46_000)).unwrap();
        assert_eq!(a[0].state, AlertStatus::Inactive);
    }

    #[test]
    fn duplicates_and_limits_are_rule_errors() {
        let r = rule("alert: A\nexpr: SELECT 1 AS value\n");
        let dup = vec![res("x", 1.0)[0].clone(), res("x", 2.0)[0].clone()];
        assert!(matches!(
            eval_alerting(&r, &[], dup, &cx(0)).unwrap_err(),
            AlertError::DuplicateAlertLabels
        ));
        let mut c = cx(0);
        c.limit = 1;
        let two = vec![res("x", 1.0)[0].clone(), res("y", 1.0)[0].clone()];
        let e = eval_alerting(&r, &[], two, &c).unwrap_err();
        assert!(matches!(e, AlertError::AlertLimit { limit: 1, count: 2 }));
        assert_eq!(e.to_string(), "exceeded limit of 1 with 2 alerts");
    }

    #[test]
    fn needs_sending_like_prometheus() {
        let r = rule("alert: A\nexpr: SELECT 1 AS value\n");
        let mut a = eval_alerting(&r, &[], res("x", 1.0), &cx(0))
            .unwrap()
            .remove(0);
        assert!(a.needs_sending(0, 60_000));
        a.last_sent_at = Some(0);
        assert!(!a.needs_sending(30_000, 60_000));
        assert!(a.needs_sending(60_000, 60_000));
        a.resolved_at = Some(70_000);
        a.last_sent_at = Some(60_000);
        assert!(a.needs_sending(75_000, 60_000));
    }
}
