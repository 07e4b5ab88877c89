#!/usr/bin/env bash
# Start a real studio server on a free port with a fresh storage folder, run
# test_storage.sh against it, then stop it. Used by `make test`.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
work=$(mktemp -d)
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export FLASK_STORAGE_DIR="$work/operations"

"$PY" -m flask --app generation_studio run --host 127.0.0.1 --port "$port" >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$work"' EXIT

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/api/health" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done

BASE_URL="http://127.0.0.1:$port" STORAGE_DIR="$FLASK_STORAGE_DIR" PYTHON="$PY" ./test_storage.sh
status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log ---"
  cat "$work/server.log"
fi
exit "$status"
