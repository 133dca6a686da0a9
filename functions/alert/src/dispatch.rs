//! Notification routing and grouping with Alertmanager's semantics, for promlake's own receivers:
//! the routing tree (first matching child unless `continue`), grouping by `group_by`, the first
//! notification after `group_wait`, later ones at most every `group_interval`, repeats after
//! `repeat_interval`, resolved notifications per webhook's `send_resolved`, and Alertmanager's
//! webhook payload (version 4).
//!
//! The state of every notification group ([`DispatchGroup`]) lives in the rule group's tick
//! state, so whichever replica owns the next tick continues it. Notifications happen at
//! evaluation ticks, so timings are rounded up to the evaluation interval. Alerts are grouped
//! within their rule group.

use std::collections::{BTreeMap, BTreeSet};

use promlake_core::config::route::{
    DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT, DEFAULT_REPEAT_INTERVAL,
};
use promlake_core::config::{Matcher, ReceiverConfig, RouteConfig};
use serde::Serialize;

use crate::notify::{Intent, IntentKind};
use crate::state::{Alert, AlertStatus, DispatchGroup, NotifyEntry};

#[derive(Clone, Debug)]
enum GroupBy {
    Labels(Vec<String>),
    All,
}

/// A node of the routing tree with inherited options filled in.
#[derive(Clone, Debug)]
pub struct Route {
    key: String,
    matchers: Vec<Matcher>,
    receiver: String,
    group_by: GroupBy,
    group_wait: i64,
    group_interval: i64,
    repeat_interval: i64,
    cont: bool,
    children: Vec<Route>,
}

impl Route {
    /// The tree of `alerting.route` (validated by the config).
    pub fn new(cfg: &RouteConfig) -> Route {
        Self::build(cfg, None)
    }

    fn build(cfg: &RouteConfig, parent: Option<&Route>) -> Route {
        let matchers = cfg.all_matchers().unwrap_or_default();
        let mut ms: Vec<String> = matchers.iter().map(|m| m.to_string()).collect();
        ms.sort();
        let own = format!("{{{}}}", ms.join(","));
        let key = match parent {
            Some(p) => format!("{}/{own}", p.key),
            None => own,
        };
        let group_by = match &cfg.group_by {
            Some(g) if g.iter().any(|l| l == "...") => GroupBy::All,
            Some(g) => GroupBy::Labels(g.clone()),
            None => parent
                .map(|p| p.group_by.clone())
                .unwrap_or(GroupBy::Labels(Vec::new())),
        };
        let ms_of = |own: Option<promlake_core::duration::PromDuration>,
                     inherited: Option<i64>,
                     default: promlake_core::duration::PromDuration| {
            own.map(|d| d.as_millis() as i64)
                .or(inherited)
                .unwrap_or(default.as_millis() as i64)
        };
        let mut r = Route {
            key,
            matchers,
            receiver: cfg
                .receiver
                .clone()
                .or_else(|| parent.map(|p| p.receiver.clone()))
                .unwrap_or_default(),
            group_by,
            group_wait: ms_of(
                cfg.group_wait,
                parent.map(|p| p.group_wait),
                DEFAULT_GROUP_WAIT,
            ),
            group_interval: ms_of(
                cfg.group_interval,
                parent.map(|p| p.group_interval),
                DEFAULT_GROUP_INTERVAL,
            ),
            repeat_interval: ms_of(
                cfg.repeat_interval,
                parent.map(|p| p.repeat_interval),
                DEFAULT_REPEAT_INTERVAL,
            ),
            cont: cfg.continue_matching,
            children: Vec::new(),
        };
        r.children = cfg
            .routes
            .iter()
            .map(|c| Self::build(c, Some(&r)))
            .collect();
        r
    }

    /// Alertmanager's `Route.Match`: the routes that take an alert.
    pub fn matches<'a>(&'a self, labels: &BTreeMap<String, String>) -> Vec<&'a Route> {
        if !self
            .matchers
            .iter()
            .all(|m| m.matches(labels.get(&m.name).map(String::as_str).unwrap_or("")))
        {
            return Vec::new();
        }
        let mut all = Vec::new();
        for c in &self.children {
            let m = c.matches(labels);
            let matched = !m.is_empty();
            all.extend(m);
            if matched && !c.cont {
                break;
            }
        }
        if all.is_empty() {
            all.push(self);
        }
        all
    }

    fn group_labels(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }
}

/// A label set as Alertmanager prints it: `{a="1", b="2"}`.
pub fn labels_string(l: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// Go's RFC 3339 with trimmed fractional seconds, as Alertmanager writes times.
pub fn rfc3339(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    let frac = ms.rem_euclid(1000);
    if frac == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        let f = format!("{frac:03}");
        format!(
            "{}.{}Z",
            t.format("%Y-%m-%dT%H:%M:%S"),
            f.trim_end_matches('0')
        )
    }
}

/// The labels an alert leaves with: its own and the external labels it lacks.
pub fn outgoing_labels(a: &Alert, external: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut l = a.labels.clone();
    for (k, v) in external {
        l.entry(k.clone()).or_insert_with(|| v.clone());
    }
    l
}

/// Alertmanager's fingerprint of a label set (`model.LabelSet.Fingerprint`).
pub fn label_fingerprint(l: &BTreeMap<String, String>) -> u64 {
    promlake_core::labels::fingerprint_pairs(l.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Alertmanager's `DedupStage.needsUpdate`.
fn needs_update(
    entry: Option<&NotifyEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat_ms: i64,
    now: i64,
) -> bool {
    let Some(e) = entry else {
        return !firing.is_empty();
    };
    let prev_firing: BTreeSet<u64> = e.firing.iter().copied().collect();
    if !firing.is_subset(&prev_firing) {
        return true;
    }
    if firing.is_empty() {
        return !e.firing.is_empty();
    }
    let prev_resolved: BTreeSet<u64> = e.resolved.iter().copied().collect();
    if send_resolved && !resolved.is_subset(&prev_resolved) {
        return true;
    }
    e.at_ms < now - repeat_ms
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert<'a> {
    status: &'static str,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL")]
    generator_url: String,
    fingerprint: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookPayload<'a> {
    receiver: &'a str,
    status: &'static str,
    alerts: Vec<WebhookAlert<'a>>,
    group_labels: &'a BTreeMap<String, String>,
    common_labels: BTreeMap<String, String>,
    common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    external_url: &'a str,
    version: &'static str,
    group_key: &'a str,
    truncated_alerts: u64,
}

fn common(maps: &[&BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let Some(first) = maps.first() else {
        return BTreeMap::new();
    };
    first
        .iter()
        .filter(|(k, v)| maps.iter().all(|m| m.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Where generator URLs point: the SQL endpoint with the rule's query.
pub fn generator_url(external_url: &str, expr: &str) -> String {
    // As Prometheus' generator URLs (Go's url.QueryEscape: a space is '+').
    let q: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    format!(
        "{}/api/v1/sql?format=table&query={q}",
        external_url.trim_end_matches('/')
    )
}

/// An alert with what notifications need beside its state.
pub struct Outgoing<'a> {
    pub alert: &'a Alert,
    pub labels: BTreeMap<String, String>,
    pub generator_url: String,
}

/// The alerts of one notification group: its route, group labels and members.
type Members<'r, 'a> = (&'r Route, BTreeMap<String, String>, Vec<&'a Outgoing<'a>>);

/// The next notification groups and the webhook notifications due at `now`.
pub fn dispatch(
    root: &Route,
    receivers: &[ReceiverConfig],
    prev: &[DispatchGroup],
    alerts: &[Outgoing<'_>],
    now: i64,
    external_url: &str,
    next_id: &mut u32,
) -> (Vec<DispatchGroup>, Vec<Intent>) {
    // Alerts per (route, group labels).
    let mut groups: BTreeMap<String, Members<'_, '_>> = BTreeMap::new();
    for o in alerts {
        let relevant = o.alert.state == AlertStatus::Firing
            || (o.alert.state == AlertStatus::Inactive && o.alert.resolved_at.is_some());
        if !relevant {
            continue;
        }
        for r in root.matches(&o.labels) {
            let gl = r.group_labels(&o.labels);
            let key = format!("{}:{}", r.key, labels_string(&gl));
            groups
                .entry(key)
                .or_insert_with(|| (r, gl, Vec::new()))
                .2
                .push(o);
        }
    }
    let prev: BTreeMap<&str, &DispatchGroup> = prev.iter().map(|g| (g.key.as_str(), g)).collect();
    let mut next = Vec::new();
    let mut intents = Vec::new();
    for (key, (route, gl, members)) in groups {
        let Some(receiver) = receivers.iter().find(|r| r.name == route.receiver) else {
            continue;
        };
        let firing: BTreeSet<u64> = members
            .iter()
            .filter(|o| o.alert.state == AlertStatus::Firing)
            .map(|o| o.alert.fingerprint())
            .collect();
        let resolved: BTreeSet<u64> = members
            .iter()
            .filter(|o| o.alert.state == AlertStatus::Inactive)
            .map(|o| o.alert.fingerprint())
            .collect();
        let mut g = match prev.get(key.as_str()) {
            Some(g) => (*g).clone(),
            None => {
                if firing.is_empty() {
                    continue;
                }
                DispatchGroup {
                    key: key.clone(),
                    receiver: receiver.name.clone(),
                    group_labels: gl.clone(),
                    next_flush_ms: now + route.group_wait,
                    sent: Vec::new(),
                }
            }
        };
        g.sent.resize(receiver.webhook_configs.len(), None);
        if now >= g.next_flush_ms {
            for (i, w) in receiver.webhook_configs.iter().enumerate() {
                if !needs_update(
                    g.sent[i].as_ref(),
                    &firing,
                    &resolved,
                    w.send_resolved,
                    route.repeat_interval,
                    now,
                ) {
                    continue;
                }
                let mut included: Vec<&&Outgoing<'_>> = members
                    .iter()
                    .filter(|o| o.alert.state == AlertStatus::Firing || w.send_resolved)
                    .collect();
                included.sort_by_key(|o| (o.alert.state != AlertStatus::Firing, o.labels.clone()));
                let total = included.len() as u64;
                if w.max_alerts > 0 {
                    included.truncate(w.max_alerts as usize);
                }
                let entry = NotifyEntry {
                    at_ms: now,
                    firing: firing.iter().copied().collect(),
                    resolved: resolved.iter().copied().collect(),
                };
                if included.is_empty() {
                    // Alertmanager logs the notification but sends nothing (only resolved alerts
                    // and `send_resolved: false`).
                    g.sent[i] = Some(entry);
                    continue;
                }
                let label_sets: Vec<&BTreeMap<String, String>> =
                    included.iter().map(|o| &o.labels).collect();
                let annotation_sets: Vec<&BTreeMap<String, String>> =
                    included.iter().map(|o| &o.alert.annotations).collect();
                let payload = WebhookPayload {
                    receiver: &receiver.name,
                    status: if firing.is_empty() {
                        "resolved"
                    } else {
                        "firing"
                    },
                    alerts: included
                        .iter()
                        .map(|o| {
                            let firing = o.alert.state == AlertStatus::Firing;
                            WebhookAlert {
                                status: if firing { "firing" } else { "resolved" },
                                labels: &o.labels,
                                annotations: &o.alert.annotations,
                                starts_at: rfc3339(o.alert.fired_at.unwrap_or(o.alert.active_at)),
                                ends_at: if firing {
                                    "0001-01-01T00:00:00Z".into()
                                } else {
                                    rfc3339(o.alert.resolved_at.unwrap_or(now))
                                },
                                generator_url: o.generator_url.clone(),
                                // Alertmanager's: of the labels it shows.
                                fingerprint: format!("{:016x}", label_fingerprint(&o.labels)),
                            }
                        })
                        .collect(),
                    group_labels: &gl,
                    common_labels: common(&label_sets),
                    common_annotations: common(&annotation_sets),
                    external_url,
                    version: "4",
                    group_key: &key,
                    truncated_alerts: total - included.len() as u64,
                };
                intents.push(Intent {
                    id: *next_id,
                    kind: IntentKind::Webhook,
                    url: w.url.clone(),
                    body: serde_json::to_string(&payload).expect("payload serialises"),
                    description: format!(
                        "{} {key}: {} firing, {} resolved",
                        receiver.name,
                        firing.len(),
                        resolved.len()
                    ),
                    deadline_ms: 0,
                });
                *next_id += 1;
                g.sent[i] = Some(entry);
            }
            g.next_flush_ms = now + route.group_interval;
        }
        next.push(g);
    }
    (next, intents)
}

/// The body Prometheus POSTs to Alertmanager's `/api/v2/alerts`.
pub fn alertmanager_body(alerts: &[Outgoing<'_>], now: i64, valid_ms: i64) -> String {
    let v: Vec<serde_json::Value> = alerts
        .iter()
        .map(|o| {
            let ends = match o.alert.resolved_at {
                Some(r) if o.alert.state == AlertStatus::Inactive => r,
                _ => now + valid_ms,
            };
            serde_json::json!({
                "labels": o.labels,
                "annotations": o.alert.annotations,
                "startsAt": rfc3339(o.alert.fired_at.unwrap_or(o.alert.active_at)),
                "endsAt": rfc3339(ends),
                "generatorURL": o.generator_url,
            })
        })
        .collect();
    serde_json::Value::Array(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use promlake_core::config::Config;

    fn alert(name: &str, state: AlertStatus, extra: &[(&str, &str)]) -> Alert {
        let mut labels = BTreeMap::from([("alertname".to_string(), name.to_string())]);
        for (k, v) in extra {
            labels.insert(k.to_string(), v.to_string());
        }
        Alert {
            labels,
            annotations: BTreeMap::new(),
            state,
            value: 1.0,
            active_at: 0,
            fired_at: Some(0),
            resolved_at: (state == AlertStatus::Inactive).then_some(1000),
            keep_firing_since: None,
            last_sent_at: None,
        }
    }

    fn setup(y: &str) -> (Route, Vec<ReceiverConfig>) {
        let cfg = Config::parse(y).unwrap();
        (
            Route::new(cfg.alerting.route.as_ref().unwrap()),
            cfg.alerting.receivers.clone(),
        )
    }

    fn out(a: &Alert) -> Outgoing<'_> {
        Outgoing {
            alert: a,
            labels: a.labels.clone(),
            generator_url: String::new(),
        }
    }

    #[test]
    fn routing_tree_like_alertmanager() {
        let (root, _) = setup(
            "alerting:\n  route:\n    receiver: default\n    routes:\n      - {matchers: ['severity=\"page\"'], receiver: pager, continue: true}\n      - {matchers: ['team=\"db\"'], receiver: db}\n      - {matchers: ['team=~\"db|web\"'], receiver: never}\n  receivers: [{name: default}, {name: pager}, {name: db}, {name: never}]\n",
        );
        let recv = |pairs: &[(&str, &str)]| -> Vec<String> {
            let l: BTreeMap<String, String> = pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            root.matches(&l)
                .iter()
                .map(|r| r.receiver.clone())
                .collect()
        };
        assert_eq!(
            recv(&[("severity", "page"), ("team", "db")]),
            vec!["pager", "db"]
        );
        assert_eq!(recv(&[("team", "web")]), vec!["never"]);
        assert_eq!(recv(&[("team", "ops")]), vec!["default"]);
    }

    #[test]
    fn group_wait_interval_repeat_and_resolved() {
        let (root, receivers) = setup(
            "alerting:\n  route: {receiver: r, group_by: [alertname], group_wait: 30s, group_interval: 1m, repeat_interval: 10m}\n  receivers:\n    - name: r\n      webhook_configs: [{url: 'http://x/a'}, {url: 'http://x/b', send_resolved: false}]\n",
        );
        let mut id = 0;
        let a = alert("A", AlertStatus::Firing, &[("job", "x")]);
        let (g, i) = dispatch(&root, &receivers, &[], &[out(&a)], 0, "http://p", &mut id);
        assert!(i.is_empty(), "waits group_wait");
        assert_eq!(g[0].key, "{}:{alertname=\"A\"}");
        let (g, i) = dispatch(
            &root,
            &receivers,
            &g,
            &[out(&a)],
            30_000,
            "http://p",
            &mut id,
        );
        assert_eq!(i.len(), 2, "both webhooks, after group_wait");
        let body: serde_json::Value = serde_json::from_str(&i[0].body).unwrap();
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "firing");
        assert_eq!(body["groupKey"], "{}:{alertname=\"A\"}");
        assert_eq!(body["groupLabels"], serde_json::json!({"alertname": "A"}));
        assert_eq!(body["commonLabels"]["job"], "x");
        assert_eq!(body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(
            body["alerts"][0]["fingerprint"],
            format!("{:016x}", a.fingerprint())
        );
        // Nothing new: silent until repeat_interval.
        let (g, i) = dispatch(
            &root,
            &receivers,
            &g,
            &[out(&a)],
            90_000,
            "http://p",
            &mut id,
        );
        assert!(i.is_empty());
        let (g, i) = dispatch(
            &root,
            &receivers,
            &g,
            &[out(&a)],
            30_000 + 10 * 60_000 + 1,
            "http://p",
            &mut id,
        );
        assert_eq!(i.len(), 2, "repeated after repeat_interval");
        // Resolved: only the webhook with send_resolved hears about it.
        let r = alert("A", AlertStatus::Inactive, &[("job", "x")]);
        let (g, i) = dispatch(
            &root,
            &receivers,
            &g,
            &[out(&r)],
            20 * 60_000,
            "http://p",
            &mut id,
        );
        assert_eq!(i.len(), 1);
        assert_eq!(i[0].url, "http://x/a");
        let body: serde_json::Value = serde_json::from_str(&i[0].body).unwrap();
        assert_eq!(body["status"], "resolved");
        assert_eq!(body["alerts"][0]["status"], "resolved");
        assert!(
            g[0].sent[1].as_ref().is_some_and(|e| e.firing.is_empty()),
            "logged without sending"
        );
    }

    #[test]
    fn fingerprints_are_of_the_labels_sent() {
        // Two regions' copies of one alert: the payload shows each region's labels, and the
        // fingerprint is Alertmanager's of those labels (FNV-1a 64, values computed by hand).
        let (root, receivers) = setup(
            "alerting:\n  route: {receiver: r, group_wait: 0s}\n  receivers: [{name: r, webhook_configs: [{url: 'http://x/a'}]}]\n",
        );
        let a = alert("A", AlertStatus::Firing, &[]);
        let mut fingerprints = Vec::new();
        for region in ["eu", "us"] {
            let external = BTreeMap::from([("region".to_string(), region.to_string())]);
            let o = Outgoing {
                alert: &a,
                labels: outgoing_labels(&a, &external),
                generator_url: String::new(),
            };
            let (_, i) = dispatch(&root, &receivers, &[], &[o], 0, "http://p", &mut 0);
            let body: serde_json::Value = serde_json::from_str(&i[0].body).unwrap();
            assert_eq!(body["alerts"][0]["labels"]["region"], region);
            fingerprints.push(
                body["alerts"][0]["fingerprint"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        assert_eq!(fingerprints, ["5852971e840dfd83", "cf08071e36a92a81"]);
        assert_eq!(format!("{:016x}", a.fingerprint()), "d2c6efc389df0927");
    }

    #[test]
    fn times_like_go() {
        assert_eq!(rfc3339(1_795_477_146_384), "2026-11-23T23:39:06.384Z");
        assert_eq!(rfc3339(1_795_477_146_000), "2026-11-23T23:39:06Z");
        assert_eq!(rfc3339(1_795_477_146_380), "2026-11-23T23:39:06.38Z");
    }
}
