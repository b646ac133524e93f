//! HTTP mapping of the flows, shared by the Lambda functions (each mounts
//! its own routes) and by `roomtoken serve` (which mounts them all).

mod api;
mod audit;
mod lang;
mod pages;
pub mod read_metrics;
mod setup;

use crate::Broker;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use std::sync::Arc;

pub use api::OPENAPI_JSON;

/// `routes` at the root and, when the public URL has a path (an API
/// Gateway stage, which the Lambda adapter keeps in the path, or a base path
/// behind a proxy that keeps it), under that path as well.
fn at_public_path(broker: &Broker, routes: Router) -> Router {
    let prefix = broker
        .config
        .public_url
        .as_ref()
        .map(|url| url.path().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    if prefix.is_empty() {
        routes
    } else {
        Router::new().nest(&prefix, routes.clone()).merge(routes)
    }
}

/// `GET /connect/{id}?invite=...`, and the self-service form's `POST`
pub fn connect_start_routes(broker: Arc<Broker>) -> Router {
    let routes = Router::new()
        .route(
            "/connect/{id}",
            get(pages::start_page)
                .post(setup::submit_page)
                .layer(DefaultBodyLimit::max(setup::MAX_FORM_BODY)),
        )
        .with_state(broker.clone());
    at_public_path(&broker, routes)
}

/// `GET /callback`
pub fn connect_callback_routes(broker: Arc<Broker>) -> Router {
    let routes = Router::new()
        .route("/callback", get(pages::callback_page))
        .with_state(broker.clone());
    at_public_path(&broker, routes)
}

/// `GET /v1/connections/{id}/token` and `/status`
pub fn token_read_routes(broker: Arc<Broker>) -> Router {
    let routes = Router::new()
        .route("/v1/connections/{id}/token", get(api::token))
        .route("/v1/connections/{id}/status", get(api::status))
        .with_state(broker.clone());
    at_public_path(&broker, routes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::identity::OAuthClient;
    use crate::store::{FileStore, StoreSpec};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn status_of(router: &Router, path: &str) -> StatusCode {
        let request = Request::get(path).body(Body::empty()).unwrap();
        router.clone().oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn routes_answer_at_the_root_and_under_the_public_urls_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileStore::open(dir.path()).unwrap());
        let identity = Arc::new(OAuthClient::new(std::time::Duration::from_secs(1)).unwrap());
        let mut config = Config::new(StoreSpec::File(dir.path().to_owned()));
        config.public_url = Some("https://api.example.com/prod/".parse().unwrap());
        let router = all_routes(Arc::new(Broker::new(store, identity, config)));
        for prefix in ["", "/prod"] {
            // A link without its invite: the start page itself refuses it.
            let start = status_of(&router, &format!("{prefix}/connect/contoso")).await;
            assert_eq!(start, StatusCode::FORBIDDEN, "{prefix}");
            let callback = status_of(&router, &format!("{prefix}/callback")).await;
            assert_eq!(callback, StatusCode::BAD_REQUEST, "{prefix}");
            let token = status_of(&router, &format!("{prefix}/v1/connections/contoso/token")).await;
            assert_eq!(token, StatusCode::UNAUTHORIZED, "{prefix}");
        }
        assert_eq!(
            status_of(&router, "/other/callback").await,
            StatusCode::NOT_FOUND
        );
    }
}
