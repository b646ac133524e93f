//! `roomtoken serve` against clients that hold on: headers sent one byte at
//! a time (slowloris), idle connections by the thousand, requests that take
//! too long. Each is cut so that displays keep their place.

use roomtoken_cli::ServeLimits;
use roomtoken_tests::{Setup, StoreKind, TestApp, unique_id};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than any limit set here: past it the server did not act.
const BOUND: Duration = Duration::from_secs(20);

async fn connect(app: &TestApp) -> TcpStream {
    let address = format!(
        "{}:{}",
        app.url.host_str().expect("host"),
        app.url.port().expect("port")
    );
    TcpStream::connect(address).await.expect("connect")
}

/// Reads until the server closes the connection; what it sent meanwhile.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&received).into_owned()
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: roomtoken\r\n\r\n";

/// Asks for the health route on `stream`: answered 200, in time.
async fn assert_health_served(stream: &mut TcpStream) {
    stream.write_all(HEALTH).await.expect("a request");
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(BOUND, stream.read(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

#[tokio::test]
async fn headers_that_never_end_and_idle_connections_are_cut() {
    let app = Setup::new(StoreKind::File)
        .serve_limits(ServeLimits {
            header_read: Duration::from_secs(1),
            ..ServeLimits::default()
        })
        .spawn()
        .await;

    let mut slow = connect(&app).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: roo")
        .await
        .expect("half the headers");
    let answer = until_closed(&mut slow).await;
    assert!(!answer.contains("200 OK"), "{answer}");

    // A kept-alive connection that says nothing more is cut as well.
    let mut idle = connect(&app).await;
    idle.write_all(HEALTH).await.expect("a request");
    let answer = until_closed(&mut idle).await;
    assert!(
        answer.starts_with("HTTP/1.1 200 OK"),
        "served first: {answer}"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_and_the_others_served() {
    let app = Setup::new(StoreKind::File)
        .serve_limits(ServeLimits {
            header_read: Duration::from_secs(60),
            max_connections: 2,
            ..ServeLimits::default()
        })
        .spawn()
        .await;
    let mut first = connect(&app).await;
    let _second = connect(&app).await;
    let mut third = connect(&app).await;
    let refused = until_closed(&mut third).await;
    assert_eq!(refused, "", "closed without an answer");

    assert_health_served(&mut first).await;
}

/// One address holds at most its share of the connections: a client
/// holding slow connections from one address is cut there, and a client at
/// another address is still served.
#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let app = Setup::new(StoreKind::File)
        .serve_limits(ServeLimits {
            header_read: Duration::from_secs(60),
            max_connections: 10,
            max_connections_per_peer: 2,
            ..ServeLimits::default()
        })
        .spawn()
        .await;
    let _first = connect(&app).await;
    let _second = connect(&app).await;
    let mut third = connect(&app).await;
    assert_eq!(
        until_closed(&mut third).await,
        "",
        "closed without an answer"
    );

    // Another loopback address: its own share.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("address"))
        .expect("bind 127.0.0.2");
    let server = format!(
        "{}:{}",
        app.url.host_str().expect("host"),
        app.url.port().expect("port")
    );
    let mut other = socket
        .connect(server.parse().expect("server address"))
        .await
        .expect("connect");
    assert_health_served(&mut other).await;
}

/// A request that outlives its limit (a callback stuck on a slow identity
/// provider) is answered 408, and stores nothing.
#[tokio::test]
async fn a_request_past_its_limit_is_answered_408() {
    let app = Setup::new(StoreKind::File)
        .serve_limits(ServeLimits {
            request: Duration::from_millis(500),
            ..ServeLimits::default()
        })
        .spawn()
        .await;
    let id = unique_id("slow");
    app.add_connection(&id).await;
    app.identity.set_latency(Duration::from_secs(3));
    let consent = app.consent(&id).await;
    app.identity.set_latency(Duration::ZERO);
    assert_eq!(consent.status, 408, "{}", consent.body);
    assert!(app.grant(&id).await.is_none(), "nothing stored");
}
