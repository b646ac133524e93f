//! The operator's commands and their arguments, as clap reads them.

use super::*;

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
    pub(super) fn read(
        &self,
        id: &ConnectionId,
        now: OffsetDateTime,
    ) -> anyhow::Result<Option<CertificateKey>> {
        self.read_named(&format!("roomtoken {id}"), now)
    }

    /// The same, a generated one with the subject `name`.
    pub(super) fn read_named(
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
    pub(super) fn print(&self, key: &CertificateKey, out: &mut dyn Write) -> anyhow::Result<()> {
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
    pub(super) fn read(&self, stdin: &mut dyn BufRead) -> anyhow::Result<Option<Secret>> {
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

pub(super) fn parse_date(text: &str) -> Result<time::Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, format).map_err(|_| format!("'{text}' is not a date (YYYY-MM-DD)"))
}

/// The token endpoint behind it receives client secrets and refresh tokens.
pub(super) fn parse_authority(text: &str) -> Result<Url, String> {
    let url: Url = text.parse().map_err(|e| format!("{e}"))?;
    roomtoken::domain::app::require_secure(&url, "--authority").map_err(|e| e.to_string())?;
    Ok(url)
}

pub(super) fn parse_state(text: &str) -> Result<ConnectionState, String> {
    text.parse().map_err(|_| {
        let states: Vec<&str> = <ConnectionState as strum::IntoEnumIterator>::iter()
            .map(<&str>::from)
            .collect();
        format!("'{text}' is not a state: {}", states.join(", "))
    })
}
