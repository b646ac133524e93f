//! The operator's commands. Each prints what a script needs on stdout and
//! nothing secret but the device key, once, at creation.

use crate::{Cli, open_broker};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use roomtoken::Broker;
use roomtoken::certificate::CertificateKey;
use roomtoken::domain::notify::WebhookSecret;
use roomtoken::domain::status::{SecretInUse, credential_days_left};
use roomtoken::domain::{
    AppRegistration, Cloud, ConnectionId, ConnectionState, Provider, Resource, Secret, VendorApp,
};
use roomtoken::flows::admin::{self, AdminError, ConnectionUpdate, NewConnection, Onboarding};
use roomtoken::flows::read::{StatusView, load_status_view};
use roomtoken::flows::refresh::{Outcome, PassOptions, refresh_pass};
use roomtoken::store::StoreError;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;
use time::OffsetDateTime;
use url::Url;

/// The operator's commands, one store operation each.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Add, change, list, show or remove connections (one per customer tenant).
    #[command(subcommand)]
    Connection(ConnectionCommand),
    /// Print the signed consent link of a connection.
    Link {
        id: ConnectionId,
        /// How long the link stays valid (30m, 12h, 7d; at most 30d).
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Revoke every link of this connection sent so far, then print a new one.
        #[arg(long)]
        revoke_all: bool,
    },
    /// Create, list or revoke device keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Set or show the deployment's multi-tenant (vendor) app.
    #[command(subcommand)]
    VendorApp(VendorAppCommand),
    /// Set the secret that signs the notifications sent to
    /// ROOMTOKEN_WEBHOOK_URL (Standard Webhooks).
    #[command(subcommand)]
    WebhookSecret(WebhookSecretCommand),
    /// Show the state of one or every connection, those that need a human
    /// first; exits with 2 when any shown does.
    Status {
        id: Option<ConnectionId>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only connections in this state (repeat for several).
        #[arg(long, value_parser = parse_state)]
        state: Vec<ConnectionState>,
    },
    /// Run a refresh pass now.
    Refresh {
        id: Option<ConnectionId>,
        /// One attempt even if not due or in a permanent failure state.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConnectionCommand {
    /// Register a customer's app: Entra ID (--tenant) or any OAuth 2.0 server (--authorize-url, --token-url).
    Add(Box<ConnectionArgs>),
    /// Fix an app registration (new secret, client id, resources), or forget the pinned account.
    Update(Box<UpdateArgs>),
    List,
    Show {
        id: ConnectionId,
    },
    /// Remove a connection and every secret it has.
    Remove {
        id: ConnectionId,
    },
}

#[derive(Args, Debug)]
pub struct ConnectionArgs {
    pub id: ConnectionId,
    /// Use the deployment's vendor app (`roomtoken vendor-app set`): no
    /// secret; the customer's admin consents through the link. --tenant is
    /// required: only that organization can connect the link.
    #[arg(long, conflicts_with_all = [
        "client_id", "client_secret_stdin", "client_secret_file", "client_secret_expires",
        "authorize_url", "token_url", "scopes", "cloud", "authority",
        "certificate_file", "generate_certificate",
    ])]
    pub vendor_app: bool,
    /// The customer's admin fills in their own app registration (tenant,
    /// client id, secret and its expiry) in the form behind the link.
    #[arg(long, conflicts_with_all = [
        "vendor_app", "tenant", "client_id", "client_secret_stdin", "client_secret_file",
        "client_secret_expires", "authorize_url", "token_url", "scopes",
        "certificate_file", "generate_certificate",
    ])]
    pub self_service: bool,
    /// App-only (client credentials): the link leads the customer's admin
    /// through Microsoft's admin consent, nobody signs in, and the app's
    /// own tokens are served (`--resources`: graph, the default, and ews).
    /// Best with a certificate. With --vendor-app, the vendor app's tokens
    /// in the customer's tenant (--tenant required).
    #[arg(long, conflicts_with_all = [
        "self_service", "authorize_url", "token_url", "scopes", "booking_account",
    ])]
    pub app_only: bool,
    #[command(flatten)]
    pub app: AppArgs,
}

/// A certificate instead of a client secret (`private_key_jwt`): read from
/// a PEM file, or made here with its key kept in the grant secret only.
#[derive(Args, Debug, Default)]
pub struct CertificateSource {
    /// A PEM file with the private key (PKCS#8, RSA) and its certificate.
    #[arg(long, conflicts_with_all = [
        "client_secret_stdin", "client_secret_file", "generate_certificate",
    ])]
    pub certificate_file: Option<PathBuf>,
    /// Make a new RSA key and a self-signed certificate; the key stays in
    /// the grant secret, the certificate is printed (PEM) for upload to the
    /// app registration (Certificates & secrets > Certificates).
    #[arg(long, conflicts_with_all = ["client_secret_stdin", "client_secret_file"])]
    pub generate_certificate: bool,
    /// How long a generated certificate is valid, in days (at most 1095).
    #[arg(long, default_value_t = 365)]
    pub certificate_days: u32,
    /// Also write the generated certificate (public, PEM) to this file.
    #[arg(long, requires = "generate_certificate")]
    pub certificate_out: Option<PathBuf>,
}

impl CertificateSource {
    /// The certificate, or `None` when none was asked for.
    fn read(
        &self,
        id: &ConnectionId,
        now: OffsetDateTime,
    ) -> anyhow::Result<Option<CertificateKey>> {
        self.read_named(&format!("roomtoken {id}"), now)
    }

    /// The same, a generated one with the subject `name`.
    fn read_named(
        &self,
        name: &str,
        now: OffsetDateTime,
    ) -> anyhow::Result<Option<CertificateKey>> {
        if self.generate_certificate {
            return Ok(Some(CertificateKey::generate(
                name,
                self.certificate_days,
                now,
            )?));
        }
        let Some(path) = &self.certificate_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Some(CertificateKey::from_pem(&text, &text)?))
    }

    /// Prints a generated certificate for upload (and writes it to
    /// `--certificate-out`); a certificate read from a file is the
    /// operator's own and already uploaded.
    fn print(&self, key: &CertificateKey, out: &mut dyn Write) -> anyhow::Result<()> {
        let info = key.info()?;
        writeln!(
            out,
            "certificate thumbprint {} (SHA-1), valid until {}",
            info.thumbprint_sha1_hex,
            info.not_after.date()
        )?;
        if !self.generate_certificate {
            return Ok(());
        }
        if let Some(path) = &self.certificate_out {
            std::fs::write(path, key.certificate_pem())
                .with_context(|| format!("cannot write {}", path.display()))?;
            writeln!(out, "certificate written to {}", path.display())?;
        }
        writeln!(
            out,
            "upload this certificate to the app registration (Certificates & secrets > Certificates); the private key never leaves the grant secret:"
        )?;
        write!(out, "{}", key.certificate_pem())?;
        Ok(())
    }
}

/// Where a client secret comes from: never an argument.
#[derive(Args, Debug, Default)]
pub struct SecretSource {
    /// Read the client secret from standard input.
    #[arg(long)]
    pub client_secret_stdin: bool,
    /// Read the client secret from a file.
    #[arg(long, conflicts_with = "client_secret_stdin")]
    pub client_secret_file: Option<PathBuf>,
}

impl SecretSource {
    /// The secret, or `None` when neither source was given.
    fn read(&self, stdin: &mut dyn BufRead) -> anyhow::Result<Option<Secret>> {
        let text = if self.client_secret_stdin {
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .context("cannot read the client secret from stdin")?;
            text
        } else if let Some(path) = &self.client_secret_file {
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
        } else {
            return Ok(None);
        };
        let text = text.trim();
        if text.is_empty() {
            bail!("the client secret is empty");
        }
        Ok(Some(Secret::new(text)))
    }
}

/// The webhook signing secret, stored as the system secret
/// `system/webhook-secret` (ROOMTOKEN_WEBHOOK_SECRET, where set, wins).
#[derive(Subcommand, Debug)]
pub enum WebhookSecretCommand {
    /// Store a new random secret and print it, once, for the receiver.
    Generate,
    /// Store the secret given on stdin (`whsec_` and base64).
    Set,
}

/// The deployment's multi-tenant app.
#[derive(Subcommand, Debug)]
pub enum VendorAppCommand {
    /// Store the vendor app: its client id, and its secret from stdin or a
    /// file, or a certificate.
    Set(Box<VendorAppArgs>),
    /// Show the vendor app (never its secret).
    Show,
}

#[derive(Args, Debug)]
pub struct VendorAppArgs {
    #[arg(long)]
    pub client_id: String,
    #[command(flatten)]
    pub secret: SecretSource,
    /// When the client secret expires (YYYY-MM-DD, as Entra ID shows it):
    /// every vendor connection warns from 30 days before.
    #[arg(long, value_parser = parse_date)]
    pub client_secret_expires: Option<time::Date>,
    #[command(flatten)]
    pub certificate: CertificateSource,
    /// Microsoft cloud: global, usgov or china.
    #[arg(long)]
    pub cloud: Option<Cloud>,
    /// Sign-in origin replacing the cloud's (the demo and tests use a
    /// simulator); https, or http on loopback only.
    #[arg(long, hide = true, value_parser = parse_authority)]
    pub authority: Option<Url>,
}

#[derive(Args, Debug, Default)]
pub struct AppArgs {
    /// Entra ID tenant: its id (GUID) or primary domain.
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub client_id: Option<String>,
    #[command(flatten)]
    pub secret: SecretSource,
    /// When the client secret expires (YYYY-MM-DD, as Entra ID shows it):
    /// the status warns from 30 days before.
    #[arg(long, value_parser = parse_date)]
    pub client_secret_expires: Option<time::Date>,
    #[command(flatten)]
    pub certificate: CertificateSource,
    /// Microsoft cloud: global, usgov or china.
    #[arg(long)]
    pub cloud: Option<Cloud>,
    /// Token audiences: ews, graph, or both (ews,graph); the first is the default.
    #[arg(long, conflicts_with = "scopes")]
    pub resources: Option<String>,
    /// Delegated scopes of one resource, space separated, instead of presets.
    #[arg(long)]
    pub scopes: Option<String>,
    /// Authorize endpoint of a non-Microsoft OAuth 2.0 server.
    #[arg(long, requires = "token_url", conflicts_with_all = ["tenant", "cloud"])]
    pub authorize_url: Option<Url>,
    #[arg(long, requires = "authorize_url")]
    pub token_url: Option<Url>,
    /// Sign-in origin replacing the cloud's (the demo and tests use a
    /// simulator); https, or http on loopback only.
    #[arg(long, hide = true, value_parser = parse_authority)]
    pub authority: Option<Url>,
    /// The account the displays act for (booking@contoso.com): the link's
    /// pages name it, the sign-in suggests it, and another account is
    /// refused. An empty value (update) forgets it.
    #[arg(long)]
    pub booking_account: Option<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    pub id: ConnectionId,
    #[command(flatten)]
    pub app: AppArgs,
    /// Forget the pinned account and its tokens; the next consent may be any account.
    #[arg(long)]
    pub reset_account: bool,
    /// Rotate without a gap: read a second client secret from stdin. Token
    /// requests use it first and fall back to the current one while Entra
    /// ID refuses it (AADSTS7000215, 7000222). Give its
    /// --client-secret-expires.
    #[arg(long, conflicts_with_all = ["client_secret_stdin", "client_secret_file", "remove_client_secret"])]
    pub add_client_secret_stdin: bool,
    /// Retire the previous client secret once the new one works.
    #[arg(long)]
    pub remove_client_secret: bool,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create device keys and print them, one per line (shown once).
    Create {
        id: ConnectionId,
        #[arg(long)]
        label: Option<String>,
        /// How many keys, created in one store write (a fleet roll-out).
        #[arg(long, default_value_t = 1,
              value_parser = clap::value_parser!(u16).range(1..=admin::MAX_KEYS_AT_ONCE as i64))]
        count: u16,
    },
    List {
        id: ConnectionId,
    },
    /// Revoke device keys by id, in one store write.
    Revoke {
        id: ConnectionId,
        #[arg(required = true)]
        key_ids: Vec<String>,
    },
}

fn provider(args: &AppArgs) -> anyhow::Result<Option<Provider>> {
    if let (Some(authorize), Some(token)) = (&args.authorize_url, &args.token_url) {
        return Ok(Some(Provider::oauth2(authorize.clone(), token.clone())?));
    }
    let Some(tenant) = &args.tenant else {
        return Ok(None);
    };
    let mut provider = Provider::microsoft(tenant, args.cloud.unwrap_or_default())?;
    if let Provider::Microsoft { authority, .. } = &mut provider {
        authority.clone_from(&args.authority);
    }
    Ok(Some(provider))
}

fn resources(
    args: &AppArgs,
    cloud: Cloud,
    is_microsoft: bool,
) -> anyhow::Result<Option<Vec<Resource>>> {
    Ok(match (&args.scopes, &args.resources) {
        (Some(scopes), _) => Some(vec![Resource::custom(scopes)?]),
        (None, Some(names)) => Some(Resource::presets(names, cloud)?),
        (None, None) if is_microsoft => None,
        (None, None) => None,
    })
}

pub async fn run(
    cli: &Cli,
    command: &AdminCommand,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let broker = open_broker(cli).await?;
    let now = broker.now();
    match command {
        AdminCommand::Connection(command) => connection(&broker, command, stdin, out, now).await,
        AdminCommand::Link {
            id,
            ttl,
            revoke_all,
        } => {
            // The TTL first: a refused one revokes nothing.
            let expires_at = admin::link_expiry(now, *ttl)?;
            if *revoke_all {
                admin::revoke_links(&broker, id).await?;
                eprintln!("every earlier consent link of {id} is revoked");
            }
            let link = admin::consent_link(&broker, id, expires_at).await?;
            writeln!(out, "{link}")?;
            Ok(())
        }
        AdminCommand::Key(command) => key(&broker, command, out, now).await,
        AdminCommand::VendorApp(command) => vendor_app(&broker, command, stdin, out).await,
        AdminCommand::WebhookSecret(command) => webhook_secret(&broker, command, stdin, out).await,
        AdminCommand::Status { id, json, state } => {
            status(&broker, id.as_ref(), *json, state, out, now).await
        }
        AdminCommand::Refresh { id, force } => {
            refresh(&broker, id.as_ref(), *force, out, now).await
        }
    }
}

async fn connection(
    broker: &Broker,
    command: &ConnectionCommand,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    match command {
        ConnectionCommand::Add(args) if args.vendor_app => {
            let tenant = args.app.tenant.as_deref();
            let app = admin::add_vendor_connection(
                broker,
                args.id.clone(),
                tenant,
                onboarding(args),
                now,
            )
            .await?;
            if app.is_app_only() {
                writeln!(out, "added connection {} (vendor app, app-only)", app.id)?;
                writeln!(
                    out,
                    "next: roomtoken link {}  (the customer's admin grants the vendor app's application permissions; nobody signs in. Exchange Online then needs RBAC for Applications over the rooms: see the README's admin guide)",
                    app.id
                )?;
                return Ok(());
            }
            writeln!(out, "added connection {} (vendor app)", app.id)?;
            writeln!(
                out,
                "next: roomtoken link {}  (the customer's admin grants consent, then the booking account signs in)",
                app.id
            )?;
            Ok(())
        }
        ConnectionCommand::Add(args) if args.self_service => {
            let app = admin::add_self_service_connection(
                broker,
                args.id.clone(),
                args.app.cloud.unwrap_or_default(),
                args.app.authority.clone(),
                onboarding(args),
                now,
            )
            .await?;
            writeln!(out, "added connection {} (self-service)", app.id)?;
            writeln!(
                out,
                "next: roomtoken link {}  (the customer's admin fills in their app registration, then the booking account signs in)",
                app.id
            )?;
            Ok(())
        }
        ConnectionCommand::Add(args) => {
            let id = args.id.clone();
            let app = &args.app;
            let provider = provider(app)?
                .context("give --tenant (Entra ID) or --authorize-url and --token-url (any OAuth 2.0 server)")?;
            let client_id = app.client_id.clone().context("give --client-id")?;
            let certificate = app.certificate.read(&id, now)?;
            let client_secret = match app.secret.read(stdin)? {
                Some(secret) => secret,
                None if certificate.is_some() => Secret::new(""),
                None => bail!(
                    "give the client secret on stdin with --client-secret-stdin (never as an argument), or a certificate (--certificate-file, --generate-certificate)"
                ),
            };
            let resources = match resources(app, provider.cloud(), provider.is_microsoft())? {
                _ if args.app_only => Resource::app_only_presets(
                    app.resources.as_deref().unwrap_or("graph"),
                    provider.cloud(),
                )?,
                Some(resources) => resources,
                None if provider.is_microsoft() => {
                    Resource::presets("ews,graph", provider.cloud())?
                }
                None => bail!("give --scopes for a non-Microsoft server"),
            };
            let app = admin::add_connection(
                broker,
                NewConnection {
                    id,
                    provider,
                    client_id,
                    resources,
                    client_secret,
                    booking_account: app.booking_account.clone(),
                    client_secret_expires: app.client_secret_expires,
                    certificate: certificate.clone(),
                    app_only: args.app_only,
                },
                now,
            )
            .await?;
            let source = &args.app.certificate;
            writeln!(out, "added connection {}", app.id)?;
            if let Some(key) = &certificate {
                source.print(key, out)?;
            }
            if let Ok(redirect) = broker.redirect_uri() {
                writeln!(out, "redirect URI to register in the app: {redirect}")?;
            }
            writeln!(
                out,
                "next: roomtoken link {}  (send the link to the booking account)",
                app.id
            )?;
            Ok(())
        }
        ConnectionCommand::Update(args) => {
            let id = args.id.clone();
            let current = admin::get_connection(broker, &id).await?;
            // A vendor connection's tenant is in the vendor app's cloud.
            let (provider, tenant) = if current.is_vendor() && args.app.cloud.is_none() {
                (None, args.app.tenant.clone())
            } else {
                (provider(&args.app)?, None)
            };
            let effective = provider.clone().unwrap_or_else(|| current.provider.clone());
            let resources = match &args.app.resources {
                // App-only tokens take each resource's `.default` scope.
                Some(names) if current.is_app_only() => {
                    Some(Resource::app_only_presets(names, effective.cloud())?)
                }
                _ => resources(&args.app, effective.cloud(), effective.is_microsoft())?,
            };
            let update = ConnectionUpdate {
                resources,
                provider,
                client_id: args.app.client_id.clone(),
                client_secret: args.app.secret.read(stdin)?,
                booking_account: args.app.booking_account.clone(),
                reset_account: args.reset_account,
                client_secret_expires: args.app.client_secret_expires,
                add_client_secret: SecretSource {
                    client_secret_stdin: args.add_client_secret_stdin,
                    client_secret_file: None,
                }
                .read(stdin)?,
                remove_client_secret: args.remove_client_secret,
                certificate: args.app.certificate.read(&id, now)?,
                tenant,
            };
            let certificate = update.certificate.clone();
            let app = admin::update_connection(broker, &id, update).await?;
            writeln!(out, "updated connection {}", app.id)?;
            if let Some(key) = &certificate {
                args.app.certificate.print(key, out)?;
            }
            let added: Vec<&str> = app
                .resources
                .iter()
                .filter(|r| !current.resources.iter().any(|c| c.name == r.name))
                .map(|r| r.name.as_str())
                .collect();
            let state = load_status_view(broker, &id, broker.now()).await?.state;
            if !added.is_empty()
                && state != ConnectionState::PendingConsent
                && !current.is_app_only()
            {
                let added = added.join(", ");
                writeln!(
                    out,
                    "note: the booking account consented before {added} was added. Unless the customer's admin granted it for the organization, Entra ID refuses those tokens (AADSTS65001) and the next refresh stops the connection as reconnect_required: send the consent link again now (`roomtoken link {id}`)."
                )?;
            }
            Ok(())
        }
        ConnectionCommand::List => {
            for app in admin::list_connections(broker).await? {
                writeln!(
                    out,
                    "{}\t{}\t{}",
                    app.id,
                    provider_label(&app),
                    resource_names(&app)
                )?;
            }
            Ok(())
        }
        ConnectionCommand::Show { id } => {
            let app = admin::get_connection(broker, id).await?;
            writeln!(out, "id:          {}", app.id)?;
            writeln!(out, "provider:    {}", provider_label(&app))?;
            writeln!(out, "mode:        {}", <&str>::from(app.mode))?;
            if let Some(account) = &app.booking_account {
                writeln!(out, "booking account: {account}")?;
            }
            writeln!(out, "client id:   {}", app.client_id)?;
            writeln!(out, "authorize:   {}", app.provider.authorize_url())?;
            writeln!(out, "token:       {}", app.provider.token_url())?;
            for resource in &app.resources {
                writeln!(
                    out,
                    "resource:    {} ({})",
                    resource.name,
                    resource.scopes.join(" ")
                )?;
            }
            if !app.is_set_up() {
                writeln!(
                    out,
                    "client secret: none yet (the customer's admin enters it in the form behind the link)"
                )?;
                return Ok(());
            }
            if let Some(certificate) = &app.certificate {
                writeln!(
                    out,
                    "certificate: thumbprint {} (SHA-1), expires {} (its key is stored, never shown)",
                    certificate.thumbprint_sha1, certificate.expires
                )?;
                return Ok(());
            }
            writeln!(out, "client secret: stored (never shown)")?;
            if let Some(expires) = app.client_secret_expires {
                writeln!(out, "secret expires: {expires}")?;
            }
            Ok(())
        }
        ConnectionCommand::Remove { id } => {
            admin::remove_connection(broker, id).await?;
            writeln!(out, "removed connection {id}")?;
            Ok(())
        }
    }
}

fn parse_date(text: &str) -> Result<time::Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, format).map_err(|_| format!("'{text}' is not a date (YYYY-MM-DD)"))
}

/// The token endpoint behind it receives client secrets and refresh tokens.
fn parse_authority(text: &str) -> Result<Url, String> {
    let url: Url = text.parse().map_err(|e| format!("{e}"))?;
    roomtoken::domain::app::require_secure(&url, "--authority").map_err(|e| e.to_string())?;
    Ok(url)
}

fn onboarding(args: &ConnectionArgs) -> Onboarding<'_> {
    Onboarding {
        resources: args.app.resources.as_deref(),
        booking_account: args.app.booking_account.as_deref(),
        app_only: args.app_only,
    }
}

fn provider_label(app: &AppRegistration) -> String {
    if let (true, Provider::Microsoft { tenant, .. }) = (app.is_vendor(), &app.provider) {
        return format!("vendor-app:{tenant}");
    }
    if !app.is_set_up() {
        return "self-service:awaiting-form".into();
    }
    match &app.provider {
        Provider::Microsoft { tenant, cloud, .. } => {
            format!("entra-id:{cloud:?}:{tenant}").to_lowercase()
        }
        Provider::OAuth2 { token_url, .. } => {
            format!("oauth2:{}", token_url.host_str().unwrap_or("?"))
        }
    }
}

fn resource_names(app: &AppRegistration) -> String {
    app.resources
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

async fn webhook_secret(
    broker: &Broker,
    command: &WebhookSecretCommand,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let secret = match command {
        WebhookSecretCommand::Generate => WebhookSecret::generate(),
        WebhookSecretCommand::Set => {
            let mut text = String::new();
            stdin.read_line(&mut text)?;
            WebhookSecret::parse(&text)?
        }
    };
    broker.repo.set_webhook_secret(&secret).await?;
    if let WebhookSecretCommand::Generate = command {
        writeln!(out, "{}", secret.expose())?;
        eprintln!(
            "webhook secret stored; give the line above to the receiver (it is not shown again)"
        );
    } else {
        writeln!(out, "webhook secret stored")?;
    }
    if broker.config.webhook_url.is_none() {
        eprintln!("note: ROOMTOKEN_WEBHOOK_URL is not set here, so nothing is sent yet");
    }
    Ok(())
}

async fn vendor_app(
    broker: &Broker,
    command: &VendorAppCommand,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        VendorAppCommand::Set(args) => {
            let certificate = args
                .certificate
                .read_named("roomtoken vendor app", broker.now())?;
            let client_secret = match args.secret.read(stdin)? {
                Some(secret) => secret,
                None if certificate.is_some() => Secret::new(""),
                None => bail!(
                    "give the client secret on stdin with --client-secret-stdin (never as an argument), or a certificate (--certificate-file, --generate-certificate)"
                ),
            };
            let vendor = VendorApp {
                client_id: args.client_id.trim().to_owned(),
                client_secret,
                client_secret_expires: args.client_secret_expires,
                certificate: certificate.clone(),
                cloud: args.cloud.unwrap_or_default(),
                authority: args.authority.clone(),
            };
            let retried = admin::set_vendor_app(broker, &vendor).await?;
            writeln!(out, "vendor app set: client id {}", vendor.client_id)?;
            if let Some(key) = &certificate {
                args.certificate.print(key, out)?;
            }
            if retried > 0 {
                writeln!(
                    out,
                    "{retried} vendor connection(s) stopped by the old secret will be tried again by the next refresh pass"
                )?;
            }
            if let Ok(redirect) = broker.redirect_uri() {
                writeln!(out, "redirect URI to register in the app: {redirect}")?;
            }
            Ok(())
        }
        VendorAppCommand::Show => {
            let vendor = broker.repo.vendor_app().await?.context(
                "no vendor app is set: run `roomtoken vendor-app set --client-id ID --client-secret-stdin`",
            )?;
            writeln!(out, "client id:     {}", vendor.client_id)?;
            writeln!(out, "cloud:         {:?}", vendor.cloud)?;
            if let Some(Ok(certificate)) = vendor.certificate.as_ref().map(|k| k.reference()) {
                writeln!(
                    out,
                    "certificate:   thumbprint {} (SHA-1), its key stored (never shown)",
                    certificate.thumbprint_sha1
                )?;
            } else {
                writeln!(out, "client secret: stored (never shown)")?;
            }
            match vendor.credential_expires() {
                Some(date) => {
                    let days = credential_days_left(date, broker.now());
                    writeln!(out, "expires:       {date} ({days} days left)")?;
                }
                None => writeln!(
                    out,
                    "expires:       unknown (set it with --client-secret-expires)"
                )?,
            }
            Ok(())
        }
    }
}

async fn key(
    broker: &Broker,
    command: &KeyCommand,
    out: &mut dyn Write,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create { id, label, count } => {
            let keys = admin::create_keys(broker, id, label.clone(), usize::from(*count), now)
                .await
                .map_err(batching_hint)?;
            // Only the keys on stdout, so that scripts can capture them.
            for key in &keys {
                writeln!(out, "{}", key.key.expose())?;
            }
            let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
            eprintln!(
                "device key(s) {} created; each is shown only this once",
                ids.join(", ")
            );
            Ok(())
        }
        KeyCommand::List { id } => {
            let keys = admin::list_keys(broker, id).await?;
            for key in &keys {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    key.id,
                    printable(key.label.as_deref().unwrap_or("-")),
                    rfc3339(key.created_at),
                    if key.legacy {
                        "active, legacy"
                    } else {
                        "active"
                    },
                )?;
            }
            let legacy = keys.iter().filter(|k| k.legacy).count();
            if legacy > 0 {
                eprintln!(
                    "{legacy} active key(s) are legacy (made before device keys authenticated themselves): token-read refuses them unless ROOMTOKEN_LEGACY_DEVICE_KEYS=accept; give those displays new keys (`roomtoken key create {id}`), then revoke the legacy ones"
                );
            }
            Ok(())
        }
        KeyCommand::Revoke { id, key_ids } => {
            admin::revoke_keys(broker, id, key_ids, now)
                .await
                .map_err(batching_hint)?;
            for key_id in key_ids {
                writeln!(out, "revoked device key {key_id}")?;
            }
            Ok(())
        }
    }
}

/// A refusal for lack of room in the version quota, with how to do more
/// in fewer changes.
fn batching_hint(error: AdminError) -> anyhow::Error {
    let quota = matches!(error, AdminError::Store(StoreError::WriteQuota { .. }));
    let error = anyhow::Error::new(error);
    if quota {
        error.context(
            "each change to a connection is a new version of its secret, and Secrets Manager \
             keeps every version for 24 hours: create several keys in one change with \
             `roomtoken key create ID --count N`, and revoke several with \
             `roomtoken key revoke ID KEY_ID KEY_ID...`",
        )
    } else {
        error
    }
}

/// Text that came from an identity provider or a person (an account name,
/// an error message, a label), as a terminal must show it: control
/// characters (escape sequences, carriage returns) written out, never obeyed.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Some connections need a human: `roomtoken status` exits with 2.
#[derive(Debug)]
pub struct NeedsHuman(pub usize);

impl std::fmt::Display for NeedsHuman {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} connection(s) need a human (see their advice)",
            self.0
        )
    }
}

impl std::error::Error for NeedsHuman {}

fn parse_state(text: &str) -> Result<ConnectionState, String> {
    text.parse().map_err(|_| {
        let states: Vec<&str> = <ConnectionState as strum::IntoEnumIterator>::iter()
            .map(<&str>::from)
            .collect();
        format!("'{text}' is not a state: {}", states.join(", "))
    })
}

async fn status(
    broker: &Broker,
    id: Option<&ConnectionId>,
    json: bool,
    states: &[ConnectionState],
    out: &mut dyn Write,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let ids = match id {
        Some(id) => {
            admin::get_connection(broker, id).await?;
            vec![id.clone()]
        }
        None => broker.repo.connection_ids().await?,
    };
    let mut views: Vec<StatusView> = Vec::new();
    for id in &ids {
        let view = load_status_view(broker, id, now).await?;
        if states.is_empty() || states.contains(&view.state) {
            views.push(view);
        }
    }
    // Those a human must act on first, the most serious state first.
    views.sort_by(|a, b| {
        (!a.needs_human, severity(a.state), a.connection.as_str()).cmp(&(
            !b.needs_human,
            severity(b.state),
            b.connection.as_str(),
        ))
    });
    if json {
        let value = match (id, views.first()) {
            (Some(_), Some(view)) => serde_json::to_value(view)?,
            _ => serde_json::to_value(&views)?,
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        write_status_table(&views, out)?;
    }
    match views.iter().filter(|v| v.needs_human).count() {
        0 => Ok(()),
        needing => Err(NeedsHuman(needing).into()),
    }
}

/// The order of states in the fleet's table: the worst first.
fn severity(state: ConnectionState) -> u8 {
    match state {
        ConnectionState::Blocked => 0,
        ConnectionState::AppMisconfigured => 1,
        ConnectionState::ReconnectRequired => 2,
        ConnectionState::TokensTooShort => 3,
        ConnectionState::PendingConsent => 4,
        ConnectionState::Degraded => 5,
        ConnectionState::Connected => 6,
    }
}

fn write_status_table(views: &[StatusView], out: &mut dyn Write) -> anyhow::Result<()> {
    let rows: Vec<[String; 10]> = views
        .iter()
        .map(|view| {
            let earliest = view
                .expires_at
                .values()
                .min()
                .map(|at| at[..at.len().min(16)].to_owned());
            let last_error = view
                .last_error
                .as_ref()
                .map(|e| format!("{} {}", e.class, printable(&e.code)));
            let credential = view.credential_expires.as_ref().map(|date| {
                let days = view.credential_days_left.unwrap_or_default();
                match view.credential_in_use {
                    Some(SecretInUse::Previous) => format!("{date} ({days}d, previous)"),
                    _ => format!("{date} ({days}d)"),
                }
            });
            let dash = |value: Option<String>| value.unwrap_or_else(|| "-".into());
            // App-only: what each resource's token grants (`none` plainly).
            let permissions = view.granted_permissions.as_ref().map(|granted| {
                granted
                    .iter()
                    .map(|(resource, roles)| match roles.is_empty() {
                        true => format!("{resource}: none"),
                        false => format!("{resource}: {}", printable(&roles.join(","))),
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            [
                view.connection.to_string(),
                <&str>::from(view.mode).to_owned(),
                <&str>::from(view.state).to_owned(),
                printable(view.account.as_deref().unwrap_or("-")).into_owned(),
                dash(earliest),
                dash(view.last_refresh_at.map(|t| rfc3339(t)[..16].to_owned())),
                dash(last_error),
                dash(credential),
                dash(permissions.filter(|p| !p.is_empty())),
                view.advice.clone(),
            ]
        })
        .collect();
    let header = [
        "CONNECTION",
        "MODE",
        "STATE",
        "ACCOUNT",
        "TOKEN EXPIRES",
        "LAST REFRESH",
        "LAST ERROR",
        "CREDENTIAL",
        "APP PERMISSIONS",
        "ADVICE",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(n, cell)| {
                if n == last {
                    cell.to_string()
                } else {
                    format!("{cell:<width$}", width = widths[n])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

async fn refresh(
    broker: &Broker,
    id: Option<&ConnectionId>,
    force: bool,
    out: &mut dyn Write,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let options = PassOptions {
        only: id.cloned(),
        force,
    };
    let report = refresh_pass(broker, &options, now).await?;
    let mut failed = 0;
    for result in &report.results {
        let (id, outcome) = (&result.id, &result.outcome);
        let text = match outcome {
            Outcome::Refreshed { resources } => format!("refreshed ({})", resources.join(", ")),
            Outcome::NotDue => "not due".into(),
            Outcome::PendingConsent => "waiting for consent".into(),
            Outcome::Removed => "removed meanwhile".into(),
            Outcome::Skipped(state) => {
                format!("skipped: {} (use --force to try anyway)", state)
            }
            Outcome::Failed(error) => {
                failed += 1;
                format!(
                    "failed: {} {}: {}",
                    error.class,
                    printable(&error.code),
                    printable(&error.message)
                )
            }
            Outcome::BackingOff(until) => format!(
                "backing off after failures until {} (use --force to try now)",
                rfc3339(*until)
            ),
            Outcome::LostRace => "refreshed by another process meanwhile".into(),
            Outcome::Busy => "being refreshed by another pass right now".into(),
            Outcome::Deferred => {
                "due, left for the next pass (write budget or time ran out)".into()
            }
            Outcome::WriteQuota(until) => {
                failed += 1;
                format!(
                    "not refreshed: its secrets were written too often lately (Secrets Manager's version quota); room again at {}",
                    rfc3339(*until)
                )
            }
            Outcome::StoreFailed(message) => {
                failed += 1;
                format!("store failed: {}", printable(message))
            }
        };
        writeln!(out, "{id}\t{text}")?;
    }
    if failed > 0 {
        bail!("{failed} connection(s) could not be refreshed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(printable("booking@contoso.com"), "booking@contoso.com");
        assert_eq!(
            printable("AADSTS70000: \u{1b}[2Jgone\r\n"),
            "AADSTS70000: \\u{1b}[2Jgone\\r\\n"
        );
    }
}
