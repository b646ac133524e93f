#!/usr/bin/env bash
# What an operator runs right after `sam deploy`, against the real stack,
# with the credentials they run the CLI with: a throwaway connection; a
# made-up connection id answered 401 (not 5xx, not AccessDenied); a device
# key whose read reaches the store through token-read's role (503
# pending_consent, the connection never consented); a refresh pass that
# runs and reports; the key revoked; everything removed, even on failure.
#
#   ROOMTOKEN_PUBLIC_URL=https://…  (the stack's PublicUrl output)
#   ROOMTOKEN_SECRET_PREFIX=roomtoken/  AWS_REGION=eu-west-1  (as for the CLI)
#   SMOKE_REFRESH_FUNCTION=roomtoken-token-refresh  (optional: the
#       TokenRefreshFunctionName output; the pass then runs in the deployed
#       function, through `aws lambda invoke`, else through `roomtoken refresh`)
#   ROOMTOKEN_BIN=target/release/roomtoken  (default)
#   scripts/smoke-aws.sh
#
# Exits non-zero at the first step that fails, saying which.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${ROOMTOKEN_BIN:-target/release/roomtoken}
url=${ROOMTOKEN_PUBLIC_URL:?set ROOMTOKEN_PUBLIC_URL to the stack PublicUrl output}
url=${url%/}
[ -x "$bin" ] || { echo "no $bin: cargo build --release -p roomtoken-cli --no-default-features" >&2; exit 2; }
id="smoke-$(date +%s)-$RANDOM"
work=$(mktemp -d -t roomtoken-smoke.XXXXXX)
roomtoken() { "$bin" --store aws "$@"; }

step=0
step() { step=$((step + 1)); echo "== $step. $*"; }
fail() { echo "FAILED at step $step: $*" >&2; exit 1; }
cleanup() {
  roomtoken connection remove "$id" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Answers "STATUS BODY" of a GET with a device key.
get() {
  local code
  code=$(curl -sS -o "$work/body" -w '%{http_code}' -H "Authorization: Bearer $2" "$url$1") \
    || fail "no answer from $url$1"
  echo "$code $(cat "$work/body")"
}

step "adding the throwaway connection $id"
echo "smoke-test-not-a-real-secret" | roomtoken connection add "$id" \
  --tenant 00000000-0000-4000-8000-000000000000 \
  --client-id 00000000-0000-4000-8000-000000000001 \
  --client-secret-stdin --resources graph >/dev/null \
  || fail "connection add (can these credentials create secrets under the prefix?)"

step "a made-up connection id is answered 401"
made_up_key="rtk_0000000000000000_$(printf 'A%.0s' $(seq 1 43))"
answer=$(get "/v1/connections/smoke-made-up-$RANDOM/token" "$made_up_key")
[ "${answer%% *}" = 401 ] || fail "expected 401, got: $answer"

step "a device key reads its connection through token-read (503 pending_consent)"
key=$(roomtoken key create "$id" --label smoke 2>/dev/null) || fail "key create"
answer=$(get "/v1/connections/$id/token" "$key")
[ "${answer%% *}" = 503 ] && [[ $answer == *pending_consent* ]] \
  || fail "expected 503 pending_consent (token-read could not read the serve secret?), got: $answer"

step "a refresh pass runs and reports"
if [ -n "${SMOKE_REFRESH_FUNCTION:-}" ]; then
  aws lambda invoke --function-name "$SMOKE_REFRESH_FUNCTION" --cli-binary-format raw-in-base64-out \
    --payload "{\"connection\":\"$id\"}" "$work/pass.json" >"$work/invoke.json" \
    || fail "aws lambda invoke $SMOKE_REFRESH_FUNCTION"
  ! grep -q FunctionError "$work/invoke.json" || fail "the pass failed: $(cat "$work/pass.json")"
  grep -q '"pending_consent":1' "$work/pass.json" || fail "unexpected summary: $(cat "$work/pass.json")"
  echo "   $(cat "$work/pass.json")"
else
  roomtoken refresh "$id" >"$work/pass.txt" 2>&1 || fail "roomtoken refresh: $(cat "$work/pass.txt")"
  grep -q "waiting for consent" "$work/pass.txt" || fail "unexpected report: $(cat "$work/pass.txt")"
  sed 's/^/   /' "$work/pass.txt"
fi

step "the key is revoked"
roomtoken key revoke "$id" "$(echo "$key" | cut -d_ -f2)" >/dev/null || fail "key revoke"

step "the connection is removed"
roomtoken connection remove "$id" >/dev/null || fail "connection remove"
if roomtoken connection show "$id" >/dev/null 2>&1; then fail "$id is still there"; fi

echo "smoke test passed: $url"
