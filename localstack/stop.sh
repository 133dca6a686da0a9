#!/usr/bin/env bash
# Stops the LocalStack started by localstack/start.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${PROMLAKE_LOCALSTACK_DIR:-$here/../.localstack}
if [ -f "$dir/pid" ]; then
  pid=$(cat "$dir/pid")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    echo "localstack: stopped"
  fi
  rm -f "$dir/pid"
fi
