//! token-refresh: on a schedule, refreshes every token before it expires,
//! classifies every failure, and never loses a refresh token.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use roomtoken::flows::refresh::{PassSummary, RefreshRequest, scheduled_pass};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let broker = roomtoken::runtime::broker_from_env().await?;
    run(service_fn(|event: LambdaEvent<RefreshRequest>| {
        let broker = broker.clone();
        async move { Ok::<PassSummary, Error>(scheduled_pass(&broker, event.payload).await?) }
    }))
    .await
}
