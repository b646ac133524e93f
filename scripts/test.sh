#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need (a Python
# virtualenv with moto, cfn-lint, the SAM translator and schemathesis in the project's
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

# The SAM template as written, and its expansion into the CloudFormation that
# is really deployed (which shows, for example, circular dependencies).
# cfn-lint exits non-zero on any error or warning.
lint_dir=$(mktemp -d -t roomtoken-lint.XXXXXX)
echo "== cfn-lint $("$VENV/bin/cfn-lint" --version | cut -d' ' -f2) infra/template.yaml"
AWS_DEFAULT_REGION=us-east-1 "$VENV/bin/python" scripts/sam_transform.py infra/template.yaml \
  >"$lint_dir/template.expanded.json"
"$VENV/bin/cfn-lint" --non-zero-exit-code warning -- infra/template.yaml "$lint_dir/template.expanded.json"
rm -rf "$lint_dir"
# And as the operator validates it, with the SAM CLI (its lint included).
ensure_sam_cli
echo "== sam validate --lint ($(sam --version))"
(cd infra && AWS_REGION=us-east-1 sam validate --lint)

start_services

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test (moto at $AWS_ENDPOINT_URL)"
cargo test --workspace --locked --no-fail-fast --features roomtoken-tests/services
