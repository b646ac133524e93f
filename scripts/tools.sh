# Shared by the scripts: the project's own tool installs, in ignored folders.
# shellcheck shell=bash

VENV="${ROOMTOKEN_VENV:-$PWD/.venv}"

# Versions the suite is known to pass with: moto for Secrets Manager,
# cfn-lint and the SAM translator for infra/template.yaml; schemathesis to
# fuzz the HTTP API from its OpenAPI document; standardwebhooks for the test
# receiver that verifies every notification (tests/webhook_receiver.py).
PYTHON_TOOLS=("moto[server]==5.2.1" "cfn-lint==1.58.0" "aws-sam-translator==1.115.0"
  "schemathesis==4.32.5" "standardwebhooks==1.1.0")

# What scripts/build-lambdas.sh needs: cargo-lambda and the Zig it links with.
LAMBDA_TOOLS=("cargo-lambda==1.9.2" "ziglang==0.17.1")

# The AWS SAM CLI, as an operator installs it (from PyPI), in a virtualenv of
# its own: it pins its own cfn-lint and SAM translator.
SAM_VENV="${ROOMTOKEN_SAM_VENV:-$PWD/.venv-sam}"
SAM_CLI="aws-sam-cli==1.170.0"

ensure_sam_cli() {
  VENV="$SAM_VENV" ensure_venv_packages "$SAM_CLI"
}

# `sam` as the README has the operator run it: no telemetry.
sam() {
  SAM_CLI_TELEMETRY=0 "$SAM_VENV/bin/sam" "$@"
}

ensure_python_tools() {
  ensure_venv_packages "${PYTHON_TOOLS[@]}"
}

ensure_lambda_tools() {
  ensure_venv_packages "${LAMBDA_TOOLS[@]}"
}

# Installs each pinned requirement into the virtualenv unless that version
# is already there.
ensure_venv_packages() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    python3 -m venv "$VENV"
  fi
  local missing=()
  for requirement in "$@"; do
    local name=${requirement%%[*}
    name=${name%%=*}
    local version=${requirement##*==}
    local installed
    # pip show fails for a missing package: that is an answer, not an error.
    installed=$({ "$VENV/bin/python" -m pip show "$name" 2>/dev/null || true; } | sed -n 's/^Version: //p')
    [ "$installed" = "$version" ] || missing+=("$requirement")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]} into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${missing[@]}"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Polls until the URL answers (a readiness check, bounded to 60 s).
wait_for_http() {
  local url=$1 what=$2 log=$3
  for _ in $(seq 1 120); do
    if python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  echo "$what did not start; its log:" >&2
  cat "$log" >&2
  return 1
}

# Debian's Chromium and ChromeDriver, for the browser test.
ensure_chromium() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    return 0
  fi
  echo "== installing chromium and chromium-driver (Debian packages)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
}

# Starts moto (Secrets Manager), chromedriver and the webhook receiver on
# free loopback ports, exports what the tests read, and stops them when the
# calling script exits.
start_services() {
  SERVICE_PIDS=()
  SERVICE_LOGS=$(mktemp -d -t roomtoken-services.XXXXXX)
  trap stop_services EXIT

  local moto_port driver_port
  moto_port=$(free_port)
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$SERVICE_LOGS/moto.log" 2>&1 &
  SERVICE_PIDS+=($!)
  wait_for_http "http://127.0.0.1:$moto_port/moto-api/" "moto server" "$SERVICE_LOGS/moto.log"

  driver_port=$(free_port)
  chromedriver --port="$driver_port" --allowed-ips=127.0.0.1 >"$SERVICE_LOGS/chromedriver.log" 2>&1 &
  SERVICE_PIDS+=($!)
  wait_for_http "http://127.0.0.1:$driver_port/status" "chromedriver" "$SERVICE_LOGS/chromedriver.log"

  local receiver_port
  receiver_port=$(free_port)
  "$VENV/bin/python" tests/webhook_receiver.py "$receiver_port" >"$SERVICE_LOGS/webhook-receiver.log" 2>&1 &
  SERVICE_PIDS+=($!)
  wait_for_http "http://127.0.0.1:$receiver_port/health" "webhook receiver" "$SERVICE_LOGS/webhook-receiver.log"

  export ROOMTOKEN_TEST_WEBDRIVER="http://127.0.0.1:$driver_port"
  export ROOMTOKEN_TEST_WEBHOOK_RECEIVER="http://127.0.0.1:$receiver_port"
  export ROOMTOKEN_TEST_SCHEMATHESIS="$VENV/bin/schemathesis"
  export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
  export AWS_EC2_METADATA_DISABLED=true
  ROOMTOKEN_SECRET_PREFIX="test-$(date +%s)-$$/"
  export ROOMTOKEN_SECRET_PREFIX
  unset ROOMTOKEN_STORE ROOMTOKEN_PUBLIC_URL
}

stop_services() {
  local pid
  for pid in "${SERVICE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${SERVICE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$SERVICE_LOGS"
}
