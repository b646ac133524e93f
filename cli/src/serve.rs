//! `roomtoken serve`: every route on one port, the refresh pass on a timer.

use crate::{Cli, ServeArgs, open_broker};
use anyhow::Context;
use roomtoken::Broker;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use roomtoken::flows::refresh::{Outcome, PassOptions, next_pass_in, refresh_pass};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

pub struct ServeOptions {
    /// How often the refresh pass runs; `None` runs none (tests drive passes).
    pub refresh_every: Option<Duration>,
    pub limits: ServeLimits,
}

/// What one client may hold of the server: without these, a client that
/// sends headers one byte a minute (slowloris), or opens thousands of idle
/// connections, would take every display's place.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// To send a request's headers, and the most a kept-alive connection
    /// may stay idle.
    pub header_read: Duration,
    /// For the whole request, body included (a consent callback waits for
    /// the identity provider, up to its own timeout per request).
    pub request: Duration,
    /// Open connections at once; more are closed at once.
    pub max_connections: usize,
    /// Open connections at once from one IP address: one client holding
    /// slow connections cannot take every place. Half the total by
    /// default: the proxy in front of `serve` (one address for every
    /// client, which it buffers) and a site's displays behind one NAT
    /// address still fit.
    pub max_connections_per_peer: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(90),
            // Below the usual limit of 1,024 open files, with room for the
            // store's and the identity provider's connections.
            max_connections: 512,
            max_connections_per_peer: 256,
        }
    }
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
            limits: ServeLimits::default(),
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
    roomtoken::runtime::prepare_token_read(&broker).await;
    if let Some(every) = options.refresh_every {
        tokio::spawn(refresh_timer(broker.clone(), every));
    }
    let limits = options.limits;
    let app = roomtoken::http::all_routes(broker).layer(
        tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            limits.request,
        ),
    );
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let peers = Arc::new(PeerSlots::new(limits.max_connections_per_peer));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: a later accept
                    // may work; do not spin on it meanwhile.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Some(peer_slot) = peers.take(peer.ip()) else {
            tracing::warn!(peer = %peer, max = limits.max_connections_per_peer, "too many connections from this address: closed");
            drop(stream);
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(peer = %peer, max = limits.max_connections, "too many connections: closed");
            drop(stream);
            continue;
        };
        let app = app.clone();
        // The peer's address reaches the audit lines.
        let service = hyper::service::service_fn(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(request.map(axum::body::Body::new))
            },
        );
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _permit = (permit, peer_slot);
            if let Err(e) = connection.await {
                tracing::debug!(peer = %peer, error = %e, "connection ended");
            }
        });
    }
    // Requests in flight may finish; new ones are not taken.
    let _ = tokio::time::timeout(limits.request, graceful.shutdown()).await;
    Ok(())
}

/// How many connections each IP address holds open.
struct PeerSlots {
    open: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
    max: usize,
}

/// One open connection of an address, given back when dropped.
struct PeerSlot {
    slots: Arc<PeerSlots>,
    ip: IpAddr,
}

impl PeerSlots {
    fn new(max: usize) -> Self {
        Self {
            open: Default::default(),
            max,
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<IpAddr, usize>> {
        // The map stays consistent whatever panicked while it was held.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for `ip`, or `None` when it holds its most already.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let mut open = self.open();
        let count = open.entry(ip).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open();
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Ctrl-C, or SIGTERM as a service manager or a container runtime sends it.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs a pass at least `every`, and sooner when a token is due sooner
/// (tokens that live minutes: on the file store nothing limits how often
/// they are refreshed).
async fn refresh_timer(broker: Arc<Broker>, every: Duration) {
    loop {
        let wait = match refresh_pass(&broker, &PassOptions::default(), broker.now()).await {
            Ok(report) => {
                let refreshed = report.count(|o| matches!(o, Outcome::Refreshed { .. }));
                tracing::debug!(
                    connections = report.results.len(),
                    refreshed,
                    "refresh pass done"
                );
                next_pass_in(&broker, &report, every, broker.now())
            }
            Err(e) => {
                tracing::error!(error = %e, "refresh pass could not list connections");
                every
            }
        };
        tokio::time::sleep(wait).await;
    }
}
