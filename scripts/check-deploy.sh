#!/usr/bin/env bash
# The deploy path, proved offline with the ecosystem's own tools: from a
# fresh clone of this repository, the AWS SAM CLI (from PyPI) runs `sam
# validate --lint` and `sam build` with cargo-lambda, exactly as the README
# tells an operator, and the four functions' `bootstrap` artifacts are
# checked: present, executable, ELF for arm64 (aarch64). Prints each step's
# time. Needs no AWS account (nothing is deployed).
#
#   scripts/check-deploy.sh            # about 6 minutes on two cores, most of it sam build
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD
# shellcheck source=scripts/tools.sh
source scripts/tools.sh
ensure_sam_cli
ensure_lambda_tools

clone=$(mktemp -d -t roomtoken-deploy.XXXXXX)
trap 'rm -rf "$clone"' EXIT
git clone -q "$here" "$clone/roomtoken"
cd "$clone/roomtoken/infra"
# cargo-lambda and its Zig, on PATH as the README says.
export PATH="$VENV/bin:$PATH"
export AWS_REGION=${AWS_REGION:-us-east-1}
# The clone builds in its own target/ unless told to reuse this one's.
export CARGO_TARGET_DIR=${CHECK_DEPLOY_TARGET_DIR:-$clone/target}

timed() {
  local what=$1
  shift
  local start=$SECONDS
  echo "== $what"
  "$@"
  echo "   $what: $((SECONDS - start)) s"
}

timed "sam validate --lint" sam validate --lint
timed "sam build (cargo lambda build --release --arm64, four functions)" sam build

echo "== the artifacts"
for function in ConnectStartFunction ConnectCallbackFunction TokenReadFunction TokenRefreshFunction; do
  artifact=".aws-sam/build/$function/bootstrap"
  [ -x "$artifact" ] || { echo "missing or not executable: $artifact" >&2; exit 1; }
  # ELF, 64-bit, e_machine 0xB7 (EM_AARCH64) at offset 18, little-endian.
  header=$(od -An -tx1 -N20 "$artifact" | tr -d ' \n')
  [ "${header:0:8}" = "7f454c46" ] || { echo "$artifact is not an ELF file" >&2; exit 1; }
  [ "${header:36:4}" = "b700" ] || { echo "$artifact is not for arm64 (e_machine ${header:36:4})" >&2; exit 1; }
  echo "   $artifact: ELF arm64, $(du -k "$artifact" | cut -f1) KiB"
done
echo "the deploy path builds: sam validate --lint and sam build pass, four arm64 bootstraps"
