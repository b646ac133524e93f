//! token-read over real HTTP: device-key lifecycle and revocation delay,
//! the uniform 401, ETag and 304, 503 for every state that serves no token,
//! `min_validity`, the audit log line, and the read cache's store traffic.
//!
//! The served broker's clock stands still unless a test moves it, so "within
//! one TTL" and "after the TTL" are exact, with no sleeping.

use roomtoken::domain::{ConnectionId, ConnectionState};
use roomtoken::flows::admin;
use roomtoken::flows::read::{STALE_IF_ERROR, TokenRequest, read_token};
use roomtoken::store::{Part, SecretName};
use roomtoken_tests::{
    Setup, StoreKind, TestApp, TokenRead, assert_no_secret_logged, captured_logs, http, key_id,
    on_both_stores, spawn_app, tcp_proxy, unique_id,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const MARGIN: u64 = 20 * 60;

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("a {name} header"))
        .to_str()
        .expect("an ASCII header")
}

fn max_age(response: &reqwest::Response) -> u64 {
    header(response, "cache-control")
        .strip_prefix("private, max-age=")
        .expect("private, max-age=N")
        .parse()
        .expect("a number of seconds")
}

/// The audit lines of one connection's token reads, quotes removed.
fn audit_lines(id: &str) -> Vec<String> {
    captured_logs()
        .lines()
        .filter(|line| line.contains("token read"))
        .map(|line| line.replace('"', ""))
        .filter(|line| line.contains(&format!("connection={id} ")))
        .collect()
}

async fn set_state(app: &TestApp, id: &str, state: ConnectionState) {
    app.change_serve(id, |serve| serve.status.state = state)
        .await;
}

/// Makes every stored token of the connection expire `seconds` after the
/// broker's now (negative: already expired).
async fn set_expiry(app: &TestApp, id: &str, seconds: i64) {
    let expires_at = app.broker.now() + time::Duration::seconds(seconds);
    app.change_serve(id, |serve| {
        let access = serve.access.as_mut().expect("stored access tokens");
        for token in &mut access.tokens {
            token.expires_at = expires_at;
        }
    })
    .await;
}

async fn key_lifecycle(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let (id, key) = app.connected("life").await;
    let kid = key_id(&key);
    let mut reads = 0;

    let served = app.get_token(&id, Some(&key), None).await;
    reads += 1;
    assert_eq!(served.status(), 200);
    let listed = app.cli(&["key", "list", &id], "").await.unwrap();
    assert!(listed.contains(&format!("{kid}\tlobby")), "{listed}");
    assert!(!listed.contains(&key), "key list never shows a key");

    app.cli(&["key", "revoke", &id, &kid], "").await.unwrap();
    let listed = app.cli(&["key", "list", &id], "").await.unwrap();
    assert!(
        !listed.contains(&kid),
        "a revoked key is not kept: {listed}"
    );
    // Within one TTL the broker still uses what it read: the documented
    // revocation delay.
    let cached = app.get_token(&id, Some(&key), None).await;
    reads += 1;
    assert_eq!(cached.status(), 200, "revocation waits for the cache TTL");

    app.expire_read_cache();
    let missing = app.get_token(&id, None, None).await;
    reads += 1;
    let uniform = missing.bytes().await.unwrap();
    for attempt in ["first read after the TTL", "a retry", "a retry a TTL later"] {
        if attempt.ends_with("later") {
            app.expire_read_cache();
        }
        let refused = app.get_token(&id, Some(&key), None).await;
        reads += 1;
        assert_eq!(refused.status(), 401, "{attempt}");
        assert_eq!(refused.bytes().await.unwrap(), uniform, "{attempt}");
    }
    let status = app.get_status(&id, Some(&key)).await;
    assert_eq!(status.status(), 401, "the status route refuses it too");

    // A key created afterwards works once the TTL has passed.
    let second = app.create_key(&id).await;
    app.expire_read_cache();
    let served = app.get_token(&id, Some(&second), Some("graph")).await;
    reads += 1;
    assert_eq!(served.status(), 200);

    // One audit line per read, with the key id and never the key.
    let lines = audit_lines(&id);
    assert_eq!(lines.len(), reads, "{lines:#?}");
    let served_by_first: Vec<_> = lines
        .iter()
        .filter(|l| l.contains(&format!("key_id={kid} ")) && l.contains("outcome=served"))
        .collect();
    assert_eq!(served_by_first.len(), 2, "{lines:#?}");
    assert!(served_by_first.iter().all(|l| l.contains("resource=ews")));
    let revoked: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("outcome=unauthorized") && l.contains("reason=revoked_key"))
        .collect();
    assert_eq!(revoked.len(), 3, "{lines:#?}");
    assert!(
        revoked
            .iter()
            .all(|l| l.contains(&format!("key_id={kid} ")))
    );
    assert!(lines.iter().any(|l| l.contains("reason=missing_key")));
    assert!(
        lines.iter().all(|l| l.contains("source_ip=127.0.0.1")),
        "each line names the client: {lines:#?}"
    );
    assert!(lines.iter().any(|l| {
        l.contains(&format!("key_id={} ", key_id(&second)))
            && l.contains("resource=graph")
            && l.contains("outcome=served")
    }));
    assert_no_secret_logged(&app.secrets(&[&key, &second]));
}

on_both_stores!(key_lifecycle => key_lifecycle_on_the_file_store, key_lifecycle_on_secrets_manager);

#[tokio::test]
async fn a_zero_ttl_turns_the_cache_off() {
    let app = Setup::new(StoreKind::File)
        .with_config(|config| config.read_cache_ttl = Duration::ZERO)
        .spawn()
        .await;
    let (id, key) = app.connected("nocache").await;
    let before = app.store.calls().gets;
    for _ in 0..3 {
        assert_eq!(app.get_token(&id, Some(&key), None).await.status(), 200);
    }
    assert_eq!(app.store.calls().gets - before, 3, "one secret per read");
    app.cli(&["key", "revoke", &id, &key_id(&key)], "")
        .await
        .unwrap();
    assert_eq!(
        app.get_token(&id, Some(&key), None).await.status(),
        401,
        "revoked on the very next read"
    );
}

#[tokio::test]
async fn unauthorized_reads_all_look_the_same() {
    let app = spawn_app(StoreKind::File).await;
    let (id, key) = app.connected("keys").await;
    let revoked = app.create_key(&id).await;
    let (other, other_key) = app.connected("other").await;
    assert_eq!(app.get_token(&id, Some(&revoked), None).await.status(), 200);
    app.cli(&["key", "revoke", &id, &key_id(&revoked)], "")
        .await
        .unwrap();
    app.expire_read_cache();

    let wrong = format!("{}x", &key[..key.len() - 1]);
    let cases = [
        ("wrong key", id.as_str(), Some(wrong.as_str())),
        ("revoked key", id.as_str(), Some(revoked.as_str())),
        ("missing key", id.as_str(), None),
        ("malformed key", id.as_str(), Some("nonsense")),
        (
            "another connection's key",
            id.as_str(),
            Some(other_key.as_str()),
        ),
        (
            "unknown connection",
            "no-such-connection",
            Some(key.as_str()),
        ),
        ("invalid connection id", "..%2F..", Some(key.as_str())),
    ];
    let mut bodies = Vec::new();
    for (what, connection, key) in cases {
        for route in ["token", "status"] {
            let response = match route {
                "token" => app.get_token(connection, key, None).await,
                _ => app.get_status(connection, key).await,
            };
            assert_eq!(response.status(), 401, "{what} on {route}");
            assert_eq!(header(&response, "www-authenticate"), "Bearer");
            assert_eq!(header(&response, "cache-control"), "no-store");
            bodies.push((what, response.bytes().await.unwrap()));
        }
    }
    for (what, body) in &bodies {
        assert_eq!(
            body, &bodies[0].1,
            "{what} answers the same bytes as {}",
            bodies[0].0
        );
    }
    assert_eq!(
        app.get_token(&id, Some(&key), None).await.status(),
        200,
        "the valid key still works"
    );
    assert_eq!(
        app.get_token(&other, Some(&other_key), None).await.status(),
        200
    );
}

#[tokio::test]
async fn a_matching_etag_gets_304_until_the_token_is_refreshed() {
    let app = spawn_app(StoreKind::File).await;
    let (id, key) = app.connected("etag").await;
    let first = app.get_token(&id, Some(&key), None).await;
    assert_eq!(first.status(), 200);
    let etag = header(&first, "etag").to_owned();
    let hex = etag.trim_matches('"');
    assert!(
        etag.len() == 34 && hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{etag}"
    );
    let age = max_age(&first);
    let body: Value = first.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    // The tag is a one-way digest of the whole token, computed here
    // independently: neither the token, nor a piece of it, nor its length.
    let digest = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes());
    assert_eq!(hex, hex::encode(&digest[..16]), "the ETag is a hash");
    for window in token.as_bytes().windows(4) {
        assert!(!hex.contains(&hex::encode(window)), "a piece of the token");
    }
    let expires_in = body["expires_in"].as_u64().unwrap();
    assert!(
        age <= expires_in - MARGIN && age + 5 >= expires_in - MARGIN,
        "max-age {age} is the life left ({expires_in}) minus the margin"
    );

    let read = TokenRead::new(&id).key(&key);
    let not_modified = app
        .read(TokenRead {
            if_none_match: Some(&etag),
            ..read
        })
        .await;
    assert_eq!(not_modified.status(), 304);
    assert_eq!(header(&not_modified, "etag"), etag);
    assert_eq!(max_age(&not_modified), age);
    assert!(not_modified.bytes().await.unwrap().is_empty(), "no body");
    for other in ["\"00000000000000000000000000000000\"", "W/\"x\""] {
        let changed = app
            .read(TokenRead {
                if_none_match: Some(other),
                ..read
            })
            .await;
        assert_eq!(changed.status(), 200, "{other}");
    }
    let graph = app.get_token(&id, Some(&key), Some("graph")).await;
    assert_ne!(header(&graph, "etag"), etag, "each token has its own tag");

    let printed = app.cli(&["refresh", &id, "--force"], "").await.unwrap();
    assert!(printed.contains("refreshed"), "{printed}");
    app.expire_read_cache();
    let refreshed = app
        .read(TokenRead {
            if_none_match: Some(&etag),
            ..read
        })
        .await;
    assert_eq!(refreshed.status(), 200, "a new token, so a full answer");
    let new_etag = header(&refreshed, "etag").to_owned();
    assert_ne!(new_etag, etag);
    let body: Value = refreshed.json().await.unwrap();
    assert_ne!(body["access_token"].as_str().unwrap(), token);
    let again = app
        .read(TokenRead {
            if_none_match: Some(&new_etag),
            ..read
        })
        .await;
    assert_eq!(again.status(), 304);
    assert_no_secret_logged(&app.secrets(&[&key]));
}

async fn assert_not_serving(app: &TestApp, id: &str, key: &str, state: &str, retry_after: u64) {
    let response = app.get_token(id, Some(key), None).await;
    assert_eq!(response.status(), 503, "{state}");
    assert_eq!(
        header(&response, "retry-after").parse::<u64>().unwrap(),
        retry_after,
        "{state}"
    );
    assert_eq!(header(&response, "cache-control"), "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "no_valid_token", "{state}");
    assert_eq!(body["state"], state);
    assert!(body.get("access_token").is_none(), "never a stale token");
}

#[tokio::test]
async fn every_state_that_serves_no_token_answers_503_with_retry_after() {
    let app = spawn_app(StoreKind::File).await;
    let id = unique_id("states");
    app.add_connection(&id).await;
    let key = app.create_key(&id).await;
    assert_not_serving(&app, &id, &key, "pending_consent", 300).await;

    assert_eq!(app.consent(&id).await.status, 200);
    app.expire_read_cache();
    assert_eq!(app.get_token(&id, Some(&key), None).await.status(), 200);
    for state in [
        ConnectionState::ReconnectRequired,
        ConnectionState::AppMisconfigured,
        ConnectionState::Blocked,
    ] {
        // The token is still valid: the state alone stops it.
        set_state(&app, &id, state).await;
        app.expire_read_cache();
        assert_not_serving(&app, &id, &key, state.into(), 300).await;
        let status = app.get_status(&id, Some(&key)).await;
        assert_eq!(status.status(), 200);
        assert_eq!(
            status.json::<Value>().await.unwrap()["state"],
            <&str>::from(state)
        );
    }

    // Degraded serves a still-valid token, and nothing once it has expired.
    set_state(&app, &id, ConnectionState::Degraded).await;
    app.expire_read_cache();
    assert_eq!(app.get_token(&id, Some(&key), None).await.status(), 200);
    set_expiry(&app, &id, -60).await;
    app.expire_read_cache();
    assert_not_serving(&app, &id, &key, "degraded", 60).await;
    // Nor a token with less than 30 seconds left.
    set_expiry(&app, &id, 29).await;
    app.expire_read_cache();
    assert_not_serving(&app, &id, &key, "degraded", 60).await;
}

#[tokio::test]
async fn a_cached_token_is_never_served_past_its_servable_life() {
    let app = spawn_app(StoreKind::File).await;
    let (id, key) = app.connected("expiring").await;
    // 40 s left: servable (30 s minimum) for 10 more seconds.
    set_expiry(&app, &id, 40).await;
    let first = app.get_token(&id, Some(&key), None).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.json::<Value>().await.unwrap()["expires_in"], 40);
    // The refresh pass stores a longer-lived token meanwhile.
    set_expiry(&app, &id, 3_600).await;
    // 11 s later, well within the 30 s TTL: the cached copy is no longer
    // servable, so the broker reads again and finds the new expiry.
    app.clock.advance(Duration::from_secs(11));
    let second = app.get_token(&id, Some(&key), None).await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        second.json::<Value>().await.unwrap()["expires_in"],
        3_600 - 11
    );
}

/// A connection on Secrets Manager reached through a proxy in front of moto,
/// with a display's key and the token it was served (so now in the cache).
async fn served_behind_a_proxy(
    prefix: &str,
) -> (tcp_proxy::TcpProxy, TestApp, String, String, Value) {
    let proxy = tcp_proxy::TcpProxy::before_moto().await;
    let app = Setup::new(StoreKind::SecretsManager)
        .aws_endpoint(proxy.url())
        .isolated_prefix()
        .spawn()
        .await;
    let (id, key) = app.connected(prefix).await;
    let first = app.get_token(&id, Some(&key), None).await;
    assert_eq!(first.status(), 200);
    let token = first.json::<Value>().await.unwrap()["access_token"].clone();
    (proxy, app, id, key, token)
}

/// Secrets Manager unreachable (a proxy in front of moto goes down): the
/// token read last is served past the cache's TTL for the grace, while it
/// has time left; then 503 `store_unavailable`; then served again.
#[tokio::test]
#[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
async fn a_store_outage_serves_the_token_read_last_for_a_while() {
    let (proxy, app, id, key, token) = served_behind_a_proxy("outage").await;

    proxy.down();
    app.expire_read_cache();
    let during = app.get_token(&id, Some(&key), None).await;
    assert_eq!(during.status(), 200, "through the outage");
    assert_eq!(during.json::<Value>().await.unwrap()["access_token"], token);
    assert_eq!(app.get_status(&id, Some(&key)).await.status(), 200);
    // A key the snapshot does not know is still refused.
    let wrong = app
        .get_token(
            &id,
            Some("rtk_0123456789_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            None,
        )
        .await;
    assert_eq!(wrong.status(), 401);

    // Past the grace, the broker says it cannot read the store.
    app.clock.advance(STALE_IF_ERROR);
    let after = app.get_token(&id, Some(&key), None).await;
    assert_eq!(after.status(), 503);
    assert_eq!(
        after.json::<Value>().await.unwrap()["error"],
        "store_unavailable"
    );

    proxy.up();
    assert_eq!(app.get_token(&id, Some(&key), None).await.status(), 200);
}

#[tokio::test]
async fn min_validity_refuses_a_token_that_expires_sooner() {
    let app = spawn_app(StoreKind::File).await;
    let (id, key) = app.connected("minval").await;
    set_expiry(&app, &id, 3_000).await;
    let read = TokenRead::new(&id).key(&key);
    let enough = app
        .read(TokenRead {
            min_validity: Some(3_000),
            ..read
        })
        .await;
    assert_eq!(enough.status(), 200);
    assert_eq!(enough.json::<Value>().await.unwrap()["expires_in"], 3_000);

    let too_much = app
        .read(TokenRead {
            min_validity: Some(3_001),
            ..read
        })
        .await;
    assert_eq!(too_much.status(), 503);
    // The token is refreshed once less than the 20-minute margin is left.
    assert_eq!(
        header(&too_much, "retry-after"),
        (3_000 - MARGIN).to_string()
    );
    let body: Value = too_much.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_validity");
    assert_eq!(body["state"], "connected");
    assert!(body.get("access_token").is_none());

    // A day is the longest a token can live: more can never be met, so it
    // is refused as a bad query rather than answered 503 forever.
    let a_day = app
        .read(TokenRead {
            min_validity: Some(86_400),
            ..read
        })
        .await;
    assert_eq!(a_day.status(), 503);
    for unreadable in ["soon", "86401", "10415214724521832480768", "-1"] {
        let mut url = app.url.join(&format!("v1/connections/{id}/token")).unwrap();
        url.set_query(Some(&format!("min_validity={unreadable}")));
        let bad = http().get(url).bearer_auth(&key).send().await.unwrap();
        assert_eq!(bad.status(), 400, "{unreadable}");
        assert_eq!(
            bad.json::<Value>().await.unwrap()["error"],
            "invalid_request"
        );
    }
}

/// 10,000 reads by 100 keys of one connection, all within one TTL and the
/// first hundred at the same moment, read the connection from the store once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_reads_within_a_ttl_read_the_store_once() {
    const KEYS: usize = 100;
    const READS_PER_KEY: usize = 100;
    let app = spawn_app(StoreKind::File).await;
    let (id, first_key) = app.connected("fleet").await;
    let connection = ConnectionId::parse(&id).unwrap();
    let mut keys = vec![first_key];
    // A fleet roll-out: 99 keys in one write.
    let fleet = admin::create_keys(
        &app.broker,
        &connection,
        Some("display".into()),
        KEYS - 1,
        app.broker.now(),
    )
    .await
    .unwrap();
    keys.extend(fleet.iter().map(|key| key.key.expose().to_owned()));
    let before = app.store.calls();
    let serve = SecretName::of(&connection, Part::Serve).as_str().to_owned();
    let gets_before = app.store.gets_of(&serve);

    let url = app.url.join(&format!("v1/connections/{id}/token")).unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(KEYS));
    let displays = keys.into_iter().map(|key| {
        let url = url.clone();
        let start = start.clone();
        let health = app.url.join("healthz").unwrap();
        tokio::spawn(async move {
            // Connected before the start, so that the first reads arrive together.
            let client = http();
            let warm = client.get(health).send().await;
            assert_eq!(warm.unwrap().status(), 200);
            start.wait().await;
            let mut served = 0;
            for _ in 0..READS_PER_KEY {
                let response = client.get(url.clone()).bearer_auth(&key).send().await;
                if response.is_ok_and(|r| r.status() == 200) {
                    served += 1;
                }
            }
            served
        })
    });
    let served: usize = futures::future::join_all(displays)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    assert_eq!(served, KEYS * READS_PER_KEY);

    let after = app.store.calls();
    assert_eq!(after.gets - before.gets, 1, "one read of the serve secret");
    assert_eq!(
        after.puts + after.lists + after.deletes,
        before.puts + before.lists + before.deletes
    );
    assert_eq!(app.store.gets_of(&serve) - gets_before, 1);
    // After the TTL, wrong keys (of either shape) make the broker read
    // nothing: only a key that verifies reads the connection again.
    app.expire_read_cache();
    let client = http();
    for forged in [
        "rtk_0000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "rtk_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        for _ in 0..10 {
            let response = client.get(url.clone()).bearer_auth(forged).send().await;
            assert_eq!(response.unwrap().status(), 401);
        }
    }
    assert_eq!(app.store.calls().gets - after.gets, 0);
}

/// What token-read answers for a connection that does not exist, one that
/// has no device key yet, and one never consented: the first two exactly
/// like a wrong key, without asking the store (a key's tag binds it to its
/// own connection), the third 503 with its state.
async fn unknown_unkeyed_and_unconsented(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let (id, key) = app.connected("known").await;
    let wrong = app.get_token(&id, Some(&format!("{key}x")), None).await;
    assert_eq!(wrong.status(), 401);
    let refused = wrong.bytes().await.unwrap();

    let unknown = unique_id("never-added");
    let response = app.get_token(&unknown, Some(&key), None).await;
    assert_eq!(response.status(), 401, "unknown connection");
    assert_eq!(response.bytes().await.unwrap(), refused);
    let serve = format!("connections/{unknown}/serve");
    assert_eq!(app.store.gets_of(&serve), 0, "the store was not asked");

    let unkeyed = unique_id("no-keys");
    app.add_connection(&unkeyed).await;
    let response = app.get_token(&unkeyed, Some(&key), None).await;
    assert_eq!(response.status(), 401, "no device key yet");
    assert_eq!(response.bytes().await.unwrap(), refused);
    let serve = format!("connections/{unkeyed}/serve");
    assert_eq!(app.store.gets_of(&serve), 0, "the store was not asked");

    let key = app.create_key(&unkeyed).await;
    app.expire_read_cache();
    let response = app.get_token(&unkeyed, Some(&key), None).await;
    assert_eq!(response.status(), 503, "never consented");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["state"], "pending_consent");
}

on_both_stores!(unknown_unkeyed_and_unconsented => unknown_unkeyed_and_unconsented_connections_on_the_file_store, unknown_unkeyed_and_unconsented_connections_on_secrets_manager);

/// A store that hangs (accepts connections, never answers) is given up on
/// after the Secrets Manager client's timeouts: the display is served the
/// token read last, well within API Gateway's 10 s, instead of waiting
/// for an answer that never comes.
#[tokio::test]
#[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
async fn a_store_that_hangs_is_given_up_on_and_the_token_read_last_served() {
    let (proxy, app, id, key, token) = served_behind_a_proxy("hangs").await;

    proxy.hang();
    app.expire_read_cache();
    // Bounded by the client here only so that a broker without timeouts
    // fails this test instead of hanging it.
    let url = app.url.join(&format!("v1/connections/{id}/token")).unwrap();
    let during = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(url)
        .bearer_auth(&key)
        .send()
        .await
        .expect("an answer while the store hangs");
    assert_eq!(during.status(), 200, "the token read last");
    assert_eq!(during.json::<Value>().await.unwrap()["access_token"], token);
    proxy.up();
    assert_eq!(app.get_token(&id, Some(&key), None).await.status(), 200);
}

/// Where legacy keys are accepted (each is checked against the store), a
/// flood of made-up connection ids fills a cache of its own: a real
/// connection read afterwards is still cached (one store read for many).
#[tokio::test]
async fn made_up_ids_never_take_the_place_of_real_connections() {
    let app = Setup::new(StoreKind::File)
        .with_config(|config| config.accept_legacy_keys = true)
        .spawn()
        .await;
    let (id, key) = app.connected("real").await;
    let now = app.broker.now();
    let forged = "rtk_0000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for n in 0..1_500 {
        let made_up = format!("made-up-{n}");
        let request = TokenRequest {
            connection: &made_up,
            key: Some(forged),
            ..TokenRequest::default()
        };
        assert!(read_token(&app.broker, request, now).await.is_err());
    }
    let serve = format!("connections/{id}/serve");
    let before = app.store.gets_of(&serve);
    for _ in 0..5 {
        let request = TokenRequest {
            connection: &id,
            key: Some(&key),
            ..TokenRequest::default()
        };
        assert!(read_token(&app.broker, request, now).await.is_ok());
    }
    assert_eq!(
        app.store.gets_of(&serve) - before,
        1,
        "the real connection was read once, then served from the cache"
    );
}

/// Junk costs nothing (issue 23, item 4): made-up connection ids, made-up
/// keys on a real connection, one connection's key on another, keys with a
/// tag changed, and legacy-shaped keys where those are refused make no
/// store call of any kind, and are all answered the same 401.
async fn junk_reads_nothing(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let (id, key) = app.connected("junk").await;
    let (other, other_key) = app.connected("junk-other").await;
    app.expire_read_cache();
    let refused = app
        .get_token(&id, Some(&format!("{key}x")), None)
        .await
        .bytes()
        .await
        .unwrap();
    let before = app.store.calls();
    let tag_changed = {
        let mut forged = key.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        String::from_utf8(forged).unwrap()
    };
    let client = http();
    let mut sent = 0;
    for n in 0..100 {
        let made_up_key = format!("rtk_{n:016x}_{}", "A".repeat(43));
        let legacy_shaped = format!("rtk_{n:010x}_{}", "B".repeat(43));
        let made_up_id = format!("made-up-{n}");
        for (connection, presented) in [
            (made_up_id.as_str(), made_up_key.as_str()),
            (made_up_id.as_str(), key.as_str()),
            (id.as_str(), made_up_key.as_str()),
            (id.as_str(), other_key.as_str()),
            (other.as_str(), key.as_str()),
            (id.as_str(), tag_changed.as_str()),
            (id.as_str(), legacy_shaped.as_str()),
        ] {
            let url = app
                .url
                .join(&format!("v1/connections/{connection}/token"))
                .unwrap();
            let response = client.get(url).bearer_auth(presented).send().await.unwrap();
            assert_eq!(response.status(), 401, "{connection}");
            assert_eq!(response.bytes().await.unwrap(), refused);
            sent += 1;
        }
    }
    let after = app.store.calls();
    assert_eq!(sent, 700);
    assert_eq!(
        after.total(),
        before.total(),
        "no store call for {sent} junk reads"
    );
    // The server was there and counting: the real key reads its connection.
    assert_eq!(app.get_token(&id, Some(&key), None).await.status(), 200);
    assert_eq!(app.store.calls().gets - after.gets, 1);
}

on_both_stores!(junk_reads_nothing => junk_reads_nothing_on_the_file_store, junk_reads_nothing_on_secrets_manager);

/// Keys made before keys authenticated themselves: refused (audit
/// `legacy_key`) unless the deployment accepts them, then checked against
/// their stored hash and revocable as before.
#[tokio::test]
async fn legacy_keys_work_only_where_accepted() {
    for accept in [false, true] {
        let app = Setup::new(StoreKind::File)
            .with_config(move |config| config.accept_legacy_keys = accept)
            .spawn()
            .await;
        let (id, _) = app
            .connected(if accept { "legacy-on" } else { "legacy-off" })
            .await;
        let connection = ConnectionId::parse(&id).unwrap();
        let legacy = format!("rtk_0a1b2c3d4e_{}", "L".repeat(43));
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(legacy.as_bytes()));
        app.broker
            .repo
            .update::<roomtoken::domain::ServeRecord, _>(
                &connection,
                Part::Serve,
                roomtoken::domain::Writer::Person,
                app.broker.now(),
                |record| {
                    let mut record = record?;
                    record.keys.keys.push(roomtoken::domain::DeviceKeyRecord {
                        id: "0a1b2c3d4e".into(),
                        label: Some("old display".into()),
                        sha256: hash.clone(),
                        created_at: time::OffsetDateTime::UNIX_EPOCH,
                        revoked_at: None,
                    });
                    Some(record)
                },
            )
            .await
            .unwrap();
        app.expire_read_cache();
        let serve = format!("connections/{id}/serve");
        let gets = app.store.gets_of(&serve);
        let status = app.get_token(&id, Some(&legacy), None).await.status();
        if accept {
            assert_eq!(status, 200, "an existing key keeps working");
            assert_eq!(app.store.gets_of(&serve) - gets, 1);
            let wrong = format!("rtk_0a1b2c3d4e_{}", "M".repeat(43));
            assert_eq!(app.get_token(&id, Some(&wrong), None).await.status(), 401);
            let listed = app.cli(&["key", "list", &id], "").await.unwrap();
            assert!(listed.contains("0a1b2c3d4e\told display"), "{listed}");
            assert!(listed.contains("active, legacy"), "{listed}");
            app.cli(&["key", "revoke", &id, "0a1b2c3d4e"], "")
                .await
                .unwrap();
            app.expire_read_cache();
            assert_eq!(app.get_token(&id, Some(&legacy), None).await.status(), 401);
        } else {
            assert_eq!(status, 401);
            assert_eq!(app.store.gets_of(&serve) - gets, 0, "refused unread");
            assert!(
                audit_lines(&id)
                    .iter()
                    .any(|l| l.contains("key_id=0a1b2c3d4e ") && l.contains("reason=legacy_key")),
                "{:?}",
                audit_lines(&id)
            );
        }
    }
}
