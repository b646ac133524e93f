#!/usr/bin/env bash
# Builds the four Lambda functions as release zips for arm64, the
# architecture of infra/template.yaml, with cargo-lambda and its Zig (both
# installed from PyPI into the project's .venv), and prints each zip's size.
#
#   scripts/build-lambdas.sh            arm64 (what the template deploys)
#   scripts/build-lambdas.sh --x86-64   x86_64 instead
#
# Zips land in target/lambda/<function>/bootstrap.zip. When the aarch64 Rust
# standard library cannot be installed, the script says why, builds and
# measures x86_64 zips instead, and exits 1: those do not fit the template.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/tools.sh
source scripts/tools.sh
ensure_lambda_tools
# cargo-lambda finds cargo-lambda's own binary and python-zig here.
export PATH="$VENV/bin:$PATH"

FUNCTIONS=(connect-start connect-callback token-read token-refresh)
LIMIT_BYTES=$((5 * 1024 * 1024))
ARM_TARGET=aarch64-unknown-linux-gnu

arch=arm64
case "${1:-}" in
  "") ;;
  --x86-64) arch=x86_64 ;;
  *) echo "usage: $0 [--x86-64]" >&2; exit 2 ;;
esac

fallback=0
if [ "$arch" = arm64 ] && ! rustup target list --installed | grep -qx "$ARM_TARGET"; then
  echo "== rustup target add $ARM_TARGET"
  if ! reason=$(rustup target add "$ARM_TARGET" 2>&1); then
    echo "cannot build for arm64 here: 'rustup target add $ARM_TARGET' failed:" >&2
    echo "$reason" | sed 's/^/    /' >&2
    echo "(the Rust toolchain's download host must be reachable to add a target;" >&2
    echo " install it where it is, or use a toolchain that ships it)." >&2
    echo "Building x86_64 zips instead, to measure them; they do not fit the template." >&2
    arch=x86_64
    fallback=1
  fi
fi

packages=()
for function in "${FUNCTIONS[@]}"; do packages+=(-p "$function"); done
arch_flag=--arm64
[ "$arch" = x86_64 ] && arch_flag=--x86-64

echo "== cargo lambda build --release $arch_flag --output-format zip (${FUNCTIONS[*]})"
cargo lambda build --release "$arch_flag" --output-format zip --locked "${packages[@]}"

over=0
echo "== zip sizes ($arch, limit 5 MiB)"
for function in "${FUNCTIONS[@]}"; do
  zip="target/lambda/$function/bootstrap.zip"
  if [ ! -f "$zip" ]; then
    echo "missing: $zip" >&2
    exit 1
  fi
  bytes=$(stat -c %s "$zip")
  python3 - "$function" "$zip" <<'PY'
import os, sys, zipfile
function, path = sys.argv[1], sys.argv[2]
zipped = os.path.getsize(path)
unzipped = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
print(f"{function:<18} {zipped:>9} bytes  ({zipped / 2**20:.2f} MiB zipped, {unzipped / 2**20:.2f} MiB unzipped)")
PY
  [ "$bytes" -lt "$LIMIT_BYTES" ] || over=1
done

if [ "$over" -ne 0 ]; then
  echo "a zip is over 5 MiB" >&2
  exit 1
fi
if [ "$fallback" -ne 0 ]; then
  echo "built x86_64 only: the arm64 zips the template deploys could not be built here" >&2
  exit 1
fi
