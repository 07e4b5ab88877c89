#!/usr/bin/env bash
# Lighthouse (performance, accessibility, best practices; desktop preset) on the
# studio's pages, served by gunicorn from a store of N operations (default 50,000,
# filled once by history_bench.py into benchmarks/out/s<N>). Lighthouse comes
# from the npm registry into benchmarks/out/lighthouse (not part of `make test`);
# Chromium is Debian's. Prints one line of scores per page.
#
#   make lighthouse [OPERATIONS=50000]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
N=${OPERATIONS:-50000}
STORE=benchmarks/out/s$N
TOOLS=benchmarks/out/lighthouse
PORT=${PORT:-5077}
mkdir -p "$TOOLS"
[ -x "$TOOLS/node_modules/.bin/lighthouse" ] ||
  npm install --prefix "$TOOLS" --silent --no-audit --no-fund lighthouse@12
[ -d "$STORE" ] || "$PY" benchmarks/history_bench.py --store "$STORE" --operations "$N" --fill-only

FLASK_STORAGE_DIR="$PWD/$STORE" FLASK_SECRET_KEY=lighthouse \
  .venv/bin/gunicorn -w 2 --threads 8 -b "127.0.0.1:$PORT" "generation_studio:create_app()" \
  >"$TOOLS/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
base="http://127.0.0.1:$PORT"
until curl -fs "$base/api/health" | grep -q '"index":"ok"'; do sleep 1; done
op=$(curl -fs "$base/api/history?limit=1&type=img_to_img&status=succeeded" |
     "$PY" -c 'import json, sys; print(json.load(sys.stdin)["operations"][0]["operationId"])')

echo "Lighthouse $("$TOOLS/node_modules/.bin/lighthouse" --version), $N operations stored, $(nproc) cores"
for page in / /history "/history?q=cat&page=3" "/history/$op" /stats; do
  CHROME_PATH=/usr/bin/chromium "$TOOLS/node_modules/.bin/lighthouse" "$base$page" --quiet \
    --preset=desktop --only-categories=performance,accessibility,best-practices \
    --chrome-flags="--headless=new --no-sandbox --disable-gpu --disable-background-networking --disable-component-update --disable-sync --no-first-run" \
    --output=json --output-path="$TOOLS/report.json"
  "$PY" - "$page" "$TOOLS/report.json" <<'PYTHON'
import json, sys
page, path = sys.argv[1], sys.argv[2]
report = json.load(open(path))
scores = {k: round(v["score"] * 100) for k, v in report["categories"].items()}
audits = report["audits"]
print(f"{page:28} performance {scores['performance']:3}  accessibility {scores['accessibility']:3}  "
      f"best practices {scores['best-practices']:3}  "
      f"CLS {audits['cumulative-layout-shift']['numericValue']:.4f}  "
      f"LCP {audits['largest-contentful-paint']['numericValue']:.0f} ms  "
      f"{audits['total-byte-weight']['numericValue'] / 1024:.0f} kB")
PYTHON
done
