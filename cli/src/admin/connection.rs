//! `roomtoken connection …`: add, update, show, list and remove connections.

use super::*;

pub(super) fn provider(args: &AppArgs) -> anyhow::Result<Option<Provider>> {
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

pub(super) fn resources(
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

pub(super) async fn connection(
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

pub(super) fn onboarding(args: &ConnectionArgs) -> Onboarding<'_> {
    Onboarding {
        resources: args.app.resources.as_deref(),
        booking_account: args.app.booking_account.as_deref(),
        app_only: args.app_only,
    }
}

pub(super) fn provider_label(app: &AppRegistration) -> String {
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

pub(super) fn resource_names(app: &AppRegistration) -> String {
    app.resources
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}
