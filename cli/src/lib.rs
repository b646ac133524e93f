//! The `roomtoken` command line. `main.rs` only parses and calls [`run`];
//! tests call [`run`] in-process with their own stdin and stdout.

mod admin;
#[cfg(feature = "demo")]
mod demo;
mod serve;

pub use admin::NeedsHuman;
pub use serve::{ServeLimits, ServeOptions, serve_on};

use clap::{Args, Parser, Subcommand};
use roomtoken::config::{Config, parse_public_url};
use roomtoken::store::StoreSpec;
use roomtoken::{Broker, broker::BrokerError};
use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use url::Url;

#[derive(Parser, Debug)]
#[command(
    name = "roomtoken",
    version,
    about = "Keeps Microsoft 365 access tokens fresh for meeting-room displays"
)]
pub struct Cli {
    /// Where secrets live: file:DIR (embedded, default file:./.roomtoken) or aws (Secrets Manager).
    #[arg(long, global = true, env = "ROOMTOKEN_STORE")]
    pub store: Option<StoreSpec>,
    /// External base URL of the broker; the redirect URI is {URL}/callback.
    #[arg(long, global = true, env = "ROOMTOKEN_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<Url>,
    /// Name prefix of every secret (Secrets Manager), as the deployment's
    /// SecretPrefix parameter: one account may hold several deployments.
    #[arg(long, global = true, env = "ROOMTOKEN_SECRET_PREFIX")]
    pub secret_prefix: Option<String>,
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
    #[command(flatten)]
    Admin(admin::AdminCommand),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// How often the refresh pass runs.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub refresh_every: Duration,
}

#[cfg(feature = "demo")]
#[derive(Args, Debug)]
pub struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
}

/// Logs go to stderr: `RUST_LOG` overrides; serve and demo log `info`, the
/// admin commands only warnings. Colours only on a terminal.
///
/// token-read writes one audit line per request, so lines are handed to a
/// writer thread (`tracing-appender`) that writes them in batches, instead
/// of a system call per line on the request's thread. None is dropped: a
/// stderr that does not keep up slows the loggers down. Keep the guard
/// until the process ends; dropping it writes out what is left.
pub fn init_logging(cli: &Cli) -> WorkerGuard {
    let default = match cli.command {
        Command::Serve(_) => "info",
        #[cfg(feature = "demo")]
        Command::Demo(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .finish(BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer)
        // Values from the internet or the identity provider cannot forge
        // a line: control characters are escaped.
        .fmt_fields(roomtoken::runtime::escaped_fields())
        .try_init();
    guard
}

/// The configuration: environment first, then the command-line flags.
pub fn config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::from_env(StoreSpec::File(".roomtoken".into()))?;
    if let Some(store) = &cli.store {
        config = config.with_store(store.clone());
    }
    if let Some(url) = &cli.public_url {
        config.public_url = Some(url.clone());
    }
    if let Some(prefix) = &cli.secret_prefix {
        config.secret_prefix.clone_from(prefix);
    }
    Ok(config)
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
        Command::Admin(command) => admin::run(&cli, command, stdin, out).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        Cli::try_parse_from(std::iter::once("roomtoken").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn arguments_are_checked_where_they_are_parsed() {
        let link = parse(&["link", "contoso", "--ttl", "12h"]).unwrap();
        assert!(matches!(
            link.command,
            Command::Admin(admin::AdminCommand::Link { ttl, .. }) if ttl == Duration::from_secs(43_200)
        ));
        let bad_ttl = parse(&["link", "contoso", "--ttl", "20x"]).unwrap_err();
        assert!(bad_ttl.contains("--ttl"), "{bad_ttl}");
        let bad_id = parse(&["status", "Contoso/.."]).unwrap_err();
        assert!(bad_id.contains("a-z, 0-9 and '-'"), "{bad_id}");
        let bad_cloud = parse(&["connection", "add", "x", "--cloud", "mars"]).unwrap_err();
        assert!(
            bad_cloud.contains("use global, usgov or china"),
            "{bad_cloud}"
        );
        let bad_url = parse(&["--public-url", "ftp://x", "status"]).unwrap_err();
        assert!(bad_url.contains("https"), "{bad_url}");
        let plain = parse(&["--public-url", "http://tokens.example.com", "status"]).unwrap_err();
        assert!(plain.contains("http only on loopback"), "{plain}");
        let authority = ["connection", "add", "x", "--self-service", "--authority"];
        let plain = parse(&[&authority[..], &["http://login.example"]].concat()).unwrap_err();
        assert!(plain.contains("https"), "{plain}");
        assert!(parse(&[&authority[..], &["http://127.0.0.1:9"]].concat()).is_ok());
        let bad_store = parse(&["--store", "s3", "status"]).unwrap_err();
        assert!(bad_store.contains("--store"), "{bad_store}");
    }
}
