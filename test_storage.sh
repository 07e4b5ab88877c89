#!/usr/bin/env bash
# The integration guide's storage check, against a running studio:
# the server answers, a generation is saved (JSON + result file in the storage
# folder), the stored file is served, the history lists it, and the last saved
# JSON is shown. Exits non-zero if any check fails.
#
#   BASE_URL=http://127.0.0.1:5000 STORAGE_DIR=instance/data/operations ./test_storage.sh
set -u

BASE_URL=${BASE_URL:-http://127.0.0.1:5000}
STORAGE_DIR=${STORAGE_DIR:-instance/data/operations}
PYTHON=${PYTHON:-python3}
passed=0
failed=0

ok()   { passed=$((passed + 1)); echo "  ok    $1"; }
fail() { failed=$((failed + 1)); echo "  FAIL  $1"; }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else fail "$what"; fi; }

# json_field FIELD < json: print one top-level field (empty if missing).
json_field() {
  "$PYTHON" -c 'import json, sys
v = json.load(sys.stdin).get(sys.argv[1])
print("" if v is None else v)' "$1" 2>/dev/null
}

# post ROUTE ARGS...: POST with curl, the body to $body, the status to $status.
post() {
  local route=$1; shift
  body=$(curl -sS -o - -w '\n%{http_code}' -X POST "$BASE_URL$route" "$@")
  status=${body##*$'\n'}
  body=${body%$'\n'*}
}

# saved TYPE: the last posted operation answered 200 and its files are on disk.
saved() {
  local type=$1 id
  id=$(json_field operationId <<<"$body")
  check "$type: answered 200 with an operation id" test "$status" = 200 -a -n "$id"
  [ -n "$id" ] || return
  check "$type: record $id.json written" test -s "$STORAGE_DIR/$id.json"
  check "$type: record says $type, succeeded" grep -q "\"operationType\": \"$type\"" "$STORAGE_DIR/$id.json"
  check "$type: record status succeeded" grep -q '"status": "succeeded"' "$STORAGE_DIR/$id.json"
  local result
  result=$(json_field resultFile <"$STORAGE_DIR/$id.json")
  check "$type: result file $result written" test -n "$result" -a -s "$STORAGE_DIR/$result"
  local served
  served=$(mktemp)
  curl -sS -o "$served" "$BASE_URL$(json_field fileUrl <<<"$body")"
  check "$type: stored copy served byte for byte" cmp -s "$served" "$STORAGE_DIR/$result"
  rm -f "$served"
  last_id=$id
}

echo "1. The server answers at $BASE_URL"
health=$(curl -sS "$BASE_URL/api/health")
check "GET /api/health says ok" test "$(json_field status <<<"$health")" = ok
check "storage folder $STORAGE_DIR exists" test -d "$STORAGE_DIR"

echo "2. Text to image"
post /api/generate/text-to-image -H 'Content-Type: application/json' \
  -d '{"prompt": "un chat", "aspectRatio": "16:9"}'
saved text_to_image

echo "3. Bad input is refused, and recorded as failed"
post /api/generate/text-to-image -H 'Content-Type: application/json' -d '{"prompt": ""}'
check "empty prompt answers 400" test "$status" = 400
failed_id=$(json_field operationId <<<"$body")
check "the failure is recorded" grep -q '"status": "failed"' "$STORAGE_DIR/$failed_id.json"

echo "4. Files in the storage folder"
ls -lh "$STORAGE_DIR" | tail -n 5

echo "5. History"
history=$(curl -sS "$BASE_URL/api/history?limit=5")
check "history lists the text-to-image operation" grep -q "${last_id:-missing}" <<<"$history"
"$PYTHON" -c 'import json, sys
for op in json.load(sys.stdin)["operations"]:
    print("  ", op["operationId"], op["operationType"], op["status"], op.get("prompt") or "")' <<<"$history"

echo "6. Last saved JSON"
last_json=$(ls -t "$STORAGE_DIR"/*.json 2>/dev/null | head -n 1)
check "a JSON record exists" test -n "$last_json"
[ -n "$last_json" ] && cat "$last_json" && echo

echo "storage: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
