//! The scrape function's Lambda entry point: clients are built once per container, then each
//! scheduled invocation runs [`ScrapeFunction::handle`].

use std::sync::Arc;

use promlake_core::clock::SystemClock;
use promlake_core::store::StoreOptions;
use promlake_scrape::lambda::ScrapeFunction;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let options = StoreOptions::default();
    let init = ScrapeFunction::from_env(|k| std::env::var(k).ok(), &options, Arc::new(SystemClock));
    promlake_core::function::run(init, |f, e| async move { f.handle(e).await }).await
}
