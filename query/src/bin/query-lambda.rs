//! The query function's Lambda entry point: the query router behind a function URL.

use std::sync::Arc;

use promlake_core::clock::SystemClock;
use promlake_core::store::StoreOptions;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    promlake_core::function::init_logging();
    let router = promlake_query::lambda::router_from_env(
        |k| std::env::var(k).ok(),
        &StoreOptions::default(),
        Arc::new(SystemClock),
    )
    .await?;
    lambda_http::run(router).await
}
