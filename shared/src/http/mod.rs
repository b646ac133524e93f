//! HTTP mapping of the flows, shared by the Lambda functions (each mounts
//! its own routes) and by `roomtoken serve` (which mounts them all).

mod api;
mod audit;
pub mod edge;
mod lang;
mod layout;
mod pages;
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
fn at_public_path(broker: &Arc<Broker>, routes: Router) -> Router {
    // Behind the stack's CloudFront only: nothing else is answered.
    let routes = if broker.config.edge_only {
        routes.layer(axum::middleware::from_fn_with_state(
            broker.clone(),
            edge::only_through_edge,
        ))
    } else {
        routes
    };
    // On https, browsers are told to use nothing else for a year: the
    // consent pages carry links that act as credentials.
    let routes = if broker.is_https() {
        routes.layer(axum::middleware::map_response(with_hsts))
    } else {
        routes
    };
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

/// `Strict-Transport-Security` for every answer of an https deployment.
async fn with_hsts(mut response: axum::response::Response) -> axum::response::Response {
    response.headers_mut().insert(
        axum::http::header::STRICT_TRANSPORT_SECURITY,
        axum::http::HeaderValue::from_static("max-age=31536000"),
    );
    response
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

    /// Behind the stack's CloudFront (`edge_only`), a request without the
    /// origin header CloudFront adds, or with another value, is refused
    /// (403) before any route runs; with it, the route answers as ever. An
    /// origin secret that cannot be read refuses everything (503).
    #[tokio::test]
    async fn edge_only_answers_only_requests_with_the_origin_header() {
        use crate::store::SecretStore;
        const ORIGIN: &str = "0123456789abcdefghijklmnopqrstuv";
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileStore::open(dir.path()).unwrap());
        let identity = Arc::new(OAuthClient::new(std::time::Duration::from_secs(1)).unwrap());
        let mut config = Config::new(StoreSpec::File(dir.path().to_owned()));
        config.public_url = Some("https://edge.example.com/".parse().unwrap());
        config.edge_only = true;
        let router = all_routes(Arc::new(Broker::new(store.clone(), identity, config)));
        let answer = |header: Option<&'static str>| {
            let router = router.clone();
            async move {
                let mut request = Request::get("/v1/connections/contoso/token");
                if let Some(value) = header {
                    request = request.header(edge::ORIGIN_HEADER, value);
                }
                let request = request.body(Body::empty()).unwrap();
                router.oneshot(request).await.unwrap().status()
            }
        };
        assert_eq!(
            answer(Some(ORIGIN)).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "no secret yet"
        );
        assert_eq!(
            answer(None).await,
            StatusCode::FORBIDDEN,
            "no header: refused before any read"
        );
        store.put("system/edge-origin", ORIGIN, None).await.unwrap();
        assert_eq!(answer(None).await, StatusCode::FORBIDDEN);
        assert_eq!(
            answer(Some("0123456789abcdefghijklmnopqrstuw")).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(answer(Some("short")).await, StatusCode::FORBIDDEN);
        assert_eq!(
            answer(Some(ORIGIN)).await,
            StatusCode::UNAUTHORIZED,
            "the route's own answer"
        );
        let start = Request::get("/connect/contoso")
            .body(Body::empty())
            .unwrap();
        let refused = router.clone().oneshot(start).await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "every route");
    }

    /// On https, every answer carries `Strict-Transport-Security`, and the
    /// consent cookie is set and read with the `__Secure-` prefix; on plain
    /// http (a local broker) neither would work, and neither is used.
    #[tokio::test]
    async fn https_pages_carry_hsts_and_secure_prefixed_cookies() {
        use crate::domain::{Cloud, ConnectionId, Provider, Resource, Secret};
        use crate::flows::admin::{NewConnection, add_connection, consent_link};
        for (public_url, https) in [
            ("https://api.example.com/", true),
            ("http://127.0.0.1:9/", false),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(FileStore::open(dir.path()).unwrap());
            let identity = Arc::new(OAuthClient::new(std::time::Duration::from_secs(1)).unwrap());
            let mut config = Config::new(StoreSpec::File(dir.path().to_owned()));
            config.public_url = Some(public_url.parse().unwrap());
            let broker = Arc::new(Broker::new(store, identity, config));
            let router = all_routes(broker.clone());
            for path in [
                "/connect/contoso",
                "/callback",
                "/v1/connections/contoso/token",
            ] {
                let request = Request::get(path).body(Body::empty()).unwrap();
                let response = router.clone().oneshot(request).await.unwrap();
                let hsts = response.headers().get("strict-transport-security");
                assert_eq!(hsts.is_some(), https, "{public_url}{path}");
            }
            let id = ConnectionId::parse("contoso").unwrap();
            let now = broker.now();
            let new = NewConnection {
                id: id.clone(),
                provider: Provider::microsoft(
                    "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
                    Cloud::Global,
                )
                .unwrap(),
                client_id: "client".into(),
                resources: Resource::presets("graph", Cloud::Global).unwrap(),
                client_secret: Secret::new("secret"),
                booking_account: None,
                client_secret_expires: None,
                certificate: None,
                app_only: false,
            };
            add_connection(&broker, new, now).await.unwrap();
            let link = consent_link(&broker, &id, now + time::Duration::hours(1))
                .await
                .unwrap();
            let start = format!("/connect/contoso?{}", link.query().unwrap());
            let request = Request::get(start).body(Body::empty()).unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::FOUND);
            let set = response.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .to_owned();
            let (name, sealed) = set.split(';').next().unwrap().split_once('=').unwrap();
            assert_eq!(name.starts_with("__Secure-"), https, "{set}");
            assert_eq!(set.contains("; Secure"), https, "{set}");
            // The callback finds the session under that name only: a wrong
            // `state` is then "not valid", a missing session "expired".
            for (cookie, found) in [(name, true), ("roomtoken_consent_other", false)] {
                let request = Request::get("/callback?state=wrong")
                    .header("cookie", format!("{cookie}={sealed}"))
                    .body(Body::empty())
                    .unwrap();
                let response = router.clone().oneshot(request).await.unwrap();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let body = String::from_utf8_lossy(&body);
                assert_eq!(body.contains("not valid"), found, "{cookie}: {body}");
            }
        }
    }
}
