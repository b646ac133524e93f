//! token-refresh: on a schedule, refreshes every token before it expires,
//! classifies every failure, never loses a refresh token, and prints the
//! pass's counts as CloudWatch metrics.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use token_refresh::{PassSummary, RefreshRequest, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    roomtoken::runtime::init_logging();
    let broker = roomtoken::runtime::broker_from_env().await?;
    run(service_fn(|event: LambdaEvent<RefreshRequest>| {
        let broker = broker.clone();
        async move { Ok::<PassSummary, Error>(handle(&broker, event).await?) }
    }))
    .await
}
