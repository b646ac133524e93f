#!/usr/bin/env bash
# Load benchmark of token-read (not a test): `roomtoken serve` (release
# build) on loopback with a connection that the fake identity platform has
# connected, and in the same run a minimal axum handler that answers a JSON
# body of the same size. Both get the same load (wrk, or oha where wrk cannot
# be installed): CONNECTIONS connections for DURATION each, after a short
# warm-up. Prints requests/s, p50/p99 latency, errors, and the ratio.
#
# Targets: at least 70% of the minimal handler's throughput, p99 under 5 ms
# at 64 connections, no errors. Exits non-zero only when a request failed.
#
#   scripts/bench-read.sh                 # 64 connections, 10 s each
#   BENCH_DURATION=30s BENCH_CONNECTIONS=128 scripts/bench-read.sh
#   BENCH_BROKER_BIN=/tmp/roomtoken-old scripts/bench-read.sh   # load another build
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/tools.sh
source scripts/tools.sh

CONNECTIONS=${BENCH_CONNECTIONS:-64}
DURATION=${BENCH_DURATION:-10s}
THREADS=${BENCH_THREADS:-2}
WARMUP=${BENCH_WARMUP:-2s}
TOOL=${BENCH_TOOL:-}
# Another build of roomtoken to load instead (an A/B of two commits).
BROKER_BIN=${BENCH_BROKER_BIN:-target/release/roomtoken}

# wrk from Debian; oha (crates.io) only where wrk cannot be had.
ensure_load_tool() {
  if [ "$TOOL" != oha ]; then
    if command -v wrk >/dev/null; then TOOL=wrk; return 0; fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "== installing wrk (Debian package)"
    if { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null; } \
      && command -v wrk >/dev/null; then
      TOOL=wrk
      return 0
    fi
    echo "wrk is not available: falling back to oha"
  fi
  TOOL=oha
  OHA="$PWD/.tools/bin/oha"
  if [ ! -x "$OHA" ]; then
    echo "== installing oha into .tools"
    cargo install --quiet --locked --root "$PWD/.tools" oha
  fi
}

# run_load NAME URL DURATION [HEADER]: writes "rps p50_ms p99_ms requests errors".
run_load() {
  local name=$1 url=$2 duration=$3 header=${4:-}
  local out="$work/$name.out"
  if [ "$TOOL" = wrk ]; then
    local args=(-t"$THREADS" -c"$CONNECTIONS" -d"$duration" --latency)
    [ -n "$header" ] && args+=(-H "$header")
    wrk "${args[@]}" "$url" >"$out"
    python3 - "$out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p = {q: ms(v, u) for q, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)}
requests = int(re.search(r"(\d+) requests in", text).group(1))
errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors += int(non2xx.group(1)) if non2xx else 0
print(f"{rps:.0f} {p['50']:.3f} {p['99']:.3f} {requests} {errors}")
PY
  else
    local args=(-c "$CONNECTIONS" -z "$duration" --no-tui --output-format json)
    [ -n "$header" ] && args+=(-H "$header")
    "$OHA" "${args[@]}" "$url" >"$out"
    python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
codes = r.get("statusCodeDistribution", {})
requests = sum(codes.values())
errors = sum(n for code, n in codes.items() if not code.startswith("2"))
errors += sum(r.get("errorDistribution", {}).values())
p = r["latencyPercentiles"]
print(f"{r['summary']['requestsPerSec']:.0f} {p['p50'] * 1000:.3f} {p['p99'] * 1000:.3f} {requests} {errors}")
PY
  fi
}

ensure_load_tool

echo "== building (release: roomtoken, bench-minimal; debug: bench-fixture)"
cargo build --release --quiet -p roomtoken-cli -p roomtoken-tests --bin roomtoken --bin bench-minimal
cargo build --quiet -p roomtoken-tests --bin bench-fixture

pids=()
work=$(mktemp -d -t roomtoken-bench.XXXXXX)
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work" "${logs:-}"
}
trap cleanup EXIT

echo "== preparing a connected connection (fake identity platform)"
read -r id key < <(target/debug/bench-fixture "$work/store") || true
[ -n "${key:-}" ] || { echo "bench-fixture could not prepare the store" >&2; exit 1; }

unset ROOMTOKEN_STORE ROOMTOKEN_PUBLIC_URL ROOMTOKEN_READ_CACHE_TTL RUST_LOG
broker_port=$(free_port)
# The log (one line per read) goes to memory: a disk-backed file would make
# the kernel write back a hundred megabytes on these same two cores.
logs=$(mktemp -d -p /dev/shm roomtoken-bench.XXXXXX 2>/dev/null || mktemp -d)
"$BROKER_BIN" --store "file:$work/store" serve \
  --addr "127.0.0.1:$broker_port" --refresh-every 1h 2>"$logs/serve.log" &
pids+=($!)
wait_for_http "http://127.0.0.1:$broker_port/healthz" "roomtoken serve" "$logs/serve.log"
token_url="http://127.0.0.1:$broker_port/v1/connections/$id/token"
auth="Authorization: Bearer $key"
curl -sf -H "$auth" "$token_url" -o "$work/body.json"

minimal_port=$(free_port)
target/release/bench-minimal "127.0.0.1:$minimal_port" "$work/body.json" 2>"$work/minimal.log" &
pids+=($!)
wait_for_http "http://127.0.0.1:$minimal_port/" "bench-minimal" "$work/minimal.log"
minimal_url="http://127.0.0.1:$minimal_port/v1/connections/$id/token"
minimal_bytes=$(curl -sf "$minimal_url" | wc -c)
broker_bytes=$(curl -sf -H "$auth" "$token_url" | wc -c)

echo "== $TOOL, $CONNECTIONS connections, $DURATION each (warm-up $WARMUP); load: $(cut -d' ' -f1-3 /proc/loadavg)"
run_load warmup-minimal "$minimal_url" "$WARMUP" "$auth" >/dev/null
run_load warmup-broker "$token_url" "$WARMUP" "$auth" >/dev/null
lines_before=$(grep -c "token read" "$logs/serve.log" || true)
# Both get the same request (with the key), so only the work differs.
read -r m_rps m_p50 m_p99 m_requests m_errors < <(run_load minimal "$minimal_url" "$DURATION" "$auth")
read -r b_rps b_p50 b_p99 b_requests b_errors < <(run_load broker "$token_url" "$DURATION" "$auth")
lines=$(( $(grep -c "token read" "$logs/serve.log" || true) - lines_before ))

python3 - "$m_rps" "$m_p50" "$m_p99" "$m_errors" "$b_rps" "$b_p50" "$b_p99" "$b_errors" \
  "$minimal_bytes" "$broker_bytes" "$b_requests" "$lines" <<'PY'
import sys
m_rps, m_p50, m_p99, m_err, b_rps, b_p50, b_p99, b_err = map(float, sys.argv[1:9])
m_bytes, b_bytes, b_requests, lines = map(int, sys.argv[9:13])
ratio = b_rps / m_rps if m_rps else 0.0
print(f"{'':24}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'body B':>8}")
print(f"{'minimal axum handler':24}{m_rps:>12.0f}{m_p50:>10.3f}{m_p99:>10.3f}{m_err:>8.0f}{m_bytes:>8}")
print(f"{'roomtoken token-read':24}{b_rps:>12.0f}{b_p50:>10.3f}{b_p99:>10.3f}{b_err:>8.0f}{b_bytes:>8}")
print(f"throughput ratio: {ratio:.1%} (target >= 70%)  "
      f"p99: {b_p99:.3f} ms (target < 5 ms)  errors: {b_err:.0f} (target 0)")
print(f"audit log lines: {lines} for {b_requests} counted requests (in-flight requests at the end may differ)")
verdict = ratio >= 0.70 and b_p99 < 5.0 and b_err == 0
print("targets met" if verdict else "targets MISSED")
PY
[ "$m_errors" -eq 0 ] && [ "$b_errors" -eq 0 ]
