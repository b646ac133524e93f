//! `roomtoken demo`: the whole flow on one machine, with a simulated
//! Microsoft sign-in instead of a tenant, and a throw-away file store.

use crate::DemoArgs;
use crate::serve::{ServeLimits, ServeOptions, serve_on};
use anyhow::Context;
use roomtoken::domain::{Cloud, ConnectionId, Provider, Resource, Secret, VendorApp};
use roomtoken::flows::admin::{self, NewConnection};
use roomtoken::store::StoreSpec;
use roomtoken::{Broker, Config};
use roomtoken_fake_identity::{FakeAccount, FakeApp, FakeIdentity};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const TENANT: &str = "00000000-0000-4000-8000-00000000d3e0";
const CLIENT_ID: &str = "11111111-1111-4111-8111-11111111d3e0";
const ACCOUNT: &str = "booking@contoso.example";
const ADMIN: &str = "admin@contoso.example";
/// The vendor's own tenant and multi-tenant app.
const VENDOR_TENANT: &str = "33333333-3333-4333-8333-33333333d3e0";
const VENDOR_CLIENT_ID: &str = "44444444-4444-4444-8444-44444444d3e0";
/// Another organization, to see a second tenant refused.
const OTHER_TENANT: &str = "55555555-5555-4555-8555-55555555d3e0";
const OTHER_ACCOUNT: &str = "booking@fabrikam.example";
/// The app a customer admin registers themselves, for self-service mode,
/// in the tenant of the domain they type into the form.
const SELF_CLIENT_ID: &str = "77777777-7777-4777-8777-77777777d3e0";
const DOMAIN: &str = "contoso.example";

pub async fn demo(args: &DemoArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {} (try --addr 127.0.0.1:0)", args.addr))?;
    let public_url: url::Url = format!("http://{}", listener.local_addr()?).parse()?;
    let identity = FakeIdentity::start()
        .await
        .context("cannot start the simulated sign-in")?;
    let client_secret = roomtoken::crypto::generate_signing_key();
    identity.register_app(FakeApp {
        tenant: TENANT.into(),
        client_id: CLIENT_ID.into(),
        client_secret: client_secret.expose().to_owned(),
        redirect_uris: vec![format!("{}callback", public_url)],
        multi_tenant: false,
        permissions: Vec::new(),
    });
    // Simulated, and shown in the instructions: the newcomer types it into
    // the self-service form as a customer admin would paste theirs.
    let self_service_secret = roomtoken::crypto::generate_signing_key();
    identity.register_app(FakeApp {
        tenant: TENANT.into(),
        client_id: SELF_CLIENT_ID.into(),
        client_secret: self_service_secret.expose().to_owned(),
        redirect_uris: vec![format!("{}callback", public_url)],
        multi_tenant: false,
        permissions: Vec::new(),
    });
    identity.add_domain(TENANT, DOMAIN);
    let vendor_secret = roomtoken::crypto::generate_signing_key();
    let mut permissions: Vec<String> = Vec::new();
    for resource in Resource::presets("ews,graph", Cloud::Global)? {
        permissions.extend(resource.scopes);
    }
    identity.register_app(FakeApp {
        tenant: VENDOR_TENANT.into(),
        client_id: VENDOR_CLIENT_ID.into(),
        client_secret: vendor_secret.expose().to_owned(),
        redirect_uris: vec![format!("{}callback", public_url)],
        multi_tenant: true,
        permissions,
    });
    for (tenant, oid, username, name, admin) in [
        (
            TENANT,
            "22222222-2222-4222-8222-22222222d3e0",
            ACCOUNT,
            "Room booking",
            false,
        ),
        (
            TENANT,
            "22222222-2222-4222-8222-22222222ad01",
            ADMIN,
            "Contoso administrator",
            true,
        ),
        (
            OTHER_TENANT,
            "66666666-6666-4666-8666-66666666d3e0",
            OTHER_ACCOUNT,
            "Fabrikam room booking",
            false,
        ),
    ] {
        identity.add_account(FakeAccount {
            tenant: tenant.into(),
            oid: oid.into(),
            username: username.into(),
            name: name.into(),
            admin,
        });
    }

    let store_dir = tempfile::tempdir().context("cannot create a temporary store")?;
    let mut config = Config::new(StoreSpec::File(store_dir.path().to_owned()));
    config.public_url = Some(public_url.clone());
    let broker = Arc::new(Broker::from_config(config).await?);
    let id = ConnectionId::parse("demo")?;
    let Provider::Microsoft { tenant, cloud, .. } = Provider::microsoft(TENANT, Cloud::Global)?
    else {
        unreachable!("a Microsoft provider")
    };
    let provider = Provider::Microsoft {
        tenant,
        cloud,
        authority: Some(identity.base_url()),
    };
    let now = broker.now();
    admin::add_connection(
        &broker,
        NewConnection {
            id: id.clone(),
            provider,
            client_id: CLIENT_ID.into(),
            resources: Resource::presets("ews,graph", Cloud::Global)?,
            client_secret: Secret::new(client_secret.expose()),
            booking_account: None,
            client_secret_expires: None,
            certificate: None,
            app_only: false,
        },
        now,
    )
    .await?;
    let (key, link) = key_and_link(&broker, &id, now).await?;

    let _retried = admin::set_vendor_app(
        &broker,
        &VendorApp {
            client_id: VENDOR_CLIENT_ID.into(),
            client_secret: Secret::new(vendor_secret.expose()),
            client_secret_expires: None,
            certificate: None,
            cloud: Cloud::Global,
            authority: Some(identity.base_url()),
        },
    )
    .await?;
    let vendor_id = ConnectionId::parse("demo-vendor")?;
    // The vendor's page names the account to sign in with.
    let onboarding = admin::Onboarding {
        resources: None,
        booking_account: Some(ACCOUNT),
        app_only: false,
    };
    admin::add_vendor_connection(&broker, vendor_id.clone(), Some(TENANT), onboarding, now).await?;
    let (vendor_key, vendor_link) = key_and_link(&broker, &vendor_id, now).await?;

    // App-only with the vendor app, in the customer's tenant: the admin
    // grants, nobody signs in.
    let rooms_id = ConnectionId::parse("demo-rooms")?;
    let app_only = admin::Onboarding {
        resources: Some("graph"),
        booking_account: None,
        app_only: true,
    };
    admin::add_vendor_connection(&broker, rooms_id.clone(), Some(TENANT), app_only, now).await?;
    let (rooms_key, rooms_link) = key_and_link(&broker, &rooms_id, now).await?;

    let self_id = ConnectionId::parse("demo-self")?;
    admin::add_self_service_connection(
        &broker,
        self_id.clone(),
        Cloud::Global,
        Some(identity.base_url()),
        admin::Onboarding::default(),
        now,
    )
    .await?;
    let (self_key, self_link) = key_and_link(&broker, &self_id, now).await?;
    let expires = (now + time::Duration::days(365)).date();

    let instructions = format!(
        "\nroomtoken demo: a broker at {public_url} with a simulated Microsoft sign-in.\n\n\
         1. As the customer admin, open the consent link and sign in as {ACCOUNT}:\n   {link}\n\n\
         2. As a display, fetch the Exchange (EWS) token, then the Graph one:\n   \
         curl -s -H 'Authorization: Bearer {key}' {public_url}v1/connections/demo/token\n   \
         curl -s -H 'Authorization: Bearer {key}' '{public_url}v1/connections/demo/token?resource=graph'\n\n\
         3. See the connection's state:\n   \
         curl -s -H 'Authorization: Bearer {key}' {public_url}v1/connections/demo/status\n\n\
         Vendor-app mode (one multi-tenant app for every customer): open this link, grant as\n\
         {ADMIN} (\"Grant for my organization\"), then sign in as {ACCOUNT}.\n\
         Signing in before the grant shows what a customer sees then; {OTHER_ACCOUNT} is\n\
         another organization. Add &lang=fr for French.\n   {vendor_link}\n   \
         curl -s -H 'Authorization: Bearer {vendor_key}' {public_url}v1/connections/demo-vendor/token\n\n\
         Self-service mode (the customer admin types in their own app registration): open this\n\
         link and fill in tenant {DOMAIN}, client id {SELF_CLIENT_ID},\n\
         client secret {self_secret} (simulated), expiry {expires},\n\
         then sign in as {ACCOUNT}.\n   {self_link}\n   \
         curl -s -H 'Authorization: Bearer {self_key}' {public_url}v1/connections/demo-self/token\n\n\
         App-only mode (the vendor app's own Graph token, nobody signs in): open this link and\n\
         grant as {ADMIN}; the token names no user.\n   {rooms_link}\n   \
         curl -s -H 'Authorization: Bearer {rooms_key}' {public_url}v1/connections/demo-rooms/token\n\n\
         Tokens are refreshed every 5 minutes when due. Everything is forgotten when you stop (Ctrl-C).\n",
        key = key.key.expose(),
        vendor_key = vendor_key.key.expose(),
        self_key = self_key.key.expose(),
        rooms_key = rooms_key.key.expose(),
        self_secret = self_service_secret.expose(),
    );
    // The broker keeps serving even if whoever started it stopped reading.
    if let Err(e) = out
        .write_all(instructions.as_bytes())
        .and_then(|()| out.flush())
    {
        tracing::warn!(error = %e, "could not print the demo instructions");
    }
    let result = serve_on(
        listener,
        broker,
        ServeOptions {
            refresh_every: Some(Duration::from_secs(300)),
            limits: ServeLimits::default(),
        },
    )
    .await;
    drop(store_dir);
    result
}

/// A demo connection's display key and its consent link (valid a day).
async fn key_and_link(
    broker: &Broker,
    id: &ConnectionId,
    now: time::OffsetDateTime,
) -> anyhow::Result<(roomtoken::domain::DeviceKey, url::Url)> {
    let key = admin::create_key(broker, id, Some("demo display".into()), now).await?;
    let link = admin::consent_link(broker, id, now + time::Duration::days(1)).await?;
    Ok((key, link))
}
