"""History at scale: the index, filters, cursors, stats, CSV, retention, archives."""

import csv
import io
import json
import os
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import pytest

from generation_studio import create_app
from generation_studio.history.filters import iso

from .conftest import empty_index, png_bytes, stored_names


@pytest.fixture
def store(app):
    return app.extensions["history"]


def seed(store, days_ago=0.0, inputs=(), **fields):
    """Save an operation as if it had been made ``days_ago``."""
    when = datetime.now(timezone.utc) - timedelta(days=days_ago)
    record = {"operationId": store.new_id(when), "operationType": "text_to_image",
              "status": "succeeded", "createdAt": iso(when), "completedAt": iso(when),
              "durationMs": 100.0, "prompt": "a cat", "parameters": {},
              "provider": {"name": "local", "model": "local-procedural-1"}, **fields}
    outputs = [] if record["status"] == "failed" else [png_bytes((40, 30), pattern=True)]
    return store.save(record, inputs=[(i, "in.png") for i in inputs], outputs=outputs)["operationId"]


def ids_of(response):
    assert response.status_code == 200, response.get_json()
    return [op["operationId"] for op in response.get_json()["operations"]]


@pytest.fixture
def mixed(store):
    return {
        "old": seed(store, 40, prompt="an old lighthouse"),
        "failed": seed(store, 3, status="failed", error="boom", prompt="a broken robot"),
        "video": seed(store, 2, operationType="text_to_video", prompt="waves, crashing"),
        "fal": seed(store, 1, provider={"name": "fal", "model": "fal-ai/flux/schnell"},
                    prompt="a red lighthouse at dusk"),
        "new": seed(store, 0, prompt="a cat on a windowsill"),
    }


@pytest.mark.parametrize("query, expected", [
    ("", ["new", "fal", "video", "failed", "old"]),
    ("type=text_to_video", ["video"]),
    ("type=text_to_video&type=text_to_image", ["new", "fal", "video", "failed", "old"]),
    ("status=failed", ["failed"]),
    ("provider=fal", ["fal"]),
    ("q=lighthouse", ["fal", "old"]),
    ("q=red+lighthouse", ["fal"]),
    ("q=light", ["fal", "old"]),  # the last word is a prefix
    ("q=%22quoted%22+OR+x", []),  # FTS syntax in q is taken as words, not obeyed
    ("since={d5}", ["new", "fal", "video", "failed"]),
    ("until={d5}", ["old"]),
    ("since={d3}&until={d1}", ["fal", "video", "failed"]),
])
def test_each_filter(client, mixed, query, expected):
    day = lambda n: (datetime.now(timezone.utc) - timedelta(days=n)).strftime("%Y-%m-%d")  # noqa
    query = query.format(d5=day(5), d3=day(3), d1=day(1))
    body = client.get(f"/api/history?{query}").get_json()
    assert ids_of(client.get(f"/api/history?{query}")) == [mixed[k] for k in expected]
    assert body["total"] == len(expected)


def test_parent_filter(client, store):
    parent = seed(store, 0, operationType="edit_then_video")
    children = [seed(store, 0, parentId=parent), seed(store, 0, parentId=parent)]
    seed(store, 0)
    assert sorted(ids_of(client.get(f"/api/history?parentId={parent}"))) == sorted(children)


def test_cursor_pages_stay_put_while_operations_arrive(client, store):
    first = [seed(store, 1) for _ in range(5)]
    page1 = client.get("/api/history?limit=2").get_json()
    seen = [op["operationId"] for op in page1["operations"]]
    cursor = page1["nextCursor"]
    for _ in range(3):  # newer operations arrive while the user pages
        seed(store, 0)
    while cursor:
        body = client.get(f"/api/history?limit=2&before={cursor}").get_json()
        seen += [op["operationId"] for op in body["operations"]]
        cursor = body["nextCursor"]
    assert sorted(seen) == sorted(first) and len(seen) == len(set(seen)) == 5


@pytest.mark.parametrize("query, words", [
    ("since=yesterday", "since must be a date (2026-11-24) or an ISO 8601 time"),
    ("until=2026-13-40", "until must be a date"),
    ("since=2026-11-20&until=2026-11-10", "since (2026-11-20) is after until (2026-11-10)"),
    ("limit=-5", "limit must be a whole number from 1 to 500"),
    ("limit=100000", "limit must be a whole number from 1 to 500"),
    ("offset=-1", "offset must be a whole number from 0"),
    ("type=cat_video", "type must be one of text_to_image"),
    ("status=pending", "status must be one of queued, running, succeeded, failed, canceled"),
    ("provider=openai", "provider must be one of local, replicate, fal"),
    ("before=20990101_aaaaaaaaaaaa", "before='20990101_aaaaaaaaaaaa' is not an operation"),
    ("parentId=../x", "parentId must be an operation id"),
])
def test_bad_history_queries(client, mixed, query, words):
    response = client.get(f"/api/history?{query}")
    assert response.status_code == 400
    assert words in response.get_json()["error"]


def test_stats(client, store, runner):
    for duration in (100, 200, 300, 400, 1000):
        seed(store, 1, durationMs=float(duration))
    seed(store, 0, status="failed", durationMs=5.0, error="x")
    seed(store, 0, operationType="text_to_video", durationMs=50.0)
    body = client.get("/api/history/stats?days=7").get_json()
    assert body["total"] == 7 and body["succeeded"] == 6 and body["failed"] == 1
    assert body["successRate"] == round(6 / 7, 4)
    t2i = body["byType"]["text_to_image"]
    assert (t2i["count"], t2i["succeeded"], t2i["failed"]) == (6, 5, 1)
    assert t2i["durationMs"] == {"median": 200.0, "p95": 1000.0}
    assert body["byType"]["text_to_video"]["durationMs"] == {"median": 50.0, "p95": 50.0}
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert body["perDay"][today] == 2 and sum(body["perDay"].values()) == 7
    assert body["storageBytes"] == sum(e["bytes"] for e in body["byType"].values()) > 0
    out = runner.invoke(args=["history", "stats", "--days", "7"]).output
    assert out.startswith("7 operation(s): 6 succeeded, 1 failed (85.7% success)")
    assert "text_to_image" in out and "200" in out


TRICKY = 'a "quoted", comma\nnew line, and = sign'


def test_csv_round_trip_and_formula_guard(client, store):
    seed(store, 0, prompt=TRICKY)
    seed(store, 0, prompt="=HYPERLINK(\"http://evil\")", status="failed", error="-1+1")
    seed(store, 0, prompt="@SUM(A1)")
    response = client.get("/api/history/export.csv")
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert list(rows[0]) == ["operationId", "operationType", "status", "createdAt", "completedAt",
                             "durationMs", "provider", "model", "prompt", "parentId", "error",
                             "inputCount", "inputBytes", "outputBytes", "resultFile",
                             "trashedAt", "starred"]
    prompts = {r["prompt"] for r in rows}
    assert TRICKY in prompts
    assert "'=HYPERLINK(\"http://evil\")" in prompts and "'@SUM(A1)" in prompts
    assert any(r["error"] == "'-1+1" for r in rows)
    filtered = client.get("/api/history/export.csv?status=failed").get_data(as_text=True)
    assert len(list(csv.DictReader(io.StringIO(filtered)))) == 1


def test_cli_export(store, runner, tmp_path):
    for _ in range(3):
        seed(store, 0)
    target = tmp_path / "ops.csv"
    result = runner.invoke(args=["history", "export", "-o", str(target), "--type", "text_to_image"])
    assert result.exit_code == 0, result.output
    assert f"Exported 3 operation(s) to {target}" in result.output
    assert len(list(csv.DictReader(target.open()))) == 3


def _files_of(storage_dir, op_id):
    return [n for n in stored_names(storage_dir) if n.startswith(op_id)]


def test_cleanup_dry_run_then_real(store, runner, storage_dir, client):
    old = [seed(store, 40, inputs=[png_bytes()]), seed(store, 31)]
    recent = seed(store, 29)
    dry = runner.invoke(args=["history", "cleanup", "--older-than", "30d", "--dry-run"])
    assert dry.exit_code == 0
    assert sorted(dry.output.splitlines()[:2]) == sorted(old)
    assert "Would delete 2 operation(s)" in dry.output and "nothing deleted" in dry.output
    assert all(_files_of(storage_dir, op_id) for op_id in old)
    real = runner.invoke(args=["history", "cleanup", "--older-than", "30d"])
    assert real.exit_code == 0, real.output
    assert "Deleted 2 operation(s) older than 30d, freed" in real.output
    assert not any(_files_of(storage_dir, op_id) for op_id in old)
    assert _files_of(storage_dir, recent)
    assert ids_of(client.get("/api/history")) == [recent]
    assert set(store.index.ids()) == {recent}


def test_cleanup_finishes_what_a_crash_interrupted(store, runner, storage_dir):
    victim = seed(store, 40, inputs=[png_bytes()])
    # A crash after the record went and before the files and the index row did:
    (storage_dir / f"{victim}.json").unlink()
    stale = time.time() - 3600
    for name in _files_of(storage_dir, victim):
        os.utime(storage_dir / name, (stale, stale))
    result = runner.invoke(args=["history", "cleanup", "--older-than", "30d"])
    assert "finished an interrupted run (2 file(s))" in result.output
    assert _files_of(storage_dir, victim) == [] and victim not in set(store.index.ids())


def test_compress_serve_then_decompress_byte_identical(store, runner, storage_dir, client):
    old = [seed(store, 10, inputs=[png_bytes((50, 50), pattern=True)]) for _ in range(3)]
    recent = seed(store, 1)
    before = {n: (storage_dir / n).read_bytes() for n in stored_names(storage_dir)}
    result = runner.invoke(args=["history", "compress", "--older-than", "7d"])
    assert result.exit_code == 0, result.output
    assert "Compressed 1 day(s):" in result.output and "saved" in result.output
    assert (storage_dir / "archives" / f"{old[0][:8]}.zip").is_file()
    assert all(not _files_of(storage_dir, op_id) for op_id in old) and _files_of(storage_dir, recent)
    # The API, the CLI and the export serve them as before.
    assert set(ids_of(client.get("/api/history"))) == set(old) | {recent}
    record = client.get(f"/api/history/{old[0]}").get_json()["operation"]
    for entry in record["inputImages"] + record["outputs"]:
        served = client.get(f"/api/history/{old[0]}/files/{entry['file']}")
        assert served.status_code == 200 and served.data == before[entry["file"]]
        assert served.mimetype == entry["contentType"]
    assert json.loads(runner.invoke(args=["history", "show", old[1]]).output)["operationId"] == old[1]
    assert old[2] in client.get("/api/history/export.csv").get_data(as_text=True)
    result = runner.invoke(args=["history", "decompress"])
    assert "Decompressed 1 day(s), 9 file(s)" in result.output
    after = {n: (storage_dir / n).read_bytes() for n in stored_names(storage_dir)}
    assert after == before
    assert not list((storage_dir / "archives").iterdir())


def test_delete_and_cleanup_of_archived_operations(store, runner, storage_dir, client):
    old = [seed(store, 40) for _ in range(3)]
    runner.invoke(args=["history", "compress", "--older-than", "7d"])
    assert client.delete(f"/api/history/{old[0]}").status_code == 200
    assert client.get(f"/api/history/{old[0]}").status_code == 404
    assert client.get(f"/api/history/{old[1]}").status_code == 200
    result = runner.invoke(args=["history", "cleanup", "--older-than", "30d"])
    assert "Deleted 2 operation(s)" in result.output
    assert not list((storage_dir / "archives").iterdir())


def test_reindex_rebuilds_from_the_files_and_skips_a_corrupt_one(store, runner, storage_dir, caplog):
    ids = [seed(store, 0) for _ in range(4)]
    (storage_dir / f"{ids[0]}.json").write_text("{ not json")
    empty_index(store.index)
    result = runner.invoke(args=["history", "reindex"])
    assert result.exit_code == 0
    assert f"Indexed 3 operation(s); skipped: 1 — {ids[0]}.json: invalid JSON" in result.output
    assert f"Skipped {ids[0]}.json: invalid JSON" in result.output
    assert set(store.index.ids()) == set(ids[1:])


def test_start_up_catches_up_with_records_written_behind_its_back(app, store, storage_dir):
    seen = seed(store, 0)
    index_path = app.config["INDEX_PATH"]
    store.index.remove([seen])  # as if written by a process that crashed before indexing
    os.unlink(storage_dir / f"{seed(store, 0)}.json")  # and one whose record is gone
    fresh = create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir),
                        "HISTORY_CHECK_WAITS": True})
    assert set(fresh.extensions["history"].index.ids()) == {seen}
    assert fresh.config["INDEX_PATH"] == index_path


def test_start_up_rebuilds_a_missing_index(app, store, storage_dir):
    ids = {seed(store, 0) for _ in range(3)}
    store.index.close()
    os.unlink(app.config["INDEX_PATH"])
    fresh = create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir),
                        "HISTORY_CHECK_WAITS": True})
    assert set(fresh.extensions["history"].index.ids()) == ids


WRITER = """
import sys
from generation_studio.history import HistoryService
store = HistoryService(sys.argv[1], sys.argv[2])
for n in range(40):
    store.save({"operationType": "text_to_image", "status": "succeeded",
                "createdAt": "2026-11-24T00:00:00.000Z", "prompt": f"{sys.argv[3]} {n}"})
"""


def test_two_processes_writing_at_once_lose_no_row(app, store, storage_dir):
    import subprocess
    import sys
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(storage_dir),
                               app.config["INDEX_PATH"], name]) for name in ("left", "right")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    on_disk = set(store.locations())
    assert len(on_disk) == 80 and set(store.index.ids()) == on_disk
    check = sqlite3.connect(app.config["INDEX_PATH"]).execute("PRAGMA integrity_check").fetchone()
    assert check == ("ok",)


def test_delete_needs_the_admin_token_when_set(client, app, store, storage_dir):
    op_id = seed(store, 0, inputs=[png_bytes()])
    app.config["ADMIN_TOKEN"] = "let-me-in"
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = client.delete(f"/api/history/{op_id}", headers=headers)
        assert response.status_code == 401 and "admin token" in response.get_json()["error"]
    assert _files_of(storage_dir, op_id)
    response = client.delete(f"/api/history/{op_id}", headers={"Authorization": "Bearer let-me-in"})
    assert response.status_code == 200
    assert response.get_json()["deleted"] == [op_id] and response.get_json()["freedBytes"] > 0
    assert _files_of(storage_dir, op_id) == [] and client.get(f"/api/history/{op_id}").status_code == 404
    assert client.delete(f"/api/history/{op_id}",
                         headers={"Authorization": "Bearer let-me-in"}).status_code == 404


def test_deleting_a_workflow_deletes_its_steps(client, runner, store):
    parent = seed(store, 0, operationType="edit_then_video")
    steps = [seed(store, 0, parentId=parent) for _ in range(2)]
    result = runner.invoke(args=["history", "delete", parent])
    assert result.exit_code == 0 and parent in result.output
    assert set(store.index.ids()) == set() and all(store.get(i) is None for i in steps)


def test_the_server_cleans_up_by_itself_at_most_once_an_hour(storage_dir):
    app = create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir), "RETENTION_DAYS": 30,
                      "HISTORY_CHECK_WAITS": True})
    store = app.extensions["history"]
    old, recent = seed(store, 45), seed(store, 2)
    client = app.test_client()
    client.get("/api/health")
    app.extensions["retention_thread"].join(10)
    assert store.get(old) is None and store.get(recent) is not None
    first = app.extensions["retention_thread"]
    late = seed(store, 50)
    client.get("/api/health")  # within the hour: no second run
    assert app.extensions["retention_thread"] is first and store.get(late) is not None


def test_search_without_fts5_falls_back_to_like(client, store, monkeypatch):
    store.index.connect()
    # As on an SQLite built without FTS5, in every thread's connection.
    monkeypatch.setattr(type(store.index), "has_fts", property(lambda ix: False,
                                                               lambda ix, value: None),
                        raising=False)
    hits = [seed(store, 0, prompt="a lighthouse"), seed(store, 0, prompt="100% cotton")]
    seed(store, 0, prompt="a barn")
    assert ids_of(client.get("/api/history?q=lighthouse")) == [hits[0]]
    assert ids_of(client.get("/api/history?q=100%25")) == [hits[1]]
    assert ids_of(client.get("/api/history?q=0%25")) == [hits[1]]
    assert ids_of(client.get("/api/history?q=_")) == []  # _ is a letter here, not a wildcard
