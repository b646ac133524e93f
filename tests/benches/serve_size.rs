//! The serve secret's size against Secrets Manager's 65,536 bytes, for a
//! connection as large as a working one gets (two 8 KB tokens, the
//! notification outbox full, a day of writes in the log) with 1, 500 and
//! 2,000 device keys made in batches of 500, and 2,000 keys left of 4,000
//! after every other one was revoked (the most fragmented ranges). Also
//! what the operator's changes may still fill, once a refresh's worst
//! growth is kept free.
//!
//! Run: `cargo bench -p roomtoken-tests --bench serve_size`.
//! Target: at least a quarter of the value free in every case.

use roomtoken::domain::records::Logged;
use roomtoken::store::MAX_VALUE_BYTES;
use roomtoken_tests::sizes::{full_serve_record, stored_bytes};
use time::OffsetDateTime;

fn main() {
    let now = OffsetDateTime::now_utc();
    let mut fragmented = full_serve_record(4_000, now);
    let ids: Vec<String> = fragmented.keys.active().into_iter().map(|k| k.id).collect();
    for id in ids.iter().step_by(2) {
        fragmented.keys.revoke(id);
    }
    let cases = [
        ("1 key", full_serve_record(1, now)),
        ("500 keys", full_serve_record(500, now)),
        ("2,000 keys", full_serve_record(2_000, now)),
        ("2,000 of 4,000 keys, every other revoked", fragmented),
    ];
    let mut ok = true;
    println!(
        "serve secret of a full connection (two 8 KB tokens, outbox full, a day of writes), of {MAX_VALUE_BYTES} bytes:"
    );
    for (name, serve) in &cases {
        let bytes = stored_bytes(serve);
        let free =
            100.0 * (MAX_VALUE_BYTES - bytes.min(MAX_VALUE_BYTES)) as f64 / MAX_VALUE_BYTES as f64;
        let room = serve.product_room();
        println!(
            "  {name:<42} {bytes:>6} bytes ({free:.1}% free; {} active keys; a refresh may add up to {room})",
            serve.keys.active_count()
        );
        ok &= free >= 25.0;
    }
    if !ok {
        std::process::exit(1);
    }
}
