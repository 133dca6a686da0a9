//! The query service as an AWS Lambda function behind a function URL or API Gateway: the same
//! [`crate::router`] that `promlake query` serves, driven by `lambda_http`. Configuration comes
//! from the environment (see `Config::from_env`).

use std::sync::Arc;

use axum::Router;
use promlake_core::clock::SharedClock;
use promlake_core::config::Config;
use promlake_core::telemetry::Registry;

use crate::{AppState, QueryService, RegionStore};

/// The router over every region of the environment's config.
pub async fn router_from_env(
    env: impl Fn(&str) -> Option<String>,
    store_options: &promlake_core::store::StoreOptions,
    clock: SharedClock,
) -> Result<Router, String> {
    let config = Config::from_env(&env, store_options)
        .await
        .map_err(|e| e.to_string())?;
    let regions = RegionStore::open_all(&config, store_options).map_err(|e| e.to_string())?;
    let svc =
        QueryService::new(&config, regions, clock, &Registry::new()).map_err(|e| e.to_string())?;
    Ok(crate::router(AppState {
        service: Arc::new(svc),
    }))
}
