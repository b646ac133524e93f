#!/usr/bin/env bash
# What a fleet costs on Secrets Manager and whether it stays inside the
# service's quotas: a simulated day through the counting store (see
# tests/benches/fleet_day.rs), then the refresh pass benchmark (10,000 due
# connections under the write budget; 1,000 on the file store and on moto).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --locked -p roomtoken-tests --bench fleet_day
scripts/with-services.sh cargo bench --locked -p roomtoken-tests --bench refresh_pass
