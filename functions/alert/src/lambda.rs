//! The alert evaluator as an AWS Lambda function: each scheduled invocation runs one tick of every
//! rule group, as one `promlake alert` replica does each interval. Schedule it once per replica
//! name (two or more): the replicas deduplicate through the state log exactly as processes do.
//!
//! The event may name the replica (`{"replica": "a"}`, or under `detail`); `PROMLAKE_REPLICA` is
//! the default. Configuration comes from the environment (see `Config::from_env`); rule files are
//! read from beside the config object. While the container stays warm, each replica's evaluator
//! (and the state it last saw) is kept, so a tick costs one GET when another replica decided it.

use std::collections::HashMap;
use std::sync::Arc;

use lambda_runtime::LambdaEvent;
use object_store::ObjectStore;
use promlake_core::clock::SharedClock;
use promlake_core::config::Config;
pub use promlake_core::function::FunctionError;
use promlake_core::function::{config_from_env, event_field};
use promlake_core::telemetry::Registry;
use promlake_query::{QueryService, RegionStore};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::evaluator::{Evaluator, EvaluatorOptions, Outcome};
use crate::rules::{self, LoadedGroup};

/// What one invocation did, per rule group.
#[derive(Debug, Clone, Serialize)]
pub struct AlertSummary {
    pub replica: String,
    pub groups: Vec<GroupSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupSummary {
    pub group: String,
    pub tick_ms: i64,
    /// `owned`, `adopted`, `failed`.
    pub outcome: String,
    pub notifications_sent: usize,
    pub notifications_failed: usize,
}

/// The clients an invocation needs, built once per container.
pub struct AlertFunction {
    config: Arc<Config>,
    groups: Vec<LoadedGroup>,
    query: Arc<QueryService>,
    store: Arc<dyn ObjectStore>,
    clock: SharedClock,
    default_replica: Option<String>,
    evaluators: Mutex<HashMap<String, Evaluator>>,
}

impl AlertFunction {
    pub async fn from_env(
        env: impl Fn(&str) -> Option<String>,
        store_options: &promlake_core::store::StoreOptions,
        clock: SharedClock,
    ) -> Result<Self, FunctionError> {
        let (config, store) = config_from_env(&env, store_options).await?;
        let groups = rules::load_groups_for(&config, store_options)
            .await
            .map_err(|errs| {
                FunctionError::Config(
                    errs.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
        if groups.is_empty() {
            return Err(FunctionError::Config(
                "no rule groups: set rule_files in the config".into(),
            ));
        }
        let regions = RegionStore::open_all(&config, store_options)
            .map_err(|e| FunctionError::Config(e.to_string()))?;
        let query = QueryService::new(&config, regions, clock.clone(), &Registry::new())
            .map_err(|e| FunctionError::Config(e.to_string()))?;
        Ok(Self {
            config: Arc::new(config),
            groups,
            query: Arc::new(query),
            store,
            clock,
            default_replica: env("PROMLAKE_REPLICA"),
            evaluators: Mutex::new(HashMap::new()),
        })
    }

    /// One invocation: one tick of every rule group.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<AlertSummary, FunctionError> {
        let replica = event_field(&event.payload, "replica")
            .map(str::to_owned)
            .or_else(|| self.default_replica.clone())
            .ok_or_else(|| {
                FunctionError::InvalidEvent(
                    "the event names no replica and PROMLAKE_REPLICA is not set".into(),
                )
            })?;
        let mut evaluators = self.evaluators.lock().await;
        if !evaluators.contains_key(&replica) {
            let e = Evaluator::new(
                self.config.clone(),
                self.groups.clone(),
                EvaluatorOptions::new(&replica, self.config.region()),
                self.query.clone(),
                self.store.clone(),
                self.clock.clone(),
                &Registry::new(),
            )
            .map_err(|e| FunctionError::InvalidEvent(e.to_string()))?;
            evaluators.insert(replica.clone(), e);
        }
        let e = evaluators.get_mut(&replica).expect("inserted above");
        let reports = e.tick().await;
        let mut groups = Vec::new();
        let mut failures = Vec::new();
        for r in reports {
            let (outcome, sent, failed) = match &r.outcome {
                Outcome::Owned {
                    sent,
                    failed,
                    resent,
                    ..
                } => ("owned", sent + resent, *failed),
                Outcome::Adopted => ("adopted", 0, 0),
                Outcome::Crashed => ("crashed", 0, 0),
                Outcome::Failed(m) => {
                    failures.push(format!("{}: {m}", r.group));
                    ("failed", 0, 0)
                }
            };
            groups.push(GroupSummary {
                group: r.group,
                tick_ms: r.tick,
                outcome: outcome.into(),
                notifications_sent: sent,
                notifications_failed: failed,
            });
        }
        if !failures.is_empty() {
            return Err(FunctionError::Storage(failures.join("; ")));
        }
        Ok(AlertSummary { replica, groups })
    }
}
