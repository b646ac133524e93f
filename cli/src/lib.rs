//! The `roomtoken` command line. `main.rs` only parses and calls [`run`];
//! tests call [`run`] in-process with their own stdin and stdout.

mod admin;
#[cfg(feature = "demo")]
mod demo;
pub mod logging;
mod serve;

pub use serve::{ServeOptions, serve_on};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use roomtoken::config::{Config, parse_public_url};
use roomtoken::domain::ConnectionId;
use roomtoken::store::StoreSpec;
use roomtoken::{Broker, broker::BrokerError};
use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;

#[derive(Parser, Debug)]
#[command(
    name = "roomtoken",
    version,
    about = "Keeps Microsoft 365 access tokens fresh for meeting-room displays"
)]
pub struct Cli {
    /// Where secrets live: file:DIR (embedded, default file:./.roomtoken) or aws (Secrets Manager).
    #[arg(long, global = true, env = "ROOMTOKEN_STORE")]
    pub store: Option<String>,
    /// External base URL of the broker; the redirect URI is {URL}/callback.
    #[arg(long, global = true, env = "ROOMTOKEN_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run every route and the refresh schedule in one process.
    Serve(ServeArgs),
    /// Run the broker against a built-in simulated Microsoft sign-in.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Add, change, list, show or remove connections (one per customer tenant).
    #[command(subcommand)]
    Connection(admin::ConnectionCommand),
    /// Print the signed consent link of a connection.
    Link {
        id: String,
        /// How long the link stays valid (s, m, h, d).
        #[arg(long, default_value = "7d")]
        ttl: String,
    },
    /// Create, list or revoke device keys.
    #[command(subcommand)]
    Key(admin::KeyCommand),
    /// Show the state of one or every connection.
    Status {
        id: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a refresh pass now.
    Refresh {
        id: Option<String>,
        /// One attempt even if not due or in a permanent failure state.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// How often the refresh pass runs.
    #[arg(long, default_value = "5m")]
    pub refresh_every: String,
}

#[cfg(feature = "demo")]
#[derive(Args, Debug)]
pub struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
}

/// Logs go to stderr (through [`logging::BufferedLog`]): `RUST_LOG`
/// overrides; serve and demo log `info`, the admin commands only warnings.
/// Colours only on a terminal. Keep the guard until the process ends.
pub fn init_logging(cli: &Cli) -> logging::LogGuard {
    let default = match cli.command {
        Command::Serve(_) => "info",
        #[cfg(feature = "demo")]
        Command::Demo(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let (writer, guard) = logging::BufferedLog::new(std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer)
        .try_init();
    guard
}

/// The configuration: environment first, then the command-line flags.
pub fn config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::from_env(StoreSpec::File(".roomtoken".into()))?;
    if let Some(store) = &cli.store {
        config = config.with_store(store.parse().map_err(anyhow::Error::msg)?);
    }
    if let Some(url) = &cli.public_url {
        config.public_url = Some(parse_public_url(url)?);
    }
    Ok(config)
}

pub fn connection_id(text: &str) -> anyhow::Result<ConnectionId> {
    ConnectionId::parse(text).with_context(|| format!("'{text}' is not a connection id"))
}

pub async fn open_broker(cli: &Cli) -> anyhow::Result<Broker> {
    let config = config(cli)?;
    Broker::from_config(config)
        .await
        .map_err(|e: BrokerError| anyhow::anyhow!(e))
}

pub async fn run(cli: Cli, stdin: &mut dyn BufRead, out: &mut dyn Write) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve(args) => serve::serve(&cli, args).await,
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::demo(args, out).await,
        _ => admin::run(&cli, stdin, out).await,
    }
}
