#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need into the
# project's own ignored folders (a Python virtualenv with moto), starts moto's
# Secrets Manager on a free loopback port, runs formatting, lints and every
# Rust test, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/tools.sh
source scripts/tools.sh
ensure_python_tools

port=$(free_port)
log=$(mktemp -t roomtoken-moto.XXXXXX)
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; rm -f "$log"' EXIT
wait_for_http "http://127.0.0.1:$port/moto-api/" "moto server" "$log"

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export ROOMTOKEN_SECRET_PREFIX="test-$(date +%s)-$$/"
unset ROOMTOKEN_STORE ROOMTOKEN_PUBLIC_URL

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test (moto at $AWS_ENDPOINT_URL)"
cargo test --workspace --locked
