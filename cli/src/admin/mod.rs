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

mod args;
mod connection;
mod key;
mod refresh;
mod secrets;
mod status;

pub use args::*;
use connection::*;
use key::*;
use refresh::*;
use secrets::*;
pub use status::NeedsHuman;
use status::*;

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
