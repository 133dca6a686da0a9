//! The alert evaluator: any number of identical replicas, no mesh.
//!
//! For each rule group, time is cut into ticks (multiples of the group's interval). At a tick:
//!
//! 1. if the tick's entry already exists in the group's create-only log, another replica decided
//!    it: adopt its state (one GET);
//! 2. otherwise evaluate every rule at the tick, from the previous tick's state (kept in memory,
//!    or read from the log after a gap), computing alert transitions, recording-rule samples and
//!    the notifications due (as intents);
//! 3. race to create the tick's entry (`PutMode::Create`). The loser adopts the winner's state;
//!    the winner owns the tick: it writes the rule output block, then sends this tick's intents
//!    and marks each one sent.
//!
//! Intents of earlier ticks without a sent-marker are carried in the state from tick to tick.
//! While the deadline written in one is ahead, it still belongs to its sender (which may be
//! waiting on a slow receiver) and nobody else sends it; once the deadline has passed (its
//! sender died, or gave up on a receiver that was down), the next owner takes it over with a
//! deadline of its own and sends it. See [`crate::notify`].
//!
//! A rule output block whose PUT fails is kept, under the key chosen for it, and written at the
//! replica's next tick; a retry that finds it there knows the earlier attempt landed.
//!
//! Everything `for`, `keep_firing_for`, `ActiveAt` and notification grouping need is in the
//! state, so they survive the loss of any replica. Entries older than an hour are deleted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use promlake_core::block::Sample;
use promlake_core::clock::{SharedClock, TimestampMs};
use promlake_core::config::Config;
use promlake_core::keys::{self, AlertGroupKey, LogDir, RULES_REPLICA, SentMarker};
use promlake_core::labels::Labels;
use promlake_core::log::{Appended, CreateOnlyLog};
use promlake_core::shard::Shard;
use promlake_core::sink::{BlockSink, SinkMetrics, SinkOptions};
use promlake_core::telemetry::{Counter, Registry};
use promlake_query::QueryService;
use tracing::Instrument;

use crate::dispatch::{self, Outgoing, Route};
pub use crate::error::AlertError;
use crate::notify::{self, Intent, IntentKind};
use crate::results::{recording_samples, rows_to_series};
use crate::rules::{self, LoadedGroup, Rule};
use crate::state::{self, Alert, AlertStatus, CarriedIntent, EvalContext, GroupState, RuleHealth};

/// How an evaluator runs.
#[derive(Clone, Debug)]
pub struct EvaluatorOptions {
    pub replica: String,
    pub region: String,
    /// Alerts still firing are sent to Alertmanagers again after this (Prometheus: 1m).
    pub resend_delay: Duration,
    /// Longest a notification is retried by the replica that sends it. The deadline it implies
    /// is written in the intent: until then no other replica sends it.
    pub send_deadline: Duration,
    /// Log entries (and sent markers) older than this are deleted.
    pub log_retention: Duration,
}

impl EvaluatorOptions {
    pub fn new(replica: &str, region: &str) -> Self {
        Self {
            replica: replica.to_owned(),
            region: region.to_owned(),
            resend_delay: Duration::from_secs(60),
            send_deadline: Duration::from_secs(10),
            log_retention: Duration::from_secs(3600),
        }
    }
}

/// Fault injection for tests of the HA claim.
pub trait Faults: Send + Sync {
    /// Called by the owner of a tick after its intents are durable and before it sends them;
    /// `true` makes the evaluator stop there, as if it crashed.
    fn crash_before_send(&self, _group: &str, _tick: TimestampMs) -> bool {
        false
    }
}

/// What happened to one group at one tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This replica decided the tick.
    Owned {
        intents: usize,
        sent: usize,
        failed: usize,
        resent: usize,
    },
    /// Another replica had decided it.
    Adopted,
    /// The replica "crashed" before sending (faults).
    Crashed,
    /// The tick could not be decided (storage error); it is retried at the next call.
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct TickReport {
    pub group: String,
    pub tick: TimestampMs,
    pub outcome: Outcome,
}

/// The latest known state of a group, for `/api/v1/rules` and `/api/v1/alerts`.
#[derive(Clone, Debug)]
pub struct GroupStatus {
    pub file: String,
    pub name: String,
    pub interval_seconds: f64,
    pub limit: u64,
    pub rules: Vec<Rule>,
    pub state: Option<GroupState>,
}

/// Shared view of every group's status.
pub type StatusHandle = Arc<RwLock<Vec<GroupStatus>>>;

struct Runner {
    g: LoadedGroup,
    log: CreateOnlyLog,
    interval_ms: i64,
    known: Option<GroupState>,
    ticks: u64,
}

#[derive(Clone)]
struct Stats {
    owned: Counter,
    adopted: Counter,
    rule_failures: Counter,
    sent: Counter,
    send_failures: Counter,
    resent: Counter,
}

/// An evaluator replica.
pub struct Evaluator {
    config: Arc<Config>,
    opts: EvaluatorOptions,
    query: Arc<QueryService>,
    store: Arc<dyn ObjectStore>,
    clock: SharedClock,
    http: reqwest::Client,
    route: Option<Route>,
    alertmanagers: Vec<String>,
    runners: Vec<Runner>,
    /// Rule output: written at the tick that computed it; what fails is kept and retried at
    /// the next tick of any group.
    output: BlockSink,
    stats: Stats,
    status: StatusHandle,
    faults: Option<Arc<dyn Faults>>,
}

impl Evaluator {
    /// An evaluator of `groups`; its state logs and rule output live in `store` (this region's
    /// storage); rules query through `query`.
    pub fn new(
        config: Arc<Config>,
        groups: Vec<LoadedGroup>,
        opts: EvaluatorOptions,
        query: Arc<QueryService>,
        store: Arc<dyn ObjectStore>,
        clock: SharedClock,
        registry: &Registry,
    ) -> Result<Self, AlertError> {
        keys::check_name("replica", &opts.replica).map_err(AlertError::Invalid)?;
        keys::check_name("region", &opts.region).map_err(AlertError::Invalid)?;
        let mut alertmanagers = Vec::new();
        for am in &config.alerting.alertmanagers {
            for sc in &am.static_configs {
                for t in &sc.targets {
                    let prefix = am.path_prefix.trim_end_matches('/');
                    alertmanagers.push(format!("{}://{t}{prefix}/api/v2/alerts", am.scheme));
                }
            }
        }
        let l = [("replica", opts.replica.as_str())];
        let stats = Stats {
            owned: registry.counter(
                "promlake_rule_group_ticks_total",
                "Rule group ticks by outcome.",
                &[l[0], ("outcome", "owned")],
            ),
            adopted: registry.counter(
                "promlake_rule_group_ticks_total",
                "Rule group ticks by outcome.",
                &[l[0], ("outcome", "adopted")],
            ),
            rule_failures: registry.counter(
                "promlake_rule_evaluation_failures_total",
                "Rule evaluations that failed.",
                &l,
            ),
            sent: registry.counter(
                "promlake_notifications_sent_total",
                "Notifications delivered.",
                &l,
            ),
            send_failures: registry.counter(
                "promlake_notifications_failed_total",
                "Notifications that could not be delivered within a tick.",
                &l,
            ),
            resent: registry.counter(
                "promlake_notifications_resent_total",
                "Notifications of a previous owner that this replica delivered.",
                &l,
            ),
        };
        let runners: Vec<Runner> = groups
            .into_iter()
            .map(|g| Runner {
                log: CreateOnlyLog::new(
                    store.clone(),
                    LogDir::alert_group(&opts.region, &g.key),
                    ".json",
                ),
                interval_ms: g.interval.as_millis().max(1) as i64,
                g,
                known: None,
                ticks: 0,
            })
            .collect();
        let status = Arc::new(RwLock::new(
            runners
                .iter()
                .map(|r| GroupStatus {
                    file: r.g.file.display().to_string(),
                    name: r.g.group.name.clone(),
                    interval_seconds: r.interval_ms as f64 / 1000.0,
                    limit: r.g.group.limit,
                    rules: r.g.group.rules.clone(),
                    state: None,
                })
                .collect(),
        ));
        let output = BlockSink::new(
            store.clone(),
            clock.clone(),
            SinkOptions::new(&opts.region, Shard::ALL, RULES_REPLICA),
            SinkMetrics::default(),
        );
        Ok(Self {
            output,
            route: config.alerting.route.as_ref().map(Route::new),
            config,
            opts,
            query,
            store,
            clock,
            http: reqwest::Client::builder()
                .build()
                .map_err(|e| AlertError::Invalid(e.to_string()))?,
            alertmanagers,
            runners,
            stats,
            status,
            faults: None,
        })
    }

    /// Injects faults (tests).
    pub fn with_faults(mut self, f: Arc<dyn Faults>) -> Self {
        self.faults = Some(f);
        self
    }

    pub fn status(&self) -> StatusHandle {
        self.status.clone()
    }

    pub fn replica(&self) -> &str {
        &self.opts.replica
    }

    /// Decides every group whose current tick this replica has not seen yet.
    pub async fn tick(&mut self) -> Vec<TickReport> {
        let now = self.clock.now_ms();
        let mut reports = Vec::new();
        for i in 0..self.runners.len() {
            let t = {
                let r = &self.runners[i];
                now - now.rem_euclid(r.interval_ms)
            };
            if self.runners[i]
                .known
                .as_ref()
                .is_some_and(|k| k.tick_ms >= t)
            {
                continue;
            }
            let span = tracing::info_span!(
                "tick",
                group = %self.runners[i].g.group.name,
                tick = t,
                replica = %self.opts.replica
            );
            let outcome = match self.run_group(i, t).instrument(span).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(group = %self.runners[i].g.group.name, tick = t, error = %e, "rule group tick failed");
                    Outcome::Failed(e.to_string())
                }
            };
            // An owner wrote (or tried) its output already; other outcomes retry old output.
            if !matches!(outcome, Outcome::Owned { .. } | Outcome::Crashed) {
                self.write_output().await;
            }
            if let Ok(mut s) = self.status.write() {
                s[i].state = self.runners[i].known.clone();
            }
            reports.push(TickReport {
                group: self.runners[i].g.group.name.clone(),
                tick: t,
                outcome,
            });
        }
        reports
    }

    /// When the next tick of any group is due.
    pub fn next_tick_ms(&self) -> TimestampMs {
        let now = self.clock.now_ms();
        self.runners
            .iter()
            .map(|r| now - now.rem_euclid(r.interval_ms) + r.interval_ms)
            .min()
            .unwrap_or(now + 60_000)
    }

    /// Runs ticks until `shutdown`.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Self {
        tokio::pin!(shutdown);
        loop {
            self.tick().await;
            let wait = (self.next_tick_ms() - self.clock.now_ms()).clamp(10, 60_000) as u64;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = &mut shutdown => return self,
            }
        }
    }

    async fn run_group(
        &mut self,
        i: usize,
        t: TimestampMs,
    ) -> Result<Outcome, promlake_core::Error> {
        let seq = t as u64;
        // Decided already?
        if let Some(bytes) = self.runners[i].log.read(seq).await? {
            self.adopt(i, t, &bytes);
            return Ok(Outcome::Adopted);
        }
        let prev = self.previous(i, t).await?;
        let (mut state, samples) = self.evaluate(i, t, &prev).await;
        // The notifications decided now belong to this replica until `deadline`, if it wins.
        let now = self.clock.now_ms();
        let deadline = now + self.opts.send_deadline.as_millis() as i64;
        for intent in &mut state.intents {
            intent.deadline_ms = deadline;
        }
        state.carried = self.outstanding(i, t, now, deadline, &prev).await?;
        let body = state.encode();
        let owned = match self.runners[i]
            .log
            .append_if_absent(seq, body.clone())
            .await?
        {
            Appended::Created => true,
            Appended::Lost(b) if b == body => true,
            Appended::Lost(b) => {
                self.adopt(i, t, &b);
                return Ok(Outcome::Adopted);
            }
        };
        debug_assert!(owned);
        self.stats.owned.inc();
        self.runners[i].known = Some(state.clone());
        self.runners[i].ticks += 1;
        self.output.push(samples);
        self.write_output().await;
        let group_key = self.runners[i].g.key.clone();
        // Sending stops at the deadline written in the intents.
        let budget = Duration::from_millis((deadline - self.clock.now_ms()).max(0) as u64)
            .min(self.opts.send_deadline);
        if let Some(f) = &self.faults
            && f.crash_before_send(group_key.as_str(), t)
        {
            return Ok(Outcome::Crashed);
        }
        // Earlier notifications whose sender's deadline passed without a sent-marker.
        let taken: Vec<&CarriedIntent> = state.carried.iter().filter(|c| c.taken_over).collect();
        for c in &taken {
            tracing::warn!(group = %group_key, tick = c.tick_ms, intent = %c.intent.description, "sending a notification decided at an earlier tick: its sender's deadline passed and it is not marked sent");
        }
        let resends = taken
            .iter()
            .map(|c| self.deliver(&group_key, c.tick_ms, &c.intent, budget));
        let sends = state
            .intents
            .iter()
            .map(|intent| self.deliver(&group_key, t, intent, budget));
        let (resends, sends) = futures::future::join(
            futures::future::join_all(resends),
            futures::future::join_all(sends),
        )
        .await;
        let resent = resends.iter().filter(|ok| **ok).count();
        self.stats.resent.inc_by(resent as u64);
        let sent = sends.iter().filter(|ok| **ok).count();
        let failed = sends.len() - sent;
        if self.runners[i].ticks.is_multiple_of(60) {
            self.cleanup(i, t).await;
        }
        Ok(Outcome::Owned {
            intents: state.intents.len(),
            sent,
            failed,
            resent,
        })
    }

    fn adopt(&mut self, i: usize, t: TimestampMs, bytes: &[u8]) {
        self.stats.adopted.inc();
        match GroupState::decode(bytes) {
            Ok(s) => self.runners[i].known = Some(s),
            Err(e) => {
                tracing::error!(group = %self.runners[i].g.group.name, tick = t, error = %e, "skipping a corrupt or foreign state entry");
                // Keep the previous state, but do not decide this tick again.
                let mut k = self.runners[i].known.clone().unwrap_or_default();
                k.tick_ms = t;
                self.runners[i].known = Some(k);
            }
        }
    }

    /// The notifications of `prev` (its own and those it carried) that have no sent-marker. Those
    /// whose deadline passed before `now` are taken over, with `deadline`; the others still
    /// belong to their sender and are carried along as they are. Those older than the log
    /// retention are given up, with an error.
    async fn outstanding(
        &self,
        i: usize,
        t: TimestampMs,
        now: TimestampMs,
        deadline: TimestampMs,
        prev: &Option<GroupState>,
    ) -> Result<Vec<CarriedIntent>, promlake_core::Error> {
        let Some(p) = prev else {
            return Ok(Vec::new());
        };
        let key = &self.runners[i].g.key;
        let horizon = t - self.opts.log_retention.as_millis() as i64;
        let candidates = p
            .carried
            .iter()
            .cloned()
            .chain(p.intents.iter().map(|intent| CarriedIntent {
                tick_ms: p.tick_ms,
                intent: intent.clone(),
                taken_over: false,
            }));
        let mut out = Vec::new();
        for mut c in candidates {
            let marker = self.sent_marker(key, c.tick_ms, c.intent.id);
            match self.store.head(&marker).await {
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) if c.tick_ms < horizon => {
                    tracing::error!(group = %key, tick = c.tick_ms, intent = %c.intent.description, "giving up a notification that could not be delivered within the log retention");
                }
                Err(object_store::Error::NotFound { .. }) => {
                    c.taken_over = now > c.intent.deadline_ms;
                    if c.taken_over {
                        c.intent.deadline_ms = deadline;
                    }
                    out.push(c);
                }
                Err(e) => return Err(promlake_core::Error::store(&marker, e)),
            }
        }
        Ok(out)
    }

    /// The state the tick continues from: the previous tick's, or the latest before it.
    async fn previous(
        &self,
        i: usize,
        t: TimestampMs,
    ) -> Result<Option<GroupState>, promlake_core::Error> {
        let r = &self.runners[i];
        if let Some(k) = &r.known
            && k.tick_ms == t - r.interval_ms
        {
            return Ok(Some(k.clone()));
        }
        let candidates: Vec<u64> = match r.log.read((t - r.interval_ms) as u64).await? {
            Some(b) => match GroupState::decode(&b) {
                Ok(s) => return Ok(Some(s)),
                Err(_) => Vec::new(),
            },
            None => r
                .log
                .sequences()
                .await?
                .into_iter()
                .filter(|s| (*s as i64) < t)
                .collect(),
        };
        for seq in candidates.into_iter().rev() {
            if let Some(b) = r.log.read(seq).await? {
                match GroupState::decode(&b) {
                    Ok(s) => return Ok(Some(s)),
                    Err(e) => {
                        tracing::error!(key = %r.log.key(seq), error = %e, "skipping a corrupt or foreign state entry")
                    }
                }
            }
        }
        Ok(None)
    }

    async fn evaluate(
        &self,
        i: usize,
        t: TimestampMs,
        prev: &Option<GroupState>,
    ) -> (GroupState, Vec<Sample>) {
        let r = &self.runners[i];
        let g = &r.g.group;
        let external = &self.config.global.external_labels;
        let external_url = self.external_url();
        let prev_rules: HashMap<&str, &RuleHealth> = prev
            .iter()
            .flat_map(|p| p.rules.iter().map(|h| (h.name.as_str(), h)))
            .collect();
        let mut samples = Vec::new();
        let mut health = Vec::new();
        for rule in &g.rules {
            let started = Instant::now();
            let prev_alerts: Vec<Alert> = prev_rules
                .get(rule.name())
                .map(|h| h.alerts.clone())
                .unwrap_or_default();
            let result = match self.query.sql_at(&rule.expr, t).await {
                Ok((schema, batches)) => rules::check_output(&schema)
                    .and_then(|()| rows_to_series(&batches))
                    .map_err(|reason| {
                        AlertError::RuleOutput {
                            group: g.name.clone(),
                            rule: rule.name().to_owned(),
                            reason,
                        }
                        .to_string()
                    }),
                Err(e) => Err(e.to_string()),
            };
            let cx = EvalContext {
                ts: t,
                group_labels: &g.labels,
                external_labels: external,
                external_url: &external_url,
                limit: g.limit,
            };
            let (alerts, err) = match (result, rule.is_alert()) {
                (Err(e), true) => (prev_alerts, Some(e)),
                (Err(e), false) => (Vec::new(), Some(e)),
                (Ok(rows), true) => match state::eval_alerting(rule, &prev_alerts, rows, &cx) {
                    Ok(a) => {
                        for (l, v) in state::alert_series(&a) {
                            samples.push(Sample::new(Arc::new(l), t, v));
                        }
                        (a, None)
                    }
                    // Over the group's limit, Prometheus drops the rule's alerts.
                    Err(e @ AlertError::AlertLimit { .. }) => (Vec::new(), Some(e.to_string())),
                    Err(e) => (prev_alerts, Some(e.to_string())),
                },
                (Ok(rows), false) => match recording_samples(rule, rows, &cx) {
                    Ok(s) => {
                        samples.extend(s);
                        (Vec::new(), None)
                    }
                    Err(e) => (Vec::new(), Some(e)),
                },
            };
            if let Some(e) = &err {
                self.stats.rule_failures.inc();
                tracing::warn!(group = %g.name, rule = %rule.name(), error = %e, "rule evaluation failed");
            }
            health.push(RuleHealth {
                name: rule.name().to_owned(),
                health: if err.is_some() {
                    "err".into()
                } else {
                    "ok".into()
                },
                last_error: err,
                evaluation_seconds: started.elapsed().as_secs_f64(),
                alerts,
            });
        }
        // Notifications.
        let mut next_id = 0u32;
        let mut intents = Vec::new();
        let mut dispatch_state = Vec::new();
        {
            let mut outgoing = Vec::new();
            for (rule, h) in g.rules.iter().zip(&health) {
                for a in &h.alerts {
                    if let Some(labels) = self.outgoing_labels(a) {
                        outgoing.push(Outgoing {
                            alert: a,
                            labels,
                            generator_url: dispatch::generator_url(&external_url, &rule.expr),
                        });
                    }
                }
            }
            if let Some(route) = &self.route {
                let prev_dispatch = prev.as_ref().map(|p| p.dispatch.as_slice()).unwrap_or(&[]);
                let (d, w) = dispatch::dispatch(
                    route,
                    &self.config.alerting.receivers,
                    prev_dispatch,
                    &outgoing,
                    t,
                    &external_url,
                    &mut next_id,
                );
                dispatch_state = d;
                intents.extend(w);
            }
            if !self.alertmanagers.is_empty() {
                let resend = self.opts.resend_delay.as_millis() as i64;
                let due: Vec<Outgoing<'_>> = outgoing
                    .into_iter()
                    .filter(|o| o.alert.needs_sending(t, resend))
                    .collect();
                if !due.is_empty() {
                    let valid = 4 * resend.max(r.interval_ms);
                    let body = dispatch::alertmanager_body(&due, t, valid);
                    for url in &self.alertmanagers {
                        intents.push(Intent {
                            id: next_id,
                            kind: IntentKind::Alertmanager,
                            url: url.clone(),
                            body: body.clone(),
                            description: format!("{} alert(s) to {url}", due.len()),
                            deadline_ms: 0,
                        });
                        next_id += 1;
                    }
                }
            }
        }
        // Alerts sent to Alertmanagers this tick remember it.
        if !self.alertmanagers.is_empty() {
            let resend = self.opts.resend_delay.as_millis() as i64;
            for h in &mut health {
                for a in &mut h.alerts {
                    if self.outgoing_labels(a).is_some() && a.needs_sending(t, resend) {
                        a.last_sent_at = Some(t);
                    }
                }
            }
        }
        (
            GroupState {
                version: 1,
                tick_ms: t,
                replica: self.opts.replica.clone(),
                rules: health,
                dispatch: dispatch_state,
                intents,
                carried: Vec::new(),
            },
            samples,
        )
    }

    /// An alert's labels as it leaves: external labels added, `alert_relabel_configs` applied;
    /// `None` when relabeling drops it.
    fn outgoing_labels(&self, a: &Alert) -> Option<BTreeMap<String, String>> {
        let l = dispatch::outgoing_labels(a, &self.config.global.external_labels);
        let rules = &self.config.alerting.alert_relabel_configs;
        if rules.is_empty() {
            return Some(l);
        }
        let mut b = Labels::from_pairs(l).builder();
        if !promlake_core::relabel::process(rules, &mut b) {
            return None;
        }
        Some(
            b.labels()
                .iter()
                .map(|l| (l.name.to_owned(), l.value.to_owned()))
                .collect(),
        )
    }

    fn external_url(&self) -> String {
        self.config
            .alerting
            .external_url
            .clone()
            .unwrap_or_else(|| "http://localhost:9090".to_owned())
    }

    /// The marker of notification `id` decided at `tick` by group `group`.
    fn sent_marker(
        &self,
        group: &AlertGroupKey,
        tick: TimestampMs,
        id: u32,
    ) -> object_store::path::Path {
        SentMarker {
            region: self.opts.region.clone(),
            group: group.clone(),
            tick: tick as u64,
            id,
        }
        .path()
    }

    async fn deliver(
        &self,
        group_key: &AlertGroupKey,
        tick: TimestampMs,
        intent: &Intent,
        budget: Duration,
    ) -> bool {
        match notify::send(&self.http, intent, budget).await {
            Ok(_) => {
                self.stats.sent.inc();
                let marker = self.sent_marker(group_key, tick, intent.id);
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                match self
                    .store
                    .put_opts(&marker, PutPayload::from_static(b"sent"), opts)
                    .await
                {
                    Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
                    Err(e) => {
                        tracing::warn!(key = %marker, error = %e, "could not mark a notification sent; the next owner may send it again")
                    }
                }
                true
            }
            Err(e) => {
                self.stats.send_failures.inc();
                tracing::warn!(group = %group_key, tick, intent = %intent.description, error = %e, "notification not delivered by its deadline; a later tick's owner retries it");
                false
            }
        }
    }

    /// Writes the rule output held by the sink; a block that fails stays for the next tick.
    async fn write_output(&self) {
        if let Some((key, error)) = self.output.flush().await.failed {
            tracing::error!(key = %key, error = %error, "writing rule output failed; kept and retried at the next tick");
        }
    }

    async fn cleanup(&self, i: usize, t: TimestampMs) {
        let r = &self.runners[i];
        let before = (t - self.opts.log_retention.as_millis() as i64).max(0) as u64;
        if let Err(e) = r.log.delete_before(before).await {
            tracing::warn!(error = %e, "deleting old rule group state");
        }
        let dir = SentMarker::dir(&self.opts.region, &r.g.key);
        let old: Vec<object_store::path::Path> =
            match futures::TryStreamExt::try_collect::<Vec<_>>(self.store.list(Some(&dir))).await {
                Ok(metas) => metas
                    .into_iter()
                    .filter(|m| SentMarker::parse(&m.location).is_some_and(|s| s.tick < before))
                    .map(|m| m.location)
                    .collect(),
                Err(_) => Vec::new(),
            };
        for p in old {
            let _ = self.store.delete(&p).await;
        }
    }
}

/// `AlertStatus` as Prometheus' API writes it.
pub fn state_name(s: AlertStatus) -> &'static str {
    match s {
        AlertStatus::Pending => "pending",
        AlertStatus::Firing => "firing",
        AlertStatus::Inactive => "inactive",
    }
}
