# Shared by the scripts: the project's own tool installs, in ignored folders.
# shellcheck shell=bash

VENV="${ROOMTOKEN_VENV:-$PWD/.venv}"

# Versions the suite is known to pass with: moto for Secrets Manager,
# cfn-lint and the SAM translator for infra/template.yaml.
PYTHON_TOOLS=("moto[server]==5.2.1" "cfn-lint==1.58.0" "aws-sam-translator==1.115.0")

# What scripts/build-lambdas.sh needs: cargo-lambda and the Zig it links with.
LAMBDA_TOOLS=("cargo-lambda==1.9.2" "ziglang==0.17.1")

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
    installed=$("$VENV/bin/python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
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
