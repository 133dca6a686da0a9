#!/usr/bin/env bash
# Starts LocalStack's S3 on loopback without Docker (LocalStack's host mode, installed from PyPI
# into a virtualenv), waits until it is healthy and creates the bucket. Idempotent: when S3 already
# answers on the port, it only makes sure the bucket exists.
#
#   localstack/start.sh            # S3 on http://127.0.0.1:4566, bucket "promlake"
#   localstack/stop.sh
#
# Environment: LOCALSTACK_PORT (4566), PROMLAKE_BUCKET (promlake), PROMLAKE_LOCALSTACK_DIR (where
# the virtualenv, data and log live; default .localstack/ in the repository), PROMLAKE_PYTHON (a
# Python 3.13 interpreter; default pyenv's 3.13.0 or python3.13 on PATH).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${PROMLAKE_LOCALSTACK_DIR:-$here/../.localstack}
port=${LOCALSTACK_PORT:-4566}
bucket=${PROMLAKE_BUCKET:-promlake}
endpoint="http://127.0.0.1:$port"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

healthy() {
  curl -fsS "$endpoint/_localstack/health" 2>/dev/null | grep -Eq '"s3": *"(running|available)"'
}

make_bucket() {
  # LocalStack accepts unsigned requests; 200 when created, 409 when it is already ours.
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$endpoint/$bucket")
  case "$code" in
    200|409) echo "localstack: bucket s3://$bucket ready at $endpoint" ;;
    *) echo "localstack: creating bucket $bucket failed with HTTP $code" >&2; exit 1 ;;
  esac
}

if healthy; then
  make_bucket
  exit 0
fi

python=${PROMLAKE_PYTHON:-}
if [ -z "$python" ]; then
  for p in /root/.pyenv/versions/3.13.0/bin/python "$HOME/.pyenv/versions/3.13.0/bin/python" python3.13; do
    if command -v "$p" >/dev/null 2>&1; then python=$(command -v "$p"); break; fi
  done
fi
if [ -z "$python" ]; then
  echo "localstack: no Python 3.13 found; set PROMLAKE_PYTHON to one" >&2
  exit 1
fi

venv="$dir/venv"
if ! "$venv/bin/python" -c 'import localstack.runtime.main' >/dev/null 2>&1; then
  echo "localstack: installing LocalStack into $venv (once)"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'localstack-core[runtime]==2026.3.0' 'cbor2<6' 'pyopenssl<25' 'cryptography<45' 'joserfc<1.8' service-identity
fi

mkdir -p "$dir/volume" "$dir/fs" "$dir/tmp"
echo "localstack: starting S3 on $endpoint (log: $dir/localstack.log)"
env GATEWAY_LISTEN="127.0.0.1:$port" GATEWAY_SERVER=hypercorn SERVICES=s3 EAGER_SERVICE_LOADING=1 \
  DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1 PERSISTENCE=0 DISABLE_EVENTS=1 \
  LOCALSTACK_VOLUME_DIR="$dir/volume" FILESYSTEM_ROOT="$dir/fs" TMPDIR="$dir/tmp" \
  nohup "$venv/bin/python" -m localstack.runtime.main >"$dir/localstack.log" 2>&1 &
echo $! >"$dir/pid"

for _ in $(seq 1 120); do
  if healthy; then
    make_bucket
    exit 0
  fi
  if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    echo "localstack: exited during start; last lines of $dir/localstack.log:" >&2
    tail -20 "$dir/localstack.log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "localstack: not healthy after 60 s; see $dir/localstack.log" >&2
exit 1
