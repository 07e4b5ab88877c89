"""The history service keeps its promises: every record is found, none is
lost or resurrected under concurrency, a broken index never breaks the
history, and what dead writers leave is cleaned up."""

import csv
import io
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import zipfile

import pytest

from generation_studio import create_app
from generation_studio.history import recovery
from generation_studio.history.filters import Filters, iso
from generation_studio.storage import archive, layout

from .conftest import TEXT_TO_IMAGE, png_bytes


def make_app(storage_dir, **settings):
    return create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir),
                       "HISTORY_CHECK_WAITS": True, **settings})


def guide_record(storage_dir, op_id, prompt, **fields):
    """A record as the integration guide's service writes it (no schemaVersion,
    ``timestamp``, file names as plain strings), with its output file."""
    storage_dir.mkdir(parents=True, exist_ok=True)
    (storage_dir / f"{op_id}_out.jpg").write_bytes(png_bytes(fmt="JPEG"))
    record = {"id": op_id, "timestamp": f"{op_id[:4]}-{op_id[4:6]}-{op_id[6:8]}T10:00:00.000Z",
              "operationType": "text_to_image", "prompt": prompt,
              "parameters": {"aspectRatio": "16:9"}, "inputImages": [],
              "resultUrl": "https://example.invalid/x.jpg", "resultFile": f"{op_id}_out.jpg",
              "workflowAnalysis": None, "error": None, **fields}
    (storage_dir / f"{op_id}.json").write_text(json.dumps(record))
    return record


def wait_for(predicate, seconds=15.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# Every record is found ------------------------------------------------------------
def test_records_in_the_guides_id_shape_are_listed_searched_counted_and_exported(storage_dir):
    ids = [f"20251103_{n:06x}" for n in range(30)] + ["20251104_my-own_id", "20251104_a_b"]
    for n, op_id in enumerate(ids):
        guide_record(storage_dir, op_id, "a lighthouse" if n % 4 == 0 else "a cat",
                     error="boom" if n == 5 else None)
    app = make_app(storage_dir)
    client = app.test_client()
    body = client.get("/api/history?limit=500").get_json()
    assert body["total"] == 32 and {op["operationId"] for op in body["operations"]} == set(ids)
    assert client.get("/api/history?q=lighthouse").get_json()["total"] == 8
    assert client.get("/api/history?status=failed").get_json()["operations"][0][
        "operationId"] == ids[5]
    stats = client.get("/api/history/stats?days=3660").get_json()
    assert (stats["total"], stats["failed"]) == (32, 1)
    rows = list(csv.DictReader(io.StringIO(client.get("/api/history/export.csv").get_data(
        as_text=True))))
    assert sorted(r["operationId"] for r in rows) == sorted(ids)
    one = client.get("/api/history/20251104_my-own_id").get_json()["operation"]
    assert one["createdAt"] == "2025-11-04T10:00:00.000Z" and one["status"] == "succeeded"
    size = len(png_bytes(fmt="JPEG"))  # a guide's record names its files, the folder sizes them
    assert one["outputs"] == [{"file": "20251104_my-own_id_out.jpg", "contentType": "image/jpeg",
                               "bytes": size}]
    assert stats["storageBytes"] == 32 * size
    assert client.post("/api/history/20251104_my-own_id/star",
                       json={"starred": True}).status_code == 200
    assert client.get("/api/history/stats?days=3660").get_json()["storageBytes"] == 32 * size
    page = client.get("/history/20251104_my-own_id")
    assert page.status_code == 200 and "20251104_my-own_id_out.jpg</a>" in page.get_data(
        as_text=True)
    usage = client.get("/stats?days=3660")
    assert usage.status_code == 200 and "Operations per day, last 3660 days" in usage.get_data(
        as_text=True)
    shown = app.test_cli_runner().invoke(args=["history", "stats", "--days", "3660"]).stdout
    assert shown.splitlines()[2].split() == [
        "text_to_image", "32", "1", "-", "-", f"{32 * size:,}", "bytes"]
    (storage_dir / "20251103_000001_out.jpg").unlink()  # its size cannot be known
    assert client.get("/history/20251103_000001").status_code == 200
    assert client.get("/api/history/20251104_my-own_id/files/20251104_my-own_id_out.jpg"
                      ).data == png_bytes(fmt="JPEG")
    assert client.delete("/api/history/20251104_a_b").status_code == 200
    assert not (storage_dir / "20251104_a_b.json").exists()
    assert not (storage_dir / "20251104_a_b_out.jpg").exists()
    assert (storage_dir / "20251104_a_b_out.jpg").exists() is False and \
        (storage_dir / "20251104_my-own_id_out.jpg").exists()


def test_a_type_of_another_writer_is_filtered_like_the_catalogues(storage_dir):
    """The guide's workflows record "the exact type of the workflow found":
    a type the history holds is a filter; one it does not hold is a 400."""
    for n in range(3):
        guide_record(storage_dir, f"20251103_wf{n:04d}", "a cat", resultFile=None,
                     operationType="generate_then_animate")
    guide_record(storage_dir, "20251103_t2i000", "a cat")
    app = make_app(storage_dir)
    client = app.test_client()
    found = client.get("/api/history?type=generate_then_animate&q=cat").get_json()
    assert (found["total"], sorted(op["operationId"] for op in found["operations"])) == (
        3, ["20251103_wf0000", "20251103_wf0001", "20251103_wf0002"])
    both = "/api/history/stats?days=3660&type=generate_then_animate&type=text_to_image"
    assert client.get(both).get_json()["total"] == 4
    assert client.get("/api/history/export.csv?type=generate_then_animate").get_data(
        as_text=True).count("generate_then_animate") == 3
    gallery = client.get("/history?type=generate_then_animate").get_data(as_text=True)
    assert gallery.count('<li class="tile nofile">') == 3  # a result URL, no file kept
    assert gallery.count("No result file was kept.") == 3
    refused = client.get("/api/history?type=txt_to_image")
    assert (refused.status_code, refused.get_json()["field"]) == (400, "type")
    assert refused.get_json()["error"].endswith(
        ", workflow, generate_then_animate (got 'txt_to_image')")
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["history", "list", "--type", "generate_then_animate"])
    assert (listed.exit_code, listed.stdout.count("generate_then_animate")) == (0, 3)
    wrong = runner.invoke(args=["history", "list", "--type", "txt_to_image"])
    assert wrong.exit_code == 2 and "(got 'txt_to_image')" in wrong.output


def two_processes(storage_dir):
    """Two histories on one folder and index, as two server processes have,
    each with its connection open."""
    from generation_studio.history import HistoryService
    shared = [HistoryService(storage_dir, storage_dir / ".index" / "history.sqlite3")
              for _ in range(2)]
    for history in shared:
        history.start(wait=True)
        history.save({"operationType": "text_to_image", "status": "succeeded"})
    return shared


def counts(*histories):
    return [h.page(Filters(), 1).total for h in histories]


def test_a_process_follows_the_index_another_rebuilt_in_its_place(storage_dir, caplog):
    """Another process rebuilt the index (a new file in its place): this one's
    rows go to that file, not to the one it replaced, which nobody reads."""
    caplog.set_level(logging.INFO)
    first, second = two_processes(storage_dir)
    first.keeper.broken(RuntimeError("as if it had failed"))
    first.keeper._thread.join(20)
    assert "History index rebuilt: 2 operation(s)" in caplog.text
    second.save({"operationType": "text_to_image", "status": "succeeded"})
    assert counts(first, second) == [3, 3]


def test_an_index_removed_while_in_use_is_rebuilt_not_made_empty(storage_dir, caplog):
    first, second = two_processes(storage_dir)
    for suffix in ("", "-wal", "-shm"):
        (storage_dir / ".index" / f"history.sqlite3{suffix}").unlink(missing_ok=True)
    first.page(Filters(), 1)  # finds it gone: answered from the records, and rebuilt
    assert "history.sqlite3 was removed): the history answers from the records" in caplog.text
    first.keeper._thread.join(20)
    assert counts(first, second) == [2, 2]


def test_processes_that_find_the_index_broken_at_once_rebuild_it_once(storage_dir, caplog):
    import fcntl
    caplog.set_level(logging.INFO)
    first, second = two_processes(storage_dir)
    path = storage_dir / ".index" / "history.sqlite3"
    first.index.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path.write_bytes(os.urandom(path.stat().st_size))  # garbage, in place
    turn = os.open(path.parent / "rebuild.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(turn, fcntl.LOCK_EX)  # both find it broken before either rebuilds
    for history in (first, second):
        history.index.close()  # read anew
        history.page(Filters(), 1)
    os.close(turn)
    for history in (first, second):
        history.keeper._thread.join(20)
    assert caplog.text.count("History index rebuilt: 2 operation(s)") == 1
    assert caplog.text.count("History index rebuilt by another process: using it") == 1
    assert first.index.identity == second.index.identity
    second.save({"operationType": "text_to_image", "status": "succeeded"})
    assert counts(first, second) == [3, 3]


def test_a_process_that_found_the_index_broken_takes_up_a_reindex_running_elsewhere(
        storage_dir, caplog):
    """``flask history reindex`` refills the index in its place while a server
    waits its turn to rebuild it: the server takes that refill up when it ends,
    instead of removing the file it fills."""
    import fcntl
    caplog.set_level(logging.INFO)
    first, second = two_processes(storage_dir)
    for n in range(300):
        guide_record(storage_dir, f"20251103_{n:06x}", "a lighthouse")
    turn = os.open(storage_dir / ".index" / "rebuild.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(turn, fcntl.LOCK_EX)
    second.keeper.broken(RuntimeError("as if it had failed"))  # waits for its turn
    reindex = subprocess.Popen([sys.executable, "-c", SLOW_REINDEX, str(storage_dir)],
                               stdout=subprocess.PIPE, text=True)
    assert wait_for(lambda: first.index.get_meta("refill") is not None)
    os.close(turn)  # its turn: the refill is still running
    second.keeper._thread.join(30)
    assert reindex.wait(30) == 0 and reindex.stdout.read() == "302\n"
    assert "History index rebuilt by another process: using it" in caplog.text
    assert "History index rebuilt: " not in caplog.text
    assert second.index.identity == first.index.identity
    assert counts(first, second) == [302, 302]


def test_files_that_are_not_records_are_counted_and_named(storage_dir, tmp_path):
    guide_record(storage_dir, "20251103_abc123", "a cat")
    (storage_dir / "20251103_broken.json").write_text("{ not json")
    (storage_dir / "20251103_list.json").write_text("[1, 2]")
    (storage_dir / "notes.json").write_text("{}")
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"operationType": "text_to_image", "prompt": "secret"}))
    (storage_dir / "20251103_link.json").symlink_to(elsewhere)
    (storage_dir / "20251103_abc123_in_9.png").symlink_to(elsewhere)  # a file, not a record
    (storage_dir / "photo.png").write_bytes(png_bytes())  # not ours: left alone, unreported
    app = make_app(storage_dir)
    client = app.test_client()
    history = client.get("/api/health").get_json()["history"]
    assert history["skipped"] == 5
    assert history["skippedFiles"] == [
        "20251103_abc123_in_9.png: a symbolic link: never followed",
        "20251103_broken.json: invalid JSON (Expecting property name enclosed in double quotes:"
        " line 1 column 3 (char 2))",
        "20251103_link.json: a symbolic link: never followed",
        "20251103_list.json: not a JSON object (a list)",
        "notes.json: not named YYYYMMDD_<id>.json"]
    assert client.get("/api/history").get_json()["total"] == 1
    assert client.get("/api/history/20251103_link").status_code == 404
    result = app.test_cli_runner().invoke(args=["history", "reindex"])
    assert "Indexed 1 operation(s); skipped: 5 — 20251103_abc123_in_9.png: a symbolic link" \
        in result.output
    assert "skipped: 5 — 20251103_abc123_in_9.png: a symbolic link" in client.get("/admin").get_data(
        as_text=True)


def test_records_that_cannot_be_trusted_pipes_and_folders_are_named_never_a_500(storage_dir):
    guide_record(storage_dir, "20251103_abc123", "a cat")
    for op_id, fields in (("20251103_notype", {"hello": "world"}),
                          ("20251103_inttype", {"operationType": 42}),
                          ("20251103_badtime", {"operationType": "text_to_image",
                                                "timestamp": "not a date"}),
                          ("20251103_letters", {"operationType": "text_to_image",
                                                "inputImages": "a.png"})):
        (storage_dir / f"{op_id}.json").write_text(json.dumps(fields))
    os.mkfifo(storage_dir / "20251103_pipe01.json")  # never opened: no writer would come
    (storage_dir / "20251103_folder.json").mkdir()
    (storage_dir / "20251103_upper.JSON").write_text("{}")
    app = make_app(storage_dir)
    client = app.test_client()
    health = client.get("/api/health").get_json()["history"]
    assert health["skippedFiles"] == [
        "20251103_badtime.json: timestamp is not an ISO 8601 time ('not a date')",
        "20251103_folder.json: not a regular file",
        "20251103_inttype.json: operationType is not a name (42)",
        "20251103_letters.json: inputImages is not a list ('a.png')",
        "20251103_notype.json: no operationType",
        "20251103_pipe01.json: not a regular file",
        "20251103_upper.JSON: not named YYYYMMDD_<id>.json"]
    listed = client.get("/api/history").get_json()
    assert (listed["total"], [op["operationId"] for op in listed["operations"]]) == \
        (1, ["20251103_abc123"])
    stats = client.get("/api/history/stats?days=3660")
    assert (stats.status_code, stats.get_json()["total"]) == (200, 1)
    missing = client.get("/api/history/20251103_notype")
    assert (missing.status_code, missing.get_json()["error"]) == (
        404, "Operation '20251103_notype' is in the folder but cannot be read: no operationType")
    assert client.get("/api/history/20251103_nothere").get_json()["error"] == \
        "No operation '20251103_nothere'"
    runner = app.test_cli_runner()
    for command in (["history", "list"], ["history", "stats", "--days", "3660"]):
        result = runner.invoke(args=command)
        assert (result.exit_code, result.exception) == (0, None)
    summary = runner.invoke(args=["history", "reindex"]).stdout.splitlines()[-1]
    assert summary == ("Indexed 1 operation(s); skipped: 7 — 20251103_badtime.json: timestamp is "
                       "not an ISO 8601 time ('not a date'); 20251103_folder.json: not a regular "
                       "file; 20251103_inttype.json: operationType is not a name (42); "
                       "20251103_letters.json: inputImages is not a list ('a.png'); "
                       "20251103_notype.json: no operationType (and 2 more: named above)")


SLOW_REINDEX = """
import sys, time
from generation_studio import create_app
from generation_studio.history import rebuild
reads = rebuild.rows_of
def slow_reads(*args):  # as on a large folder: the refill lasts
    for found in reads(*args):
        time.sleep(0.004)
        yield found
rebuild.rows_of = slow_reads
app = create_app({"STORAGE_DIR": sys.argv[1], "HISTORY_CHECK_WAITS": True})
print(app.extensions["history"].reindex()["added"], flush=True)
"""


def test_a_reindex_by_another_process_never_shows_part_of_the_history(storage_dir):
    """``flask history reindex`` in another process empties the index and
    refills it: meanwhile the server's history answers from the records (every
    one of them, marked degraded), never from the part refilled so far."""
    for n in range(400):
        guide_record(storage_dir, f"20251103_{n:06x}", "a lighthouse")
    client = make_app(storage_dir).test_client()
    assert client.get("/api/history?limit=5").get_json()["total"] == 400
    reindex = subprocess.Popen([sys.executable, "-c", SLOW_REINDEX, str(storage_dir)],
                               stdout=subprocess.PIPE, text=True)
    seen, health = [], None
    while reindex.poll() is None:
        body = client.get("/api/history?limit=5").get_json()
        seen.append((body["total"], "degraded" in body,
                     tuple(o["operationId"] for o in body["operations"])))
        if "degraded" in body and health is None:
            health = client.get("/api/health").get_json()
        time.sleep(0.02)
    assert reindex.stdout.read() == "400\n" and reindex.returncode == 0
    newest = tuple(f"20251103_{n:06x}" for n in range(399, 394, -1))
    assert {s for s in seen if s[1]} == {(None, True, newest)}  # the refill was seen, whole
    assert {s for s in seen if not s[1]} <= {(400, False, newest)}
    assert (health["status"], health["history"]["index"], health["history"]["indexProblem"]) == (
        "degraded", "rebuilding", f"being rebuilt by process {reindex.pid}")
    after = client.get("/api/history?limit=5").get_json()
    assert (after["total"], "degraded" in after) == (400, False)
    assert client.get("/api/history?q=lighthouse&limit=5").get_json()["total"] == 400


def test_health_shows_how_far_another_processs_reindex_has_gone(storage_dir):
    for n in range(400):  # 8 days: the refill writes, and says how far it is, a day at a time
        guide_record(storage_dir, f"2025110{1 + n % 8}_{n:06x}", "a lighthouse")
    client = make_app(storage_dir).test_client()
    reindex = subprocess.Popen([sys.executable, "-c", SLOW_REINDEX, str(storage_dir)],
                               stdout=subprocess.PIPE, text=True)
    seen = set()
    while reindex.poll() is None:
        history = client.get("/api/health").get_json()["history"]
        if history["indexProblem"] == f"being rebuilt by process {reindex.pid}":
            seen.add(history["indexProgress"])
        time.sleep(0.02)
    assert reindex.stdout.read() == "400\n"
    said = seen - {None}  # None: before its first day is written
    assert said and said <= {f"{50 * days} of 400 records read" for days in range(1, 9)}
    assert client.get("/api/health").get_json()["history"]["indexProgress"] is None


def test_a_second_reindex_while_one_runs_is_refused_and_changes_nothing(storage_dir):
    for n in range(300):
        guide_record(storage_dir, f"20251103_{n:06x}", "a lighthouse")
    app = make_app(storage_dir)
    reindex = subprocess.Popen([sys.executable, "-c", SLOW_REINDEX, str(storage_dir)],
                               stdout=subprocess.PIPE, text=True)
    index = app.extensions["history"].index
    assert wait_for(lambda: index.get_meta("refill") is not None)
    result = app.test_cli_runner().invoke(args=["history", "reindex"])
    assert (result.exit_code, result.output.splitlines()[-1]) == (
        1, f"Error: the history index is being rebuilt by process {reindex.pid}: try again "
           "when it is done")
    assert reindex.wait(60) == 0 and reindex.stdout.read() == "300\n"
    assert app.test_client().get("/api/history?q=lighthouse").get_json()["total"] == 300


def slow_reads(monkeypatch) -> list:
    """Records read a millisecond each, as on a large folder; the ids read, in
    this process, go into the list returned."""
    from generation_studio.history import rebuild
    reads, read = rebuild.rows_of, []

    def slow(*args):
        for found in reads(*args):
            time.sleep(0.001)
            read.append(found[0])
            yield found

    monkeypatch.setattr(rebuild, "rows_of", slow)
    return read


def test_reindex_of_an_index_of_another_version_rebuilds_it_once_in_its_place(
        storage_dir, caplog, monkeypatch):
    """The CLI's start-up check finds the old index and rebuilds it in the
    background: ``reindex`` takes that rebuild up, never runs a second one
    over it (two at once fought over the file and left the index in /tmp)."""
    import sqlite3

    from generation_studio.history.index import SCHEMA_VERSION
    read = slow_reads(monkeypatch)  # the background rebuild is still running
    for n in range(3000):
        op_id = f"20251103_{n:06x}"
        guide_record(storage_dir, op_id, "a lighthouse")
    path = storage_dir / ".index" / "history.sqlite3"
    path.parent.mkdir()
    old = sqlite3.connect(path)
    old.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    old.close()
    app = create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir)})  # as the CLI starts
    result = app.test_cli_runner().invoke(args=["history", "reindex"])
    keeper = app.extensions["history"].keeper
    assert wait_for(lambda: keeper._thread is None or not keeper._thread.is_alive())
    assert len(read) == 3000  # each record read once: one rebuild
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "Indexed 3000 operation(s); skipped: 0"
    assert app.extensions["history"].index.path == path
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert check.execute("SELECT COUNT(*) FROM operations").fetchone()[0] == 3000
    ours = "\n".join(m for m in caplog.messages if str(storage_dir) in m)  # not other tests' threads
    assert "Cannot make the history index" not in ours
    assert "making a new one" not in ours
    assert ours.count("History index rebuilt: 3000 operation(s)") == 1


def test_reindex_with_no_index_reads_each_record_once(storage_dir, monkeypatch):
    """With no index, the CLI's start-up check fills one from every record:
    ``reindex`` takes that fill up instead of reading them all a second time."""
    read = slow_reads(monkeypatch)  # the fill is still running
    for n in range(2000):
        guide_record(storage_dir, f"20251103_{n:06x}", "a lighthouse")
    (storage_dir / "20251103_broken.json").write_text("{")
    app = create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir)})  # as the CLI starts
    result = app.test_cli_runner().invoke(args=["history", "reindex"])
    assert (result.exit_code, result.stdout.splitlines()[-1]) == (
        0, "Indexed 2000 operation(s); skipped: 1 — 20251103_broken.json: invalid JSON (Expecting "
           "property name enclosed in double quotes: line 1 column 2 (char 1))")
    assert len(read) == 2001  # each record read once
    assert app.test_client().get("/api/history?q=lighthouse").get_json()["total"] == 2000


def test_a_record_from_a_newer_studio_is_read_with_its_extra_fields(storage_dir):
    storage_dir.mkdir(parents=True)
    record = {"operationId": "20261120_zzzzzzzzzzzz", "schemaVersion": 7,
              "operationType": "text_to_image", "status": "succeeded",
              "createdAt": "2026-11-20T08:00:00.000Z", "prompt": "from the future",
              "novelty": {"kept": True}, "outputs": [], "inputImages": []}
    (storage_dir / "20261120_zzzzzzzzzzzz.json").write_text(json.dumps(record))
    client = make_app(storage_dir).test_client()
    served = client.get("/api/history/20261120_zzzzzzzzzzzz").get_json()["operation"]
    assert served["novelty"] == {"kept": True} and served["schemaVersion"] == 7
    assert client.get("/api/history?q=future").get_json()["total"] == 1


# Concurrency ----------------------------------------------------------------------
def seed(history, days_ago, n):
    ids = []
    for k in range(n):
        when = time.time() - days_ago * 86400
        from datetime import datetime, timezone
        moment = datetime.fromtimestamp(when, timezone.utc)
        record = {"operationId": history.new_id(moment), "operationType": "text_to_image",
                  "status": "succeeded", "createdAt": iso(moment), "prompt": f"cat {k}",
                  "provider": {"name": "local"}}
        ids.append(history.save(record, inputs=[(png_bytes(), "in.png")],
                                outputs=[png_bytes((20, 20))])["operationId"])
    return ids


COMPRESSOR = """
import sys
from datetime import timedelta
from generation_studio.history import HistoryService
history = HistoryService(sys.argv[1], sys.argv[2])
for _ in range(4):
    history.compress(timedelta(days=1))
    history.decompress()
history.compress(timedelta(days=1))
"""
DELETER = """
import sys
from generation_studio.history import HistoryService, NotFound
history = HistoryService(sys.argv[1], sys.argv[2])
for op_id in sys.argv[3:]:
    history.delete(op_id)
"""


def where_is(storage_dir, op_id):
    """Where an operation's record is: "loose", "archive", both or neither."""
    places = []
    if (storage_dir / f"{op_id}.json").exists():
        places.append("loose")
    zips = list((storage_dir / "archives").glob("*.zip"))
    if any(f"{op_id}.json" in zipfile.ZipFile(z).namelist() for z in zips):
        places.append("archive")
    return places


def test_compress_decompress_and_delete_at_once_lose_and_resurrect_nothing(storage_dir):
    app = make_app(storage_dir)
    history = app.extensions["history"]
    ids = seed(history, 10, 40) + seed(history, 11, 40) + seed(history, 12, 40)
    doomed = random.Random(7).sample(ids, 60)
    index = app.config["INDEX_PATH"]
    procs = [subprocess.Popen([sys.executable, "-c", COMPRESSOR, str(storage_dir), index]),
             subprocess.Popen([sys.executable, "-c", DELETER, str(storage_dir), index, *doomed])]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    for op_id in ids:
        expected = [] if op_id in doomed else ["archive"]
        assert where_is(storage_dir, op_id) == expected, op_id
    kept = set(ids) - set(doomed)
    assert set(history.get_many(ids)) == kept
    assert set(history.index.ids()) == kept
    names = [n for day in archive.days(storage_dir) for n in archive.names(storage_dir, day)]
    assert len(names) == len(set(names)) == 3 * len(kept)  # record, input, output each


def test_deleting_one_id_at_once_from_many_clients_answers_one_200_and_404s(app):
    history = app.extensions["history"]
    for op_id in seed(history, 0, 10):
        start, statuses = threading.Barrier(6), []

        def delete(op_id=op_id, start=start, statuses=statuses):
            start.wait()
            statuses.append(app.test_client().delete(f"/api/history/{op_id}").status_code)

        threads = [threading.Thread(target=delete) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200] + [404] * 5, op_id


# Faults ----------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["garbage", "truncated", "other version"])
def test_a_broken_index_is_rebuilt_while_the_history_answers(storage_dir, damage, caplog):
    app = make_app(storage_dir)
    ids = set(seed(app.extensions["history"], 0, 30))
    path = app.config["INDEX_PATH"]
    app.extensions["history"].index.close()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    if damage == "garbage":
        open(path, "wb").write(b"this is not a database" * 100)
    elif damage == "truncated":
        os.truncate(path, os.path.getsize(path) // 3)
    else:
        import sqlite3
        sqlite3.connect(path).execute("PRAGMA user_version = 99").connection.close()
    fresh = create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir)})
    client = fresh.test_client()
    started = time.time()
    response = client.get("/api/history?limit=100")
    assert response.status_code == 200 and time.time() - started < 5
    assert wait_for(lambda: client.get("/api/health").get_json()["history"]["index"] == "ok")
    assert {op["operationId"] for op in client.get("/api/history?limit=100").get_json()[
        "operations"]} == ids
    assert client.get("/api/history/stats").get_json()["total"] == 30
    told = "was made by another version" if damage == "other version" else "cannot be used"
    assert told in caplog.text and "rebuilt" in caplog.text


def test_an_index_that_cannot_be_written_moves_aside_and_generations_still_record(
        storage_dir, tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    app = make_app(storage_dir, INDEX_PATH=str(blocker / "history.sqlite3"))
    client = app.test_client()
    answer = client.post("/api/generate/text-to-image", json={"prompt": "a cat", "seed": 1})
    assert answer.status_code == 200 and answer.get_json()["saved"] is True
    op_id = answer.get_json()["operationId"]
    assert wait_for(lambda: client.get("/api/health").get_json()["history"]["index"] == "ok")
    health = client.get("/api/health").get_json()["history"]
    assert not health["indexPath"].startswith(str(tmp_path))
    assert [op["operationId"] for op in client.get("/api/history").get_json()["operations"]] \
        == [op_id]
    assert "cannot be used" in caplog.text


def test_while_the_index_rebuilds_pages_come_from_the_folder(app, client):
    ids = seed(app.extensions["history"], 0, 5)
    keeper = app.extensions["history"].keeper
    keeper.problem = "being rebuilt (test)"
    body = client.get("/api/history").get_json()
    assert body["degraded"].startswith("the index is being rebuilt")
    assert sorted(op["operationId"] for op in body["operations"]) == sorted(ids)
    stats = client.get("/api/history/stats")
    assert stats.status_code == 503 and stats.headers["Retry-After"] == "30"
    assert "being rebuilt" in stats.get_json()["error"]
    assert "being rebuilt" in client.get("/history").get_data(as_text=True)


def mounted(path, options):
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                            capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {result.stderr.decode().strip()}")


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_storage_full_or_read_only_still_answers_200_with_the_result_inline(
        tmp_path, fault, caplog):
    storage_dir = tmp_path / "ops"
    mounted(storage_dir, "size=96k")
    try:
        app = make_app(storage_dir, INDEX_PATH=str(tmp_path / "index" / "h.sqlite3"))
        client = app.test_client()
        before = seed(app.extensions["history"], 0, 1)[0]
        if fault == "read-only":
            subprocess.run(["mount", "-o", "remount,ro", str(storage_dir)], check=True)
        else:
            (storage_dir / "filler").write_bytes(b"\0" * (80 * 1024))
        answer = client.post("/api/generate/text-to-image",
                             json={"prompt": "a cat", "aspectRatio": "16:9", "seed": 3})
        assert answer.status_code == 200
        body = answer.get_json()
        assert body["saved"] is False and body["resultUrl"].startswith("data:image/jpeg;base64,")
        lines = [r for r in caplog.records if "Could not save operation" in r.getMessage()]
        assert len(lines) == 1 and lines[0].exc_info is None
        assert [op["operationId"] for op in client.get("/api/history").get_json()[
            "operations"]] == [before]
        leftovers = [p.name for p in storage_dir.iterdir() if p.is_file()
                     and p.name not in (f"{before}.json", "filler")
                     and not p.name.startswith(before)]
        assert leftovers == []
        thumb = client.get(f"/history/{before}/thumb")  # made, shown, kept if it fits
        assert (thumb.status_code, thumb.mimetype) == (200, "image/webp")
        if fault == "read-only":
            assert thumb.headers["Cache-Control"] == "no-store"
            for refused in (client.post(f"/api/history/{before}/star", json={"starred": True}),
                            client.delete(f"/api/history/{before}")):
                assert (refused.status_code, refused.get_json()["error"]) == (
                    503, "The storage cannot be written (Read-only file system): try again "
                         "when it can")
            assert client.get(f"/api/history/{before}").status_code == 200
        else:
            with pytest.raises(OSError, match="No space left"), \
                    open(storage_dir / "filler", "ab") as more:
                while True:
                    more.write(b"\0" * 4096)
                    more.flush()
        health = client.get("/api/health").get_json()
        assert (health["status"], health["storageWritable"]) == ("degraded", False)
    finally:
        subprocess.run(["umount", "-l", str(storage_dir)])


def test_a_read_only_storage_is_indexed_with_no_lock_files_to_make(tmp_path):
    """Records another program wrote, on a storage mounted read-only: the
    index (elsewhere) is filled under shared locks that need no file."""
    storage_dir = tmp_path / "ops"
    mounted(storage_dir, "size=1m")
    try:
        for n in range(3):
            guide_record(storage_dir, f"20251103_ro{n:04d}", "a cat")
        subprocess.run(["mount", "-o", "remount,ro", str(storage_dir)], check=True)
        app = make_app(storage_dir, INDEX_PATH=str(tmp_path / "index" / "h.sqlite3"))
        client = app.test_client()
        assert client.get("/api/history?q=cat").get_json()["total"] == 3
        assert client.get("/api/health").get_json()["history"]["index"] == "ok"
        assert not (storage_dir / ".locks").exists()
    finally:
        subprocess.run(["umount", "-l", str(storage_dir)])


def test_a_rebuild_that_gave_up_is_tried_again_at_the_next_recovery_turn(storage_dir,
                                                                         monkeypatch):
    from generation_studio.history import rebuild
    monkeypatch.setattr(rebuild, "RETRY_SECONDS", (0, 0, 0))
    app = make_app(storage_dir)
    history = app.extensions["history"]
    guide_record(storage_dir, "20251103_abc123", "a cat")
    keeper, real, tries = history.keeper, history.keeper._fresh_index, []

    def fresh_index():
        tries.append(1)
        if len(tries) <= 4:  # the storage is still failing: the first rebuild gives up
            raise OSError(30, "Read-only file system")
        return real()

    monkeypatch.setattr(keeper, "_fresh_index", fresh_index)
    keeper.broken(RuntimeError("as if it had failed"))
    keeper._thread.join(20)
    assert (len(tries), history.health()["index"]) == (4, "rebuilding")
    history.check_index()  # the recovery turn
    keeper._thread.join(20)
    assert (len(tries), history.health()["index"]) == (5, "ok")
    assert app.test_client().get("/api/history").get_json()["total"] == 1


# Recovery --------------------------------------------------------------------------
WRITER = """
import sys
from generation_studio import create_app
app = create_app({"TESTING": True, "STORAGE_DIR": sys.argv[1], "HISTORY_CHECK_WAITS": True,
                  "MAX_VIDEO_FRAMES": 4, "LOCAL_VIDEO_SIZE": 48})
client = app.test_client()
image = open(sys.argv[2], "rb").read()
import io
n = 0
while True:
    n += 1
    client.post("/api/workflow/execute", data={"prompt": "sepia, then animate", "duration": "1",
                "fps": "4", "images": [(io.BytesIO(image), "a.png")]},
                content_type="multipart/form-data")
    client.post("/api/generate/img-to-img", data={"prompt": "a cat", "strength": "0.3",
                "images": [(io.BytesIO(image), "b.png")]}, content_type="multipart/form-data")
"""


def test_after_kill_9_under_load_a_restart_leaves_no_temp_file_orphan_or_dangling_step(
        storage_dir, tmp_path):
    image = tmp_path / "in.png"
    image.write_bytes(png_bytes((300, 200), pattern=True))
    rng = random.Random(3)
    for _ in range(6):
        before = len(list(storage_dir.glob("*.json")))
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(storage_dir), str(image)])
        assert wait_for(lambda before=before: len(list(storage_dir.glob("*.json"))) > before, 60)
        time.sleep(0.2 + rng.random())  # under load, at a moment nobody chose
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    app = make_app(storage_dir)
    history = app.extensions["history"]
    everything = [p for p in storage_dir.rglob("*") if p.is_file()]
    assert [p.name for p in everything if p.name.endswith(".tmp")] == []
    listing = history.folder.scan()
    assert sorted(set(listing.files) - listing.records) == []
    found = history.get_many(listing.records)
    assert len(found) == len(listing.records) > 0
    parents = {r["parentId"] for r in found.values() if r.get("parentId")}
    assert parents <= set(found)
    assert set(history.index.ids()) == listing.records


def test_a_workflow_whose_record_cannot_be_saved_leaves_no_step_behind(app, client,
                                                                       monkeypatch):
    history = app.extensions["history"]
    real = history.save

    def save(record, *args, **kwargs):
        if record.get("steps"):
            raise OSError(28, "No space left on device")
        return real(record, *args, **kwargs)

    monkeypatch.setattr(history, "save", save)
    answer = client.post("/api/workflow/execute", data={
        "prompt": "make it sepia", "images": [(io.BytesIO(png_bytes()), "a.png")]},
        content_type="multipart/form-data")
    assert answer.status_code == 200 and answer.get_json()["saved"] is False
    assert history.folder.scan().records == set()


def test_the_server_recovers_periodically_not_only_at_start(storage_dir):
    app = make_app(storage_dir, RECOVERY_INTERVAL_SECONDS=0)
    dead = storage_dir / ".x_out.jpg.pid999999999-abc.tmp"
    dead.write_bytes(b"half")
    orphan = storage_dir / "20261124_qqqqqqqqqqqq_in_0.png"
    orphan.write_bytes(png_bytes())
    (storage_dir / "20251103_abc123.json").write_text(json.dumps({  # by another program
        "operationId": "20251103_abc123", "operationType": "text-to-image",
        "status": "success", "timestamp": "2025-11-03T10:00:00Z", "prompt": "a gull"}))
    client = app.test_client()
    assert client.get("/api/history").get_json()["total"] == 0
    client.get("/api/health")
    app.extensions["recovery_thread"].join(10)
    assert not dead.exists() and not orphan.exists()
    listed = client.get("/api/history?q=gull").get_json()
    assert (listed["total"], listed["operations"][0]["operationId"]) == (1, "20251103_abc123")


def test_steps_whose_workflow_is_missing_are_reattached(app):
    history = app.extensions["history"]
    from datetime import datetime, timedelta, timezone
    when = datetime.now(timezone.utc) - timedelta(seconds=recovery.DANGLING_SECONDS + 60)
    parent = history.new_id(when)
    steps = [history.save({"operationType": "image_edit_single", "status": "succeeded",
                           "createdAt": iso(when), "prompt": "sepia", "parentId": parent})
             ["operationId"] for _ in range(2)]
    assert history.recover()["reattached"] == [parent]
    record = history.get(parent)
    assert record["status"] == "failed" and sorted(record["steps"]) == sorted(steps)
    assert "steps were found" in record["error"]
    assert history.recover()["reattached"] == []


# Paths ------------------------------------------------------------------------------
def test_symbolic_links_in_the_storage_folder_are_never_followed(app, client, storage_dir):
    history = app.extensions["history"]
    op_id = history.save({**TEXT_TO_IMAGE, "status": "succeeded"},
                         outputs=[png_bytes()])["operationId"]
    out = storage_dir / f"{op_id}_out.png"
    out.unlink()
    out.symlink_to("/etc/passwd")
    assert client.get(f"/api/history/{op_id}/files/{op_id}_out.png").status_code == 404
    assert client.get(f"/history/{op_id}/thumb").status_code == 404


def test_the_cli_export_replaces_the_file_whole_or_not_at_all(app, runner, tmp_path,
                                                             monkeypatch):
    seed(app.extensions["history"], 0, 3)
    target = tmp_path / "ops.csv"
    target.write_text("the previous export")
    from generation_studio.history import export

    def failing(*args, **kwargs):
        yield "operationId,operationType\n"
        raise OSError("disk full")

    monkeypatch.setattr(export, "chunks", failing)
    result = runner.invoke(args=["history", "export", "-o", str(target)])
    assert result.exit_code != 0
    assert target.read_text() == "the previous export"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_history_service_is_the_only_reader_of_the_index():
    """Only the history package touches the index, and storage never imports history."""
    import pathlib
    package = pathlib.Path(layout.__file__).parents[1]
    for path in package.rglob("*.py"):
        text = path.read_text()
        if path.parent.name != "history":
            for internal in ("OperationIndex", "keeper.query", "index.execute", "FROM operations"):
                assert internal not in text, (path, internal)
        if path.parent.name == "storage":
            assert "from ..history" not in text and "import history" not in text, path


def test_a_search_answered_from_the_folder_matches_words_as_the_index_does(app, client):
    history = app.extensions["history"]
    cat = history.save({**TEXT_TO_IMAGE, "status": "succeeded",
                        "prompt": "a cat on a mat"})["operationId"]
    catalog = history.save({**TEXT_TO_IMAGE, "status": "succeeded",
                            "prompt": "a catalogue of boats"})["operationId"]
    with_index = {q: ids_in(client.get(f"/api/history?q={q}")) for q in ("at", "cat", "a+cat")}
    history.keeper.problem = "being rebuilt (test)"
    from_folder = {q: ids_in(client.get(f"/api/history?q={q}")) for q in ("at", "cat", "a+cat")}
    assert from_folder == with_index == {"at": set(), "cat": {cat, catalog}, "a+cat": {cat, catalog}}


def ids_in(response):
    return {op["operationId"] for op in response.get_json()["operations"]}


def test_deleting_from_a_damaged_archive_answers_409_and_the_history_still_answers(app):
    """A zip with one member damaged (its bytes cannot be read back): the
    history lists what it can, and a delete that would have to rewrite the zip
    answers a clear 409 instead of losing that member or saying done."""
    from datetime import datetime, timedelta, timezone
    history, client = app.extensions["history"], app.test_client()
    when = datetime.now(timezone.utc) - timedelta(days=10)
    made = [history.save({"operationId": history.new_id(when), "createdAt": iso(when),
                          "operationType": "text_to_image", "status": "succeeded",
                          "prompt": "a cat " * 40})["operationId"] for _ in range(2)]
    history.compress(timedelta(days=7))
    path = archive.path_for(history.root, layout.day_of(made[0]))
    data = bytearray(path.read_bytes())
    data[data.index(f"{made[0]}.json".encode()) + len(made[0]) + 25] ^= 0xFF
    path.write_bytes(bytes(data))
    listed = client.get("/api/history").get_json()
    assert [o["operationId"] for o in listed["operations"]] == [made[1]]
    answer = client.delete(f"/api/history/{made[1]}")
    assert answer.status_code == 409
    assert answer.get_json()["error"].startswith(
        f"archives/{layout.day_of(made[0])}.zip: {made[0]}.json cannot be read back from it (")
    assert answer.get_json()["error"].endswith("; nothing can be deleted from it until it is "
                                               "repaired")
    assert client.get(f"/api/history/{made[1]}").status_code == 200
    assert path.read_bytes() == bytes(data)
