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

# saved TYPE [UPLOADED_FILE...]: the last posted operation answered 200, its
# record and result are on disk, and each uploaded file was kept byte for byte.
saved() {
  local type=$1 id n=0
  shift
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
  for uploaded in "$@"; do
    check "$type: input $n kept byte for byte" cmp -s "$uploaded" "$(ls "$STORAGE_DIR/${id}_in_$n".* 2>/dev/null | head -n 1)"
    n=$((n + 1))
  done
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
text_to_image_id=$last_id

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -sS -o "$work/first.jpg" "$BASE_URL$(json_field fileUrl <<<"$body")"
post /api/generate/text-to-image -d prompt=mountains -d aspectRatio=1:1 -d outputFormat=png
curl -sS -o "$work/second.png" "$BASE_URL$(json_field fileUrl <<<"$body")"

echo "2b. One route of each family, with real uploads"
post /api/edit/image -F "prompt=sepia" -F "images=@$work/first.jpg" -F "images=@$work/second.png"
saved image_edit_multiple "$work/first.jpg" "$work/second.png"
post /api/video/text-to-video -F "prompt=waves on the sea" -F duration=1 -F fps=4
saved text_to_video
post /api/video-image/transition -F "images=@$work/first.jpg" -F "images=@$work/second.png" \
  -F duration=1 -F fps=4
saved image_to_video_transition "$work/first.jpg" "$work/second.png"
post /api/workflow/execute -F "prompt=make it brighter, then animate it" -F "image=@$work/first.jpg" \
  -F duration=1 -F fps=4
saved edit_then_video "$work/first.jpg"
check "edit_then_video: the workflow lists its 2 steps" grep -q '"parentId"' \
  "$STORAGE_DIR/$(json_field steps <<<"$body" | tr -d "[]' " | cut -d, -f2).json"

echo "3. Bad input is refused, and recorded as failed"
post /api/generate/text-to-image -H 'Content-Type: application/json' -d '{"prompt": ""}'
check "empty prompt answers 400" test "$status" = 400
failed_id=$(json_field operationId <<<"$body")
check "the failure is recorded" grep -q '"status": "failed"' "$STORAGE_DIR/$failed_id.json"
post /api/edit/pose -F "images=@$0" -F "images=@$work/first.jpg"
check "a shell script as an image answers 400" test "$status" = 400
check "the refusal names the field" grep -q 'images\[0\]' <<<"$body"
failed_id=$(json_field operationId <<<"$body")
check "the refusal describes the refused upload" grep -q '"refusedInputs"' "$STORAGE_DIR/$failed_id.json"
check "the refused upload is not kept (never served back)" test ! -e "$STORAGE_DIR/${failed_id}_in_0.bin"

echo "4. Files in the storage folder"
ls -lh "$STORAGE_DIR" | tail -n 8

echo "5. History"
listed=$(curl -sS "$BASE_URL/api/history?type=text_to_image&limit=20")
check "history lists the text-to-image operation" grep -q "\"${text_to_image_id:-missing}\"" <<<"$listed"
history=$(curl -sS "$BASE_URL/api/history?limit=5")
"$PYTHON" -c 'import json, sys
for op in json.load(sys.stdin)["operations"]:
    print("  ", op["operationId"], op["operationType"], op["status"], op.get("prompt") or "")' <<<"$history"

echo "6. Last saved JSON"
# The folder listed, not a glob: a folder of 100,000 records is too long an argument list.
last_json=$(ls -t "$STORAGE_DIR" | grep -m 1 '\.json$')
check "a JSON record exists" test -n "$last_json"
[ -n "$last_json" ] && cat "$STORAGE_DIR/$last_json" && echo

echo "storage: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
