//! The axum router and server task.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use url::Url;

use crate::routes::{admin_consent, authorize, discovery, token};
use crate::state::Shared;

/// Builds the router over the shared state.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(authorize::get).post(authorize::post),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(token::post))
        .route(
            "/{tenant}/v2.0/adminconsent",
            get(admin_consent::get).post(admin_consent::post),
        )
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery::get),
        )
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(shared)
}

/// Binds `addr` and spawns the server on the current runtime. The server stops
/// (gracefully) when the returned sender is dropped.
pub(crate) async fn spawn(addr: SocketAddr) -> std::io::Result<(Arc<Shared>, oneshot::Sender<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let base = Url::parse(&format!("http://{local}/")).map_err(std::io::Error::other)?;
    let shared = Arc::new(Shared::new(base));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let app = router(shared.clone());
    tokio::spawn(async move {
        let shutdown = async move {
            // Resolves when the handle (and so the sender) is dropped.
            let _ = stop_rx.await;
        };
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %err, "fake identity server stopped with an error");
        }
    });
    tracing::debug!(%local, "fake identity platform listening");
    Ok((shared, stop_tx))
}
