//! HTTP mapping of the flows, shared by the Lambda functions (each mounts
//! its own routes) and by `roomtoken serve` (which mounts them all).

mod api;
mod audit;
mod pages;

use crate::Broker;
use axum::Router;
use axum::routing::get;
use std::sync::Arc;

pub use api::OPENAPI_JSON;

/// `GET /connect/{id}?invite=...`
pub fn connect_start_routes(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/connect/{id}", get(pages::start_page))
        .with_state(broker)
}

/// `GET /callback`
pub fn connect_callback_routes(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/callback", get(pages::callback_page))
        .with_state(broker)
}

/// `GET /v1/connections/{id}/token` and `/status`
pub fn token_read_routes(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/v1/connections/{id}/token", get(api::token))
        .route("/v1/connections/{id}/status", get(api::status))
        .with_state(broker)
}

/// Every route on one router, as `roomtoken serve` runs them.
pub fn all_routes(broker: Arc<Broker>) -> Router {
    Router::new()
        .merge(connect_start_routes(broker.clone()))
        .merge(connect_callback_routes(broker.clone()))
        .merge(token_read_routes(broker))
        .route("/openapi.json", get(api::openapi))
        .route("/healthz", get(|| async { "ok" }))
}
