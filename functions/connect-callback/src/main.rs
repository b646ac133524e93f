//! connect-callback: the sign-in answer's code is redeemed for tokens, the account
//! is pinned, the grant stored in Secrets Manager, and the admin told who is connected.

use lambda_http::{Error, run};

#[tokio::main]
async fn main() -> Result<(), Error> {
    roomtoken::runtime::init_logging();
    let broker = roomtoken::runtime::broker_from_env().await?;
    run(roomtoken::http::connect_callback_routes(broker)).await
}
