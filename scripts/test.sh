#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need (a Python
# virtualenv with moto, cfn-lint and the SAM translator in the project's
# ignored .venv; Debian's chromium and chromium-driver if missing), lints the
# SAM template, starts moto's Secrets Manager and chromedriver on free
# loopback ports, runs formatting, lints and every Rust test, and stops what
# it started.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/tools.sh
source scripts/tools.sh
ensure_python_tools
ensure_chromium

pids=()
logs=$(mktemp -d -t roomtoken-test.XXXXXX)
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$logs"
}
trap cleanup EXIT

# The SAM template as written, and its expansion into the CloudFormation that
# is really deployed (which shows, for example, circular dependencies).
# cfn-lint exits non-zero on any error or warning.
echo "== cfn-lint $("$VENV/bin/cfn-lint" --version | cut -d' ' -f2) infra/template.yaml"
AWS_DEFAULT_REGION=us-east-1 "$VENV/bin/python" scripts/sam_transform.py infra/template.yaml \
  >"$logs/template.expanded.json"
"$VENV/bin/cfn-lint" --non-zero-exit-code warning -- infra/template.yaml "$logs/template.expanded.json"

port=$(free_port)
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$logs/moto.log" 2>&1 &
pids+=($!)
wait_for_http "http://127.0.0.1:$port/moto-api/" "moto server" "$logs/moto.log"

driver_port=$(free_port)
chromedriver --port="$driver_port" --allowed-ips=127.0.0.1 >"$logs/chromedriver.log" 2>&1 &
pids+=($!)
wait_for_http "http://127.0.0.1:$driver_port/status" "chromedriver" "$logs/chromedriver.log"
export ROOMTOKEN_TEST_WEBDRIVER="http://127.0.0.1:$driver_port"

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
