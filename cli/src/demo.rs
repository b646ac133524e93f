//! `roomtoken demo`: the whole flow on one machine, with a simulated
//! Microsoft sign-in instead of a tenant, and a throw-away file store.

use crate::DemoArgs;
use crate::serve::{ServeOptions, serve_on};
use anyhow::Context;
use roomtoken::domain::{Cloud, ConnectionId, Provider, Resource, Secret};
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
    identity.add_account(FakeAccount {
        tenant: TENANT.into(),
        oid: "22222222-2222-4222-8222-22222222d3e0".into(),
        username: ACCOUNT.into(),
        name: "Room booking".into(),
        admin: false,
    });

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
        },
        now,
    )
    .await?;
    let key = admin::create_key(&broker, &id, Some("demo display".into()), now).await?;
    let link = admin::consent_link(&broker, &id, now + time::Duration::days(1)).await?;

    let instructions = format!(
        "\nroomtoken demo: a broker at {public_url} with a simulated Microsoft sign-in.\n\n\
         1. As the customer admin, open the consent link and sign in as {ACCOUNT}:\n   {link}\n\n\
         2. As a display, fetch the Exchange (EWS) token, then the Graph one:\n   \
         curl -s -H 'Authorization: Bearer {key}' {public_url}v1/connections/demo/token\n   \
         curl -s -H 'Authorization: Bearer {key}' '{public_url}v1/connections/demo/token?resource=graph'\n\n\
         3. See the connection's state:\n   \
         curl -s -H 'Authorization: Bearer {key}' {public_url}v1/connections/demo/status\n\n\
         Tokens are refreshed every 5 minutes when due. Everything is forgotten when you stop (Ctrl-C).\n",
        key = key.key.expose(),
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
        },
    )
    .await;
    drop(store_dir);
    result
}
