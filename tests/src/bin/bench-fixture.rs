//! Prepares a file store for `scripts/bench-read.sh`: a connection that the
//! fake identity platform has connected, and one device key. Prints
//! `CONNECTION_ID DEVICE_KEY` on stdout and exits; `roomtoken serve` then
//! serves the store.

use anyhow::Context;
use roomtoken_tests::{BrokerOptions, StoreKind, spawn_broker_with};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .context("usage: bench-fixture STORE_DIR")?;
    let broker = spawn_broker_with(
        StoreKind::File,
        BrokerOptions {
            store_dir: Some(dir.into()),
            ..BrokerOptions::default()
        },
    )
    .await;
    let (id, key) = broker.connected("bench").await;
    println!("{id} {key}");
    Ok(())
}
