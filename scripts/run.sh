#!/usr/bin/env bash
# `make run`: the studio as in production — gunicorn serving several web
# processes (threads each, so that waiting requests and event streams never
# starve it) and one job worker process; Ctrl-C stops both.
set -euo pipefail
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-5000}
WEB_WORKERS=${WEB_WORKERS:-2}
WEB_THREADS=${WEB_THREADS:-64}
JOB_THREADS=${JOB_THREADS:-2}
export FLASK_QUEUE_IN_PROCESS=false  # the worker below runs the jobs

"$BIN/flask" --app generation_studio worker --threads "$JOB_THREADS" &
worker=$!
"$BIN/gunicorn" --workers "$WEB_WORKERS" --worker-class gthread --threads "$WEB_THREADS" \
  --bind "$HOST:$PORT" --graceful-timeout 5 --access-logfile - --no-control-socket \
  "generation_studio:create_app()" &
web=$!
trap 'kill -TERM $web $worker 2>/dev/null; wait $web $worker 2>/dev/null; exit 0' INT TERM
echo "Generation Studio on http://$HOST:$PORT/ (web: $WEB_WORKERS processes; jobs: 1 worker, $JOB_THREADS threads); Ctrl-C stops it"
wait -n $web $worker
kill -TERM $web $worker 2>/dev/null || true
wait
