//! connect-start: a customer admin opens a signed consent link and is redirected
//! to the sign-in page, with PKCE, `state` and nonce sealed in a cookie.

use lambda_http::{Error, run};

#[tokio::main]
async fn main() -> Result<(), Error> {
    roomtoken::runtime::init_logging();
    let broker = roomtoken::runtime::broker_from_env().await?;
    run(roomtoken::http::connect_start_routes(broker)).await
}
