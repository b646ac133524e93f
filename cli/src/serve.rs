//! `roomtoken serve`: every route on one port, the refresh pass on a timer.

use crate::{Cli, ServeArgs, open_broker};
use anyhow::Context;
use roomtoken::Broker;

use roomtoken::flows::refresh::{PassOptions, refresh_pass};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub struct ServeOptions {
    /// How often the refresh pass runs; `None` runs none (tests drive passes).
    pub refresh_every: Option<Duration>,
}

pub async fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<()> {
    let refresh_every = args.refresh_every;
    let broker = Arc::new(open_broker(cli).await?);
    if broker.config.public_url.is_none() {
        tracing::warn!(
            "ROOMTOKEN_PUBLIC_URL is not set: consent links and the callback will not work"
        );
    }
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    tracing::info!(addr = %args.addr, store = ?broker.config.store, "roomtoken serving");
    serve_on(
        listener,
        broker,
        ServeOptions {
            refresh_every: Some(refresh_every),
        },
    )
    .await
}

/// Serves every route on `listener` until the process is stopped.
pub async fn serve_on(
    listener: TcpListener,
    broker: Arc<Broker>,
    options: ServeOptions,
) -> anyhow::Result<()> {
    if let Some(every) = options.refresh_every {
        tokio::spawn(refresh_timer(broker.clone(), every));
    }
    let app = roomtoken::http::all_routes(broker);
    // The peer's address reaches the audit lines.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the HTTP server failed")
}

async fn refresh_timer(broker: Arc<Broker>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match refresh_pass(&broker, &PassOptions::default(), broker.now()).await {
            Ok(report) => tracing::info!(connections = report.results.len(), "refresh pass done"),
            Err(e) => tracing::error!(error = %e, "refresh pass could not list connections"),
        }
    }
}
