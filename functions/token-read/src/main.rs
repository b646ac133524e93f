//! token-read: displays fetch the current access token (EWS or Graph), or the
//! connection's status, with their own revocable device key.

use lambda_http::{Error, run};

#[tokio::main]
async fn main() -> Result<(), Error> {
    roomtoken::runtime::init_logging();
    let broker = roomtoken::runtime::broker_from_env().await?;
    roomtoken::runtime::prepare_token_read(&broker).await;
    run(roomtoken::http::token_read_routes(broker)).await
}
