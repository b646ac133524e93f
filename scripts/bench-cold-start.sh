#!/usr/bin/env bash
# Cold start of the token-read Lambda function (release build, x86_64 here)
# against a local stand-in for the Lambda Runtime API: time from process
# start to the first answered invocation, and peak memory.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p token-read
cargo bench --locked -p roomtoken-tests --bench cold_start
