//! Prepares a file store for `scripts/bench-read.sh`: a connection that the
//! fake identity platform has connected, and one device key. Prints
//! `CONNECTION_ID DEVICE_KEY` on stdout and exits; `roomtoken serve` then
//! serves the store.

use anyhow::Context;
use roomtoken_tests::{Setup, StoreKind};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .context("usage: bench-fixture STORE_DIR")?;
    let app = Setup::new(StoreKind::File)
        .store_dir(dir.into())
        .spawn()
        .await;
    let (id, key) = app.connected("bench").await;
    println!("{id} {key}");
    Ok(())
}
