#!/usr/bin/env bash
# Builds the three Lambda packages (x86_64, provided.al2023) with cargo-lambda:
#
#   infra/build.sh
#
# writes target/lambda/{scrape-lambda,alert-lambda,query-lambda}/bootstrap.zip and prints their
# sizes. cargo-lambda and the zig linker it uses come from PyPI; the script installs them once into
# a virtualenv (PROMLAKE_LAMBDA_VENV, default .cargo-lambda/ in the repository) unless
# `cargo lambda` already works. Extra arguments go to `cargo lambda build` (e.g. --arm64; only
# x86_64 is tested).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! cargo lambda --help >/dev/null 2>&1; then
  venv=${PROMLAKE_LAMBDA_VENV:-$root/.cargo-lambda}
  if [ ! -x "$venv/bin/cargo-lambda" ]; then
    python=${PROMLAKE_PYTHON:-python3}
    echo "build: installing cargo-lambda and ziglang into $venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet cargo-lambda ziglang
  fi
  export PATH="$venv/bin:$PATH"
fi

bins=(scrape-lambda alert-lambda query-lambda)
args=()
for b in "${bins[@]}"; do args+=(--bin "$b"); done
cargo lambda build --release --output-format zip "${args[@]}" "$@"

for b in "${bins[@]}"; do
  zip="target/lambda/$b/bootstrap.zip"
  printf '%-14s %s  %s bytes\n' "$b" "$zip" "$(stat -c %s "$zip")"
done
