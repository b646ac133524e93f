#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need (a Python
# virtualenv with moto in the project's ignored .venv; Debian's chromium and
# chromium-driver if missing), starts moto's Secrets Manager and chromedriver
# on free loopback ports, runs formatting, lints and every Rust test, and
# stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/tools.sh
source scripts/tools.sh
ensure_python_tools
ensure_chromium

start_services

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test (moto at $AWS_ENDPOINT_URL)"
cargo test --workspace --locked --no-fail-fast
