//! promlake-query: the query service.
//!
//! One DataFusion session over the blocks of every configured region gives the global view:
//! SQL over table `samples`, Prometheus' `/federate`, and later PromQL and the Prometheus HTTP
//! API. The service is stateless: any number of replicas can serve behind a load balancer.
//!
//! It must not know how samples are scraped (it reads blocks, whoever wrote them) nor how alerts
//! are sent.

pub mod udf;

pub mod coop;
pub mod error;
pub mod federate;
pub mod format;
pub mod guard;
pub mod http;
pub mod listener;
pub mod memory;
pub mod runtime;
pub mod selector;
pub mod service;
pub mod table;

pub use error::QueryError;
pub use http::{AppState, router};
pub use service::{QueryService, RegionStore};
pub mod lambda;
