#!/usr/bin/env bash
# A flood from one client at the token route's limit (made-up connection
# ids and wrong keys) while valid displays keep reading, on `roomtoken
# serve`'s code and the file store (tests/benches/flood.rs): prints the
# valid reads' success rate and p50/p99. Exits non-zero if one failed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --locked -p roomtoken-tests --bench flood
