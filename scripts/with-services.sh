#!/usr/bin/env bash
# Runs one command with the test services up (moto, chromedriver), for
# focused runs while you work, e.g.:
#   scripts/with-services.sh cargo test -p roomtoken-tests --features services --test api refresh::
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/tools.sh
source scripts/tools.sh
ensure_python_tools
ensure_chromium
start_services
"$@"
