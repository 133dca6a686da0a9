//! What promlake's AWS Lambda functions share: the error every handler returns, with an
//! `errorType` that says whether a retry can help, and the runtime loop of a thin `main`.

use std::future::Future;
use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde::Serialize;
use serde_json::Value;

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// The event is wrong; retrying cannot help.
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// The configuration or environment is wrong; retrying cannot help.
    #[error("configuration: {0}")]
    Config(String),
    /// Storage failed within the deadline; a retry may succeed.
    #[error("storage: {0}")]
    Storage(String),
}

impl FunctionError {
    /// The `errorType` the Lambda runtime reports.
    pub fn error_type(&self) -> &'static str {
        match self {
            FunctionError::InvalidEvent(_) => "promlake.InvalidEvent",
            FunctionError::Config(_) => "promlake.Config",
            FunctionError::Storage(_) => "promlake.Storage",
        }
    }
}

impl From<FunctionError> for Diagnostic {
    fn from(e: FunctionError) -> Diagnostic {
        Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// What every function starts from: the config the environment names (see
/// [`crate::config::Config::from_env`]) and the store its `storage` (or `PROMLAKE_STORAGE`) opens.
pub async fn config_from_env(
    env: impl Fn(&str) -> Option<String>,
    store_options: &crate::store::StoreOptions,
) -> Result<(crate::config::Config, Arc<dyn object_store::ObjectStore>), FunctionError> {
    let config = crate::config::Config::from_env(&env, store_options)
        .await
        .map_err(|e| FunctionError::Config(e.to_string()))?;
    let store = crate::store::open(&config.storage_url(&config.storage), store_options)
        .map_err(|e| FunctionError::Config(e.to_string()))?
        .store;
    Ok((config, store))
}

/// A field of an event, at the top level (a schedule's constant input) or under `detail` (an
/// EventBridge event).
pub fn event_field<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    event
        .get(name)
        .or_else(|| event.get("detail").and_then(|d| d.get(name)))
        .and_then(Value::as_str)
}

/// Logs as JSON lines without timestamps (CloudWatch adds them).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_target(false)
        .without_time()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
}

/// The body of a function's `main`: builds the handler once per container (a failure there is
/// reported as an init error), then serves invocations with it.
pub async fn run<H, Fut, R>(
    init: impl Future<Output = Result<H, FunctionError>>,
    handle: impl Fn(Arc<H>, LambdaEvent<Value>) -> Fut + Copy,
) -> Result<(), lambda_runtime::Error>
where
    Fut: Future<Output = Result<R, FunctionError>>,
    R: Serialize,
{
    init_logging();
    let h = Arc::new(init.await?);
    lambda_runtime::run(service_fn(move |e: LambdaEvent<Value>| {
        handle(h.clone(), e)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_fields_come_from_the_input_or_the_detail() {
        let scheduled = serde_json::json!({"shard": "1/4", "detail": {"shard": "2/4"}});
        assert_eq!(event_field(&scheduled, "shard"), Some("1/4"));
        let eventbridge =
            serde_json::json!({"detail-type": "Scheduled Event", "detail": {"replica": "b"}});
        assert_eq!(event_field(&eventbridge, "replica"), Some("b"));
        assert_eq!(event_field(&eventbridge, "shard"), None);
        assert_eq!(event_field(&serde_json::json!({"shard": 3}), "shard"), None);
    }

    #[test]
    fn error_types_say_whether_a_retry_helps() {
        let d = Diagnostic::from(FunctionError::InvalidEvent("shard 5/2".into()));
        assert_eq!(d.error_type, "promlake.InvalidEvent");
        assert_eq!(d.error_message, "invalid event: shard 5/2");
        assert_eq!(
            FunctionError::Storage(String::new()).error_type(),
            "promlake.Storage"
        );
    }
}
