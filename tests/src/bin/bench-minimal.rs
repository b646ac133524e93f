//! The baseline of `scripts/bench-read.sh`: the least an axum server can do
//! for a token read, answering every GET with the same JSON body (read from
//! a file, so that it is as large as the broker's answer).

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::routing::get;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(body)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: bench-minimal ADDR BODY_FILE");
    };
    let body = Bytes::from(std::fs::read(&body).with_context(|| format!("cannot read {body}"))?);
    let app = Router::new().fallback(get(move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    }));
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}
