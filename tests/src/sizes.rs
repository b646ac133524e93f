//! The serve secret of a connection as large as a working one gets, for the
//! test and the benchmark that hold it to Secrets Manager's 65,536 bytes.

use roomtoken::domain::notify::{Event, MAX_OUTBOX, Notification};
use roomtoken::domain::{
    AccessToken, AccessTokens, AppRegistration, Cloud, ConnectionId, ConnectionState, FailureClass,
    LastError, Mode, Provider, Resource, Secret, ServeRecord, Status, Writer,
};
use time::OffsetDateTime;

/// An access token's size in the benchmark's and the test's connection.
pub const TOKEN_BYTES: usize = 8_192;
/// Keys made at once, at most (`key create --count`).
pub const BATCH: u32 = 500;

/// A connection with two resources' tokens of [`TOKEN_BYTES`], the outbox
/// full of notifications that carry a 300-character error, a day's worth
/// of writes in the log, and `keys` device keys made in batches of
/// [`BATCH`], each with a label.
pub fn full_serve_record(keys: u32, now: OffsetDateTime) -> ServeRecord {
    let id = ConnectionId::parse("a-sixty-character-connection-id-of-a-large-customer-0000000")
        .expect("id");
    let app = AppRegistration::new(
        id.clone(),
        Provider::microsoft("contoso.onmicrosoft.com", Cloud::Global).expect("provider"),
        "6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d",
        Resource::presets("graph,ews", Cloud::Global).expect("resources"),
        now,
    )
    .expect("app");
    let mut serve = ServeRecord::new(app);
    let account = "room-booking-account-with-a-long-name@contoso.onmicrosoft.com";
    serve.access = Some(AccessTokens {
        account: account.into(),
        resources: vec!["graph".into(), "ews".into()],
        tokens: ["graph", "ews"]
            .into_iter()
            .map(|resource| AccessToken {
                resource: resource.into(),
                access_token: Secret::new("t".repeat(TOKEN_BYTES)),
                token_type: "Bearer".into(),
                scope: "https://graph.microsoft.com/Calendars.ReadWrite https://graph.microsoft.com/Calendars.ReadWrite.Shared https://graph.microsoft.com/Place.Read.All https://graph.microsoft.com/User.Read".into(),
                expires_at: now + time::Duration::hours(1),
                obtained_at: now,
            })
            .collect(),
    });
    let mut status = Status::connected(account, now);
    status.state = ConnectionState::Degraded;
    status.last_error = Some(LastError {
        class: FailureClass::Transient,
        code: "AADSTS50196".into(),
        message: "m".repeat(300),
        trace_id: Some("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into()),
        correlation_id: Some("1b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into()),
        at: now,
    });
    for _ in 0..MAX_OUTBOX {
        let event = Event::state_change(
            &id,
            Mode::Operator,
            ConnectionState::Connected,
            &status,
            now,
        )
        .expect("a change");
        status.enqueue(Notification::new(event));
    }
    serve.status = status;
    let mut left = keys;
    let mut batch = 0;
    while left > 0 {
        let count = left.min(BATCH);
        serve
            .keys
            .issue(
                count,
                Some(format!("meeting-room displays, floor {batch}")),
                now,
            )
            .expect("serials");
        left -= count;
        batch += 1;
    }
    // A full day of versions: what the quota lets through.
    for n in 0..82 {
        serve
            .writes
            .record(Writer::Product, now - time::Duration::minutes(17 * n));
    }
    for n in 0..8 {
        serve
            .writes
            .record(Writer::Revocation, now - time::Duration::minutes(n));
    }
    serve
}

/// The serve value's size in bytes, as stored.
pub fn stored_bytes(serve: &ServeRecord) -> usize {
    serde_json::to_string(serve).map_or(0, |json| json.len())
}
