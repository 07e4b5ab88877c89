"""Units of the history and storage, each by what a user sees: the files, records,
rows and orders they give. Written to kill the mutants `make mutation` found
alive (see README, "Mutation testing")."""

import dataclasses
import hashlib
import json
import os
import re
import stat
import tempfile
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from generation_studio import events
from generation_studio.history import ArchiveDamaged, HistoryService, NotFound, recovery, retention
from generation_studio.history.filters import Filters, iso
from generation_studio.storage import archive, layout

from .conftest import TEXT_TO_IMAGE, empty_index, png_bytes


@pytest.fixture
def history(tmp_path):
    """A history on a fresh folder. The test fails if its index ever breaks: the
    answers would then come from the folder and could hide a fault of the SQL."""
    h = HistoryService(tmp_path / "ops", tmp_path / "ops" / ".index" / "history.sqlite3")
    h.start(wait=True)
    failures, real_broken = [], h.keeper.broken

    def broken(error):
        failures.append(error)
        real_broken(error)

    h.keeper.broken = broken
    yield h
    assert failures == []


def save(history, days_ago=0.0, outputs=None, inputs=(), **fields):
    """Save an operation as if made ``days_ago``; return its record."""
    when = datetime.now(timezone.utc) - timedelta(days=days_ago)
    record = {"operationId": history.new_id(when), "operationType": "text_to_image",
              "status": "succeeded", "createdAt": iso(when), "prompt": "a cat",
              "provider": {"name": "local", "model": "m"}, **fields}
    return history.save(record, inputs=[(i, "in.png") for i in inputs],
                        outputs=[png_bytes()] if outputs is None else outputs)


def sizes(history, op_id):
    """Bytes of each loose file of ``op_id``."""
    return {p.name: p.stat().st_size for p in history.root.iterdir()
            if p.is_file() and layout.owner(p.name) == op_id}


def ids(page):
    return [r["operationId"] for r in page.operations]


# Filters.matches: the index's rules, in Python (used when the index is down) --------
RECORD = {"operationType": "text_to_image", "status": "failed", "parentId": "20261124_parent",
          "provider": {"name": "fal"}, "createdAt": "2026-11-24T10:00:00.000Z",
          "prompt": "A Red Lighthouse"}


@pytest.mark.parametrize("filters, selected", [
    (Filters(), True),
    (Filters(types=["text_to_image"]), True),
    (Filters(types=["text_to_video"]), False),
    (Filters(status="failed"), True),
    (Filters(status="succeeded"), False),
    (Filters(provider="fal"), True),
    (Filters(provider="local"), False),
    (Filters(parent_id="20261124_parent"), True),
    (Filters(parent_id="20261124_other"), False),
    (Filters(since="2026-11-24T10:00:00.000Z"), True),  # the bounds are included
    (Filters(since="2026-11-24T10:00:00.001Z"), False),
    (Filters(until="2026-11-24T10:00:00.000Z"), True),
    (Filters(until="2026-11-24T09:59:59.999Z"), False),
    (Filters(q="red LIGHTHOUSE"), True),  # words in any case
    (Filters(q="lighthouse blue"), False),
    (Filters(q="_"), False),  # no word FTS5 would keep: nothing, as in the index
    (Filters(types=["text_to_image"], status="succeeded"), False),
    (Filters(status="failed", provider="local"), False),
    (Filters(provider="fal", parent_id="20261124_other"), False),
    (Filters(parent_id="20261124_parent", since="2026-11-25T00:00:00.000Z"), False),
    (Filters(since="2026-11-24T00:00:00.000Z", until="2026-11-23T00:00:00.000Z"), False),
    (Filters(until="2026-11-25T00:00:00.000Z", q="dog"), False),
])
def test_filters_match_a_record_as_the_index_would(filters, selected):
    assert filters.matches(RECORD) is selected


def test_filters_on_a_record_without_provider_time_or_text_prompt():
    bare = {"operationType": "text_to_image", "prompt": 42}
    assert Filters().matches(bare) is True
    assert Filters(provider="local").matches(bare) is False
    assert Filters(since="2026-01-01").matches(bare) is False
    assert Filters(until="2026-01-01").matches(bare) is False  # as in the index: no time, no date
    assert Filters(q="42").matches(bare) is False
    assert Filters(q="xx").matches({**bare, "prompt": ""}) is False


# The history answers from the folder while the index is rebuilt ---------------------
@pytest.fixture
def degraded(history):
    """Five operations a day apart (newest last), then the index put out of use."""
    made = [save(history, days_ago=5 - n, status="failed" if n == 2 else "succeeded",
                 prompt=f"cat {n}")["operationId"] for n in range(5)]
    history.keeper.problem = "being rebuilt (test)"
    yield made
    history.keeper.problem = None


def test_a_degraded_page_is_newest_first_with_its_cursor_and_total(history, degraded):
    page = history.page(Filters(), limit=2)
    assert (ids(page), page.total, page.next_cursor, page.degraded) == \
        (degraded[:2:-1], 5, degraded[3], True)
    page = history.page(Filters(), limit=2, before=page.next_cursor)
    assert (ids(page), page.next_cursor) == ([degraded[2], degraded[1]], degraded[1])
    page = history.page(Filters(), limit=2, before=page.next_cursor)
    assert (ids(page), page.next_cursor) == ([degraded[0]], None)


def test_a_degraded_page_skips_its_offset_and_applies_the_filters(history, degraded):
    assert ids(history.page(Filters(), limit=2, offset=1)) == [degraded[3], degraded[2]]
    assert ids(history.page(Filters(), limit=10, offset=3)) == [degraded[1], degraded[0]]
    failed = history.page(Filters(status="failed"), limit=10)
    assert (ids(failed), failed.total, failed.next_cursor) == ([degraded[2]], None, None)
    succeeded = history.page(Filters(status="succeeded"), limit=10, offset=1)
    assert ids(succeeded) == [degraded[3], degraded[1], degraded[0]]


def test_a_degraded_page_skips_an_unreadable_record(history, degraded):
    (history.root / f"{degraded[4]}.json").write_text("{ not json")
    page = history.page(Filters(), limit=2)
    assert (ids(page), page.next_cursor) == ([degraded[3], degraded[2]], degraded[2])


def test_a_degraded_page_ends_without_a_cursor_on_the_last_record(history, degraded):
    page = history.page(Filters(), limit=5)
    assert (ids(page), page.next_cursor) == (degraded[::-1], None)
    page = history.page(Filters(), limit=4)
    assert (ids(page), page.next_cursor) == (degraded[:0:-1], degraded[1])


def test_degraded_export_is_newest_first_and_filtered(history, degraded):
    (history.root / f"{degraded[0]}.json").write_text("[]")  # unreadable: left out
    rows = list(history.export_rows(Filters()))
    assert [r[0] for r in rows] == degraded[:0:-1]
    assert rows[0][8] == "cat 4" and rows[0][2] == "succeeded"
    assert [r[0] for r in history.export_rows(Filters(status="failed"))] == [degraded[2]]


def test_without_the_index_count_is_unknown_and_stats_refused(history, degraded):
    from generation_studio.history import IndexUnavailable
    assert history.count(Filters()) is None
    assert history.unfinished() == []
    with pytest.raises(IndexUnavailable, match=r"rebuilt from the records \(0 of 0 records read\)"):
        history.stats(Filters())


def test_with_the_index_count_and_unfinished_are_exact(history):
    running = save(history, status="running", outputs=[])["operationId"]
    queued = save(history, status="queued", outputs=[])["operationId"]
    save(history)
    assert history.count(Filters()) == 3
    assert history.count(Filters(status="running")) == 1
    assert sorted(history.unfinished()) == sorted([running, queued])
    assert history.keeper.problem is None


# Workflows: a delete takes the steps its record lists and those the index knows -----
def test_deleting_a_workflow_takes_listed_and_indexed_steps(history):
    listed = save(history)["operationId"]  # named in the workflow's record only
    parent_id = history.new_id()
    linked = save(history, parentId=parent_id)["operationId"]  # known by parentId only
    other = save(history)["operationId"]
    history.save({"operationId": parent_id, "operationType": "edit_then_video",
                  "status": "succeeded", "steps": [listed, "not-an-id"]})
    assert history.with_steps(parent_id) == [listed, linked, parent_id]
    deleted, freed = history.delete(parent_id)
    assert deleted == [listed, linked, parent_id]
    assert sorted(history.locations()) == [other]
    assert history.keeper.problem is None


def test_deleting_a_workflow_without_the_index_takes_its_listed_steps(history):
    listed = save(history)["operationId"]
    parent = history.save({"operationType": "edit_then_video", "status": "succeeded",
                           "steps": [listed]})["operationId"]
    history.keeper.problem = "being rebuilt (test)"
    assert history.with_steps(parent) == [listed, parent]
    assert history.delete(parent)[0] == [listed, parent]
    assert history.locations() == {}


def test_deleting_an_unknown_operation_names_it(history):
    with pytest.raises(NotFound, match=r"^No operation '20261124_nothinghere'$"):
        history.delete("20261124_nothinghere")


# Bytes freed: what delete, delete_many and clean-up report ------------------------------
def test_delete_reports_the_bytes_of_the_files_it_removed(history):
    record = save(history, inputs=[png_bytes((30, 30))])
    expected = sum(sizes(history, record["operationId"]).values())
    assert history.delete(record["operationId"]) == ([record["operationId"]], expected)


def test_delete_many_adds_the_bytes_of_every_day(history):
    ops = [save(history, days_ago=d, inputs=[png_bytes((20 + d, 20))])["operationId"]
           for d in (3, 3, 1)]
    expected = sum(sum(sizes(history, i).values()) for i in ops)
    seen = []
    assert history.delete_many(ops, progress=seen.append) == (expected, 3)
    assert seen == [2, 1] and history.locations() == {}
    assert history.delete_many(ops) == (0, 0)  # deleted by another caller first: not counted


def test_cleanup_deletes_an_old_workflow_with_its_later_steps(history):
    """A workflow's steps are recorded as each ends, after the workflow began:
    left behind by a cutoff between them, they would be taken for the steps
    of a lost workflow, which would come back as a failed one."""
    now = datetime.now(timezone.utc)
    parent = save(history, days_ago=10, operationType="edit_then_video")["operationId"]
    steps = [save(history, days_ago=10 - n / 24, parentId=parent)["operationId"]
             for n in (1, 2)]  # an hour and two after it
    kept = save(history, days_ago=1)["operationId"]
    cutoff = now - timedelta(days=10) + timedelta(minutes=30)
    done = history.cleanup(now - cutoff)
    assert (done["operations"], sorted(done["ids"])) == (3, sorted([parent, *steps]))
    assert list(history.locations()) == [kept]
    assert history.recover()["reattached"] == []


def test_cleanup_reports_exact_figures(history):
    old = [save(history, days_ago=40, inputs=[png_bytes()])["operationId"] for _ in range(2)]
    recent = save(history, days_ago=1)["operationId"]
    expected = sum(sum(sizes(history, i).values()) for i in old)
    dry = history.cleanup(timedelta(days=30), dry_run=True)
    indexed = sum(sum(os.path.getsize(history.root / e["file"]) for e in
                      history.get(i)["inputImages"] + history.get(i)["outputs"]) for i in old)
    assert dry == {"operations": 2, "bytes": indexed, "ids": sorted(old, key=lambda i:
                   history.get(i)["createdAt"]), "resumed": 0, "dryRun": True}
    done = history.cleanup(timedelta(days=30))
    assert (done["operations"], done["bytes"], done["resumed"], done["dryRun"]) == \
        (2, expected, 0, False)
    assert done["ids"] == dry["ids"]
    assert list(history.locations()) == [recent]


# Archives: what compress packs, how, and what it reports ------------------------------
def zip_of(history, op_id):
    return zipfile.ZipFile(archive.path_for(history.root, layout.day_of(op_id)))


def test_compress_packs_data_files_before_records_each_compressed_by_kind(history):
    op = save(history, days_ago=10, inputs=[png_bytes(fmt="JPEG")],
              outputs=[png_bytes(fmt="WEBP"), png_bytes()])
    op_id = op["operationId"]
    loose = sizes(history, op_id)
    report = history.compress(timedelta(days=7))
    with zip_of(history, op_id) as z:
        infos = {i.filename: i.compress_type for i in z.infolist()}
        names = z.namelist()
        zip_size = os.path.getsize(z.filename)
    assert names[-1] == f"{op_id}.json" and sorted(names) == sorted(loose)
    assert infos == {f"{op_id}_in_0.jpg": zipfile.ZIP_STORED,
                     f"{op_id}_out_0.webp": zipfile.ZIP_STORED,
                     f"{op_id}_out_1.png": zipfile.ZIP_DEFLATED,
                     f"{op_id}.json": zipfile.ZIP_DEFLATED}
    assert report == {"days": 1, "bytesBefore": sum(loose.values()), "bytesAfter": zip_size,
                      "bytesSaved": sum(loose.values()) - zip_size}


def test_compressing_a_day_again_adds_to_its_zip_and_keeps_what_it_had(history):
    first = save(history, days_ago=10)
    zip_path = archive.path_for(history.root, layout.day_of(first["operationId"]))
    history.compress(timedelta(days=7))
    size_before = zip_path.stat().st_size
    day = datetime.now(timezone.utc) - timedelta(days=10)
    second = history.save({**TEXT_TO_IMAGE, "operationId": history.new_id(day), "createdAt": iso(day),
                           "status": "succeeded"}, outputs=[png_bytes(fmt="JPEG")])
    report = history.compress(timedelta(days=7))
    with zipfile.ZipFile(zip_path) as z:
        names = z.namelist()
    assert names == [f"{first['operationId']}_out.png", f"{first['operationId']}.json",
                     f"{second['operationId']}_out.jpg", f"{second['operationId']}.json"]
    assert report["bytesAfter"] == zip_path.stat().st_size - size_before
    assert history.get(first["operationId"]) == first
    assert history.read_file(second["operationId"], second["resultFile"]) == png_bytes(fmt="JPEG")


def test_an_archive_that_is_not_a_zip_is_named_and_left_as_it_is(history, caplog):
    """A day's zip cut short or replaced by garbage: the start-up check, the
    recovery turn and a reindex go on and name it; the day's loose operations
    are listed, compressed around it (left loose), deleted; decompress skips it."""
    import logging
    other = save(history, days_ago=10)["operationId"]
    history.compress(timedelta(days=7))  # a later day packed, readable
    kept, doomed = save(history, days_ago=20)["operationId"], save(history, days_ago=20)
    day = layout.day_of(kept)  # listed before the readable one
    bad = archive.path_for(history.root, day)
    bad.write_bytes(b"PK\x03\x04 cut short")
    named = f"archives/{day}.zip: not a readable zip archive (File is not a zip file)"
    server = HistoryService(history.root, history.index.path)
    server.start(wait=True)
    assert server.health()["skippedFiles"] == [named]
    assert sorted(ids(server.page(Filters(), 10))) == sorted([kept, doomed["operationId"],
                                                              other])
    assert history.reindex()["skipped"] == {f"archives/{day}.zip": "not a readable zip "
                                                                    "archive (File is not a "
                                                                    "zip file)"}
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        history.compress(timedelta(days=7))
        assert history.decompress()["days"] == 2
        history.delete(doomed["operationId"])
    assert caplog.messages == [
        f"archives/{day}.zip: not a readable zip archive (File is not a zip file); the day's "
        "operations are left loose",
        f"archives/{day}.zip: not a readable zip archive (File is not a zip file); left as "
        "it is",
        f"archives/{day}.zip: not a readable zip archive (File is not a zip file); left as "
        "it is"]
    assert bad.read_bytes() == b"PK\x03\x04 cut short"
    assert sorted(ids(history.page(Filters(), 10))) == sorted([kept, other])
    assert history.get(kept)["operationId"] == kept and history.get(other) is not None


def test_a_start_up_check_says_so_when_another_process_refills_the_index(history, caplog):
    import logging
    import subprocess
    import sys
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        history.index.execute("INSERT OR REPLACE INTO meta VALUES ('refill', ?)",
                              (f"{other.pid} {time.time()}",))
        with caplog.at_level(logging.INFO):
            HistoryService(history.root, history.index.path).start(wait=True)
        assert f"The history index is being rebuilt by process {other.pid}: the history " \
               "answers from the records until it is done" in caplog.messages
    finally:
        other.kill()
        other.wait()
        history.index.execute("DELETE FROM meta WHERE key = 'refill'")


def test_a_storage_path_that_is_a_file_is_said_once(tmp_path, caplog):
    """One line at start; the recovery turns stay quiet until it is a folder,
    then check the index and recover as a start would."""
    import logging
    from generation_studio.history import maintenance
    root = tmp_path / "ops"
    root.write_text("not a folder")
    history = HistoryService(root, tmp_path / "index" / "index.sqlite3")
    with caplog.at_level(logging.INFO):
        history.start(wait=True)
        maintenance._recover(history)
    assert [m.split(" (")[0] for m in caplog.messages] == [
        f"Storage folder {root} cannot be used"]
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        history.keeper.check()  # as when the folder goes while the server runs
    assert caplog.messages == [f"Storage folder {root} cannot be read ([Errno 20] Not a "
                               f"directory: '{root}')"]
    root.unlink()
    root.mkdir()
    put_by_hand(history, "20251103_abc123")
    maintenance._recover(history)
    assert list(history.index.ids()) == ["20251103_abc123"]


def test_a_damaged_record_in_an_archive_is_named_not_a_500(history, caplog, monkeypatch):
    """A zip whose directory is whole but one member's bytes are damaged (a
    bad block): pages, the record, a reindex and an export go on without it and
    name it; compress, decompress and deleting from that zip refuse to rewrite
    it (that member would be lost), and the zip is left byte for byte."""
    import logging
    hurt = save(history, days_ago=10, prompt="a cat " * 40)["operationId"]
    fine = save(history, days_ago=10)["operationId"]
    day = layout.day_of(hurt)
    history.compress(timedelta(days=7))
    path = archive.path_for(history.root, day)
    data = bytearray(path.read_bytes())
    at = data.index(f"{hurt}.json".encode()) + len(f"{hurt}.json") + 20  # in its deflated bytes
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert history.get(hurt) is None and history.get(fine)["operationId"] == fine
    why = caplog.messages[0].split(f"Skipped {hurt}.json: damaged in archives/{day}.zip (")[1]
    assert why.startswith(("Error -3 while decompressing data", "Bad CRC-32"))
    assert history.reindex()["skipped"] == {
        f"archives/{day}.zip:{hurt}.json": f"damaged in archives/{day}.zip ({why}"}
    assert ids(history.page(Filters(), 10)) == [fine]
    caught = count_catch_ups(history, monkeypatch)
    history.check_index()  # known damaged: not read again at every turn
    assert caught == []
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        save(history, days_ago=10)  # compress would add it to the damaged zip
        history.compress(timedelta(days=7))
        history.decompress()
    assert [m.split(" cannot be read back")[0] for m in caplog.messages] == [
        f"archives/{day}.zip: {hurt}.json"] * 2
    with pytest.raises(ArchiveDamaged) as refused:
        history.delete(fine)  # it would stay in the zip, and come back
    assert str(refused.value) == (f"archives/{day}.zip: {hurt}.json cannot be read back from "
                                  f"it ({why}; nothing can be deleted from it until it is "
                                  "repaired")
    assert path.read_bytes() == bytes(data) and history.get(fine) is not None


def test_compress_leaves_unfinished_operations_loose(history):
    running = save(history, days_ago=10, status="running", outputs=[])["operationId"]
    done = save(history, days_ago=10)["operationId"]
    history.compress(timedelta(days=7))
    assert history.locations() == {running: "", done: layout.day_of(done)}
    assert history.keeper.problem is None


def test_decompress_writes_records_last_and_leaves_loose_ones_alone(history):
    ops = [save(history, days_ago=10, inputs=[png_bytes()])["operationId"] for _ in range(2)]
    history.compress(timedelta(days=7))
    day = layout.day_of(ops[0])
    loose = history.root / f"{ops[1]}.json"
    loose.write_text('{"status": "succeeded", "kept": true}')  # already back, newer
    written = archive.unpack(history.root, day, skip={ops[1]})
    assert written[-1] == f"{ops[0]}.json"
    assert sorted(written) == [f"{ops[0]}.json", f"{ops[0]}_in_0.png", f"{ops[0]}_out.png"]
    assert loose.read_text() == '{"status": "succeeded", "kept": true}'
    assert not archive.path_for(history.root, day).exists()


def test_dropping_operations_from_a_zip_reports_the_bytes_freed(history):
    ops = [save(history, days_ago=10, inputs=[png_bytes((40, 40), pattern=True)])["operationId"]
           for _ in range(2)]
    history.compress(timedelta(days=7))
    day = layout.day_of(ops[0])
    path = archive.path_for(history.root, day)
    before = path.stat().st_size
    assert archive.drop(history.root, day, {"20990101_notinthezip"}) == 0
    assert archive.drop(history.root, "20990101", {ops[0]}) == 0
    freed = history.delete(ops[0])[1]
    assert freed == before - path.stat().st_size > 0
    last = path.stat().st_size
    assert history.delete(ops[1])[1] == last and not path.exists()


# Restore (from a backup): files moved in from temp files, then the record ------------
def test_restore_moves_the_files_in_and_indexes_the_record(history):
    op = save(history, inputs=[png_bytes((10, 10))])
    op_id = op["operationId"]
    files = {}
    for entry in op["inputImages"] + op["outputs"]:
        temp = history.temp_file(".part")
        assert temp.parent == history.root and temp.name.endswith(".part.tmp")
        assert temp.name.startswith(f".download.pid{os.getpid()}-")
        temp.write_bytes((history.root / entry["file"]).read_bytes())
        os.chmod(temp, 0o600)
        files[entry["file"]] = temp
    data = (history.root / f"{op_id}.json").read_bytes()
    history.delete(op_id)
    restored = history.restore(op_id, data, files)
    assert restored == op and history.get(op_id) == op
    for name in files:
        assert stat.S_IMODE((history.root / name).stat().st_mode) == 0o644
        assert not files[name].exists()
    assert history.read_file(op_id, op["resultFile"]) == png_bytes()
    assert list(history.index.ids()) == [op_id]


def test_restore_refuses_a_file_of_another_operation_and_moves_nothing(history):
    temp = history.temp_file()
    assert re.fullmatch(rf"\.download\.pid{os.getpid()}-[a-z0-9_]{{8}}\.tmp", temp.name)
    temp.write_bytes(b"x")
    record = json.dumps({"operationType": "text_to_image"}).encode()
    with pytest.raises(ValueError, match="'20261124_other_out.png' is not a file of operation "
                                         "20261124_mine"):
        history.restore("20261124_mine", record, {"20261124_other_out.png": temp})
    assert temp.exists() and history.locations() == {}


def test_temp_files_go_to_the_system_when_the_folder_cannot_take_them(tmp_path):
    history = HistoryService(tmp_path / "missing", tmp_path / "index.sqlite3")
    temp = history.temp_file(".jpg")
    try:
        assert temp.parent == Path(tempfile.gettempdir())
        assert temp.name.endswith(".jpg.tmp") and temp.exists()
    finally:
        temp.unlink()


def test_read_file_of_a_missing_file_names_it(history):
    op_id = save(history)["operationId"]
    with pytest.raises(NotFound, match=rf"^Operation '{op_id}' has no file 'x.png'$"):
        history.read_file(op_id, "x.png")


# Changing a record in place ----------------------------------------------------------
def test_update_writes_new_outputs_then_the_record_and_tells_the_listeners(history):
    op_id = save(history, status="running", outputs=[])["operationId"]
    heard = []
    listener = lambda sender, record: heard.append((sender, record["status"]))  # noqa: E731
    events.operation_saved.connect(listener, sender=history)
    try:
        record = history.update(op_id, lambda r: {"status": "succeeded",
                                                  "prompt": r["prompt"] + ", done"},
                                outputs=[png_bytes(fmt="JPEG")])
    finally:
        events.operation_saved.disconnect(listener, sender=history)
    assert heard == [(history, "succeeded")] and record["prompt"] == "a cat, done"
    assert record["resultFile"] == f"{op_id}_out.jpg" and record["status"] == "succeeded"
    assert json.loads((history.root / f"{op_id}.json").read_text()) == record
    assert history.read_file(op_id, f"{op_id}_out.jpg") == png_bytes(fmt="JPEG")
    assert [r[2] for r in history.export_rows(Filters())] == ["succeeded"]


def test_an_update_that_need_not_be_durable_is_indexed_all_the_same(history):
    """A job's claim (a lease, ``running``) is not fsynced: the history shows it."""
    op_id = save(history, status="queued", outputs=[])["operationId"]
    history.update(op_id, lambda r: {"status": "running"}, durable=False)
    assert [r["status"] for r in history.page(Filters(), 10).operations] == ["running"]
    assert history.count(Filters(status="running")) == 1


def test_update_that_declines_or_misses_changes_nothing(history):
    op = save(history)
    assert history.update(op["operationId"], lambda r: None) is None
    assert history.get(op["operationId"]) == op
    with pytest.raises(NotFound, match=r"^No operation '20261124_nothinghere'$"):
        history.update("20261124_nothinghere", lambda r: {"status": "failed"})


def test_saving_a_finished_file_moves_it_in_readable_by_others(history):
    temp = history.temp_file()
    temp.write_bytes(png_bytes(fmt="JPEG"))
    os.chmod(temp, 0o600)
    record = history.save({**TEXT_TO_IMAGE, "status": "succeeded"}, outputs=[temp])
    out = history.root / record["resultFile"]
    assert out.name == f"{record['operationId']}_out.jpg"  # named by what it holds
    assert out.read_bytes() == png_bytes(fmt="JPEG") and not temp.exists()
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert record["outputs"][0]["bytes"] == len(png_bytes(fmt="JPEG"))


# Removing files: records first, every file counted once -----------------------------
def test_remove_takes_records_before_data_and_counts_every_byte(history, monkeypatch):
    a, b = save(history), save(history, inputs=[png_bytes()])
    names = sorted(list(sizes(history, a["operationId"])) + list(sizes(history, b["operationId"])))
    names.insert(1, "20261124_gone_out.png")  # already removed by someone else
    expected = sum(sizes(history, a["operationId"]).values()) + \
        sum(sizes(history, b["operationId"]).values())
    order = []
    real_unlink = type(history.root).unlink

    def unlink(path, *args, **kwargs):
        order.append(path.name)
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(type(history.root), "unlink", unlink)
    assert history.folder.remove(names) == expected
    records = [n for n in order if n.endswith(".json")]
    assert order[:2] == records and len(order) == len(names) - 1
    assert sorted(history.folder.scan().files) == []


def test_a_folder_is_writable_only_when_it_is_a_writable_folder(history, tmp_path):
    assert history.writable() is True
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert HistoryService(blocker, tmp_path / "i.sqlite3").writable() is False
    assert HistoryService(tmp_path / "absent", tmp_path / "i.sqlite3").writable() is False


# Reindexing and the keeper's reports -------------------------------------------------
def write_record(root, op_id, **fields):
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{op_id}.json").write_text(json.dumps(
        {"operationType": "text_to_image", "status": "succeeded",
         "createdAt": f"{op_id[:4]}-{op_id[4:6]}-{op_id[6:8]}T10:00:00.000Z", **fields}))


def test_reindex_reads_every_record_of_every_day_past_a_batch(history):
    for n in range(1001):  # one day's ids come in batches of 1000
        write_record(history.root, f"20261101_{n:06d}")
    for n in range(2):
        write_record(history.root, f"20261102_{n:06d}")
    (history.root / "20261104_broken.json").write_text("[]")
    seen = []
    summary = history.reindex(progress=seen.append)
    assert (summary["added"], summary["removed"], summary["total"]) == (1003, 0, 1003)
    assert summary["skipped"] == {"20261104_broken.json": "not a JSON object (a list)"}
    assert seen == [1] * 1004 and history.keeper.progress == [1004, 1004]
    assert history.count(Filters()) == 1003
    assert history.count(Filters(since="2026-11-02T00:00:00.000Z")) == 2


def test_reindex_removes_rows_of_records_gone_and_names_unreadable_archived_ones(history):
    kept = save(history, days_ago=10)["operationId"]
    gone = save(history, days_ago=10)["operationId"]
    history.compress(timedelta(days=7))
    day = layout.day_of(kept)
    archive.drop(history.root, day, {gone})
    zip_path = archive.path_for(history.root, day)
    with zipfile.ZipFile(zip_path, "a") as z:
        z.writestr(f"{day}_broken.json", "{ nope")
    summary = history.reindex()
    assert summary["added"] == 1 and summary["total"] == 1
    assert list(summary["skipped"]) == [f"archives/{day}.zip:{day}_broken.json"]
    assert list(history.index.ids()) == [kept]


def test_catching_up_skips_a_record_deleted_meanwhile_and_reads_the_rest(history, monkeypatch):
    ids_ = [f"20261101_{n:06d}" for n in range(3)]
    for op_id in ids_:
        write_record(history.root, op_id)
    real = history.folder.read_each

    def read_each(names):  # the folder was listed; one record goes before it is read
        (history.root / f"{ids_[0]}.json").unlink(missing_ok=True)
        return real(names)

    monkeypatch.setattr(history.folder, "read_each", read_each)
    summary = history.keeper.catch_up(history.index)
    assert (summary["added"], summary["skipped"], summary["total"]) == (2, {}, 3)
    assert sorted(history.index.ids()) == ids_[1:]


def test_health_says_checking_rebuilding_and_lists_at_most_fifty_skipped_files(history):
    for n in range(51):
        (history.root / f"note{n:02d}.json").write_text("{}")
    history.keeper.start(wait=True)
    health = history.health()
    assert (health["index"], health["skipped"], len(health["skippedFiles"])) == ("ok", 51, 50)
    assert health["skippedFiles"][0] == "note00.json: not named YYYYMMDD_<id>.json"
    assert health["indexProgress"] is None and health["writable"] is True
    history.keeper.ready.clear()
    assert history.health()["index"] == "checking"
    history.keeper.ready.set()
    history.keeper.problem = "OSError: test"
    history.keeper.progress = [3, 7]
    assert (history.health()["index"], history.health()["indexProgress"]) == \
        ("rebuilding", "3 of 7 records read")
    history.keeper.problem = None


def put_by_hand(history, op_id, prompt="a lighthouse by hand"):
    """A record in the guide's shape, written into the folder by another program."""
    (history.root / f"{op_id}.json").write_text(json.dumps({
        "operationId": op_id, "operationType": "text-to-image", "status": "success",
        "timestamp": "2025-11-03T10:00:00Z", "prompt": prompt}))


def count_catch_ups(history, monkeypatch) -> list:
    """A list that gets an item at each catch-up of ``history``'s index."""
    caught, real = [], history.keeper.catch_up
    monkeypatch.setattr(history.keeper, "catch_up",
                        lambda index, **kw: caught.append(1) or real(index, **kw))
    return caught


def test_records_another_program_puts_in_or_takes_out_are_seen_at_the_next_turn(history,
                                                                             caplog):
    """The server's recovery turn compares the index with the folder again: a
    record copied in while it runs is listed and searched, one removed by hand
    leaves the list, and a turn with nothing new changes nothing and says nothing."""
    import logging
    kept, removed = save(history)["operationId"], save(history)["operationId"]
    put_by_hand(history, "20251103_abc123")
    for name in os.listdir(history.root):
        if layout.owner(name) == removed:
            os.unlink(history.root / name)
    assert sorted(history.index.ids()) == sorted([kept, removed])
    with caplog.at_level(logging.INFO):
        history.check_index()
    assert sorted(ids(history.page(Filters(), 10))) == sorted([kept, "20251103_abc123"])
    assert ids(history.page(Filters(q="lighthouse"), 10)) == ["20251103_abc123"]
    assert caplog.messages == [f"History index caught up: 1 added, 1 removed "
                               f"({history.index.path})"]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        history.check_index()
    assert caplog.messages == []
    # Not while the start-up's check or a rebuild is at work: they will see it.
    put_by_hand(history, "20251103_def456")
    for problem, ready in ((None, False), ("OSError: test", True)):
        history.keeper.problem = problem
        history.keeper.ready.set() if ready else history.keeper.ready.clear()
        history.check_index()
        assert "20251103_def456" not in history.index.ids()
    history.keeper.problem = None
    history.keeper.ready.set()


@pytest.mark.parametrize("seen", [False, True], ids=["before-the-listing", "in-the-listing"])
def test_a_turn_does_not_catch_up_for_a_save_made_while_it_listed(history, monkeypatch, seen):
    """A save while the turn lists the folder is in the index by its writer: the
    listing matches the index as it was before (the save not seen) or after
    (seen), and nothing is read again. A record put in by hand meanwhile is."""
    save(history)
    listed = history.keeper.on_disk

    def on_disk(skipped):
        records = list(listed(skipped))
        save(history)
        yield from listed(skipped) if seen else records

    monkeypatch.setattr(history.keeper, "on_disk", on_disk)
    caught = count_catch_ups(history, monkeypatch)
    history.check_index()
    assert (caught, len(list(history.index.ids()))) == ([], 2)
    put_by_hand(history, "20251103_abc123")
    history.check_index()
    assert (caught, "20251103_abc123" in history.index.ids()) == ([1], True)


def test_an_unreadable_record_is_read_once_not_at_every_turn(history, monkeypatch, caplog):
    """A bad file costs one catch-up (which names it), not one every five
    minutes; it stays named while it is there, and a new one is named and
    logged at the next turn. Mended, it is read by a reindex."""
    import logging
    save(history)
    bad = history.root / "20251103_x.json"
    bad.write_text("{not json")
    history.check_index()
    named = "20251103_x.json: invalid JSON (Expecting property name enclosed in double quotes: " \
            "line 1 column 2 (char 1))"
    assert history.health()["skippedFiles"] == [named]
    caught = count_catch_ups(history, monkeypatch)
    caplog.clear()
    written, set_meta = [], history.index.set_meta
    monkeypatch.setattr(history.index, "set_meta", lambda *a: written.append(a) or set_meta(*a))
    with caplog.at_level(logging.INFO):
        history.check_index()
    assert (caught, history.health()["skippedFiles"], caplog.messages) == ([], [named], [])
    assert written == []  # the same list: the index is not written
    (history.root / "note.json").write_text("{}")
    with caplog.at_level(logging.INFO):
        history.check_index()
    assert caught == []
    assert history.health()["skippedFiles"] == [named, "note.json: not named YYYYMMDD_<id>.json"]
    assert caplog.messages == [f"History: skipped 2 file(s) that are not readable records — "
                               f"{named}; note.json: not named YYYYMMDD_<id>.json"]
    bad.unlink()
    history.check_index()
    assert history.health()["skippedFiles"] == ["note.json: not named YYYYMMDD_<id>.json"]
    put_by_hand(history, "20251103_x")
    history.reindex()
    assert "20251103_x" in history.index.ids()


def test_every_process_names_the_same_skipped_files_whichever_listed_the_folder(history):
    """`make run` starts two web processes and a job worker on one folder. One
    whose start-up check found another refilling the index never lists the
    folder itself; its /api/health still names what the refill skipped, and
    a file mended since is no longer named by any of them."""
    save(history)
    bad = history.root / "20251103_x.json"
    bad.write_text("{not json")
    aside = HistoryService(history.root, history.index.path)  # stepped aside: no check run
    history.reindex()
    expected = ["20251103_x.json: invalid JSON (Expecting property name enclosed in double "
                "quotes: line 1 column 2 (char 1))"]
    assert [(h.health()["skipped"], h.health()["skippedFiles"]) for h in (history, aside)] == \
        [(1, expected), (1, expected)]
    bad.write_text(json.dumps({"operationId": "20251103_x", "createdAt": "2025-11-03T10:00:00Z",
                               "operationType": "text_to_image", "status": "succeeded"}))
    aside.reindex()
    assert [(h.health()["skipped"], h.health()["skippedFiles"]) for h in (history, aside)] == \
        [(0, []), (0, [])]
    # The index broken: each says what it found itself when it last listed the folder.
    history.keeper.problem = aside.keeper.problem = "OSError: test"
    assert [(h.health()["skipped"], h.health()["skippedFiles"]) for h in (history, aside)] == \
        [(1, expected), (0, [])]
    history.keeper.problem = aside.keeper.problem = None


# The index's own rules ---------------------------------------------------------------
def test_stats_count_every_status_byte_and_day_of_the_window(history):
    save(history, days_ago=0, inputs=[png_bytes()], durationMs=10.0)
    save(history, days_ago=1, status="canceled", outputs=[], durationMs=30.0)
    save(history, days_ago=2.5, status="failed", inputs=[png_bytes()], outputs=[],
         durationMs=20.0)
    stats = history.stats(Filters(), days=2)
    t2i = stats["byType"]["text_to_image"]
    assert (stats["total"], stats["succeeded"], stats["failed"], stats["days"]) == (3, 1, 1, 2)
    assert (t2i["count"], t2i["succeeded"], t2i["failed"], t2i["canceled"]) == (3, 1, 1, 1)
    assert t2i["bytes"] == stats["storageBytes"] == 3 * len(png_bytes())
    failed = history.stats(Filters(status="failed"), days=2)
    assert (failed["total"], failed["failed"], failed["storageBytes"]) == (1, 1, len(png_bytes()))
    assert t2i["durationMs"] == {"median": 20.0, "p95": 30.0}
    day = lambda n: (datetime.now(timezone.utc) - timedelta(days=n)).strftime("%Y-%m-%d")  # noqa
    assert stats["perDay"] == {day(1): 1, day(0): 1}
    assert history.stats(Filters())["days"] == 30


def test_stats_of_operations_with_no_file_count_zero_bytes(history):
    save(history, outputs=[])
    stats = history.stats(Filters())
    assert stats["byType"]["text_to_image"]["bytes"] == 0 and stats["storageBytes"] == 0


def test_duration_percentiles_are_by_nearest_rank(history):
    history.index.add([{"operationId": f"20261101_{n:06d}", "operationType": "text_to_video",
                        "createdAt": "2026-11-01T00:00:00.000Z", "durationMs": float(n)}
                       for n in range(1, 201)])
    durations = history.stats(Filters())["byType"]["text_to_video"]["durationMs"]
    assert durations == {"median": 100.0, "p95": 190.0}


def test_a_search_with_quotes_and_several_words_uses_the_index(history):
    hit = save(history, prompt='a "red" lighthouse')["operationId"]
    save(history, prompt="a red barn")
    assert ids(history.page(Filters(q='"red" light'), limit=10)) == [hit]
    assert ids(history.page(Filters(q="red lighthouse", status="succeeded",
                                    since="2020-01-01T00:00:00.000Z"), limit=10)) == [hit]
    assert [r[0] for r in history.export_rows(Filters(q="lighthouse", status="succeeded"))] \
        == [hit]


def test_the_index_connection_can_be_closed_before_use_and_reopened(tmp_path):
    from generation_studio.history.index import OperationIndex
    index = OperationIndex(tmp_path / "i.sqlite3")
    index.close()
    index.add([{"operationId": "20261101_aaaaaa"}])
    index.close()
    assert list(index.ids()) == ["20261101_aaaaaa"]


def test_swap_meta_sets_a_value_only_over_the_expected_one(tmp_path):
    from generation_studio.history.index import OperationIndex
    index = OperationIndex(tmp_path / "i.sqlite3")
    assert index.swap_meta("k", None, "1") is True
    assert index.swap_meta("k", None, "2") is False
    assert index.swap_meta("other", None, "x") is True
    assert index.get_meta("k") == "1"
    assert index.swap_meta("k", "1", "3") is True and index.get_meta("k") == "3"


# Retention ---------------------------------------------------------------------------
def test_an_age_names_its_units_when_wrong():
    assert retention.parse_age(" 12h ") == timedelta(hours=12)
    assert retention.parse_age("2w") == timedelta(weeks=2)
    assert retention.parse_age("90m") == timedelta(minutes=90)
    with pytest.raises(retention.FilterError) as caught:
        retention.parse_age("soon")
    assert (caught.value.message, caught.value.field) == \
        ("an age is a number and a unit: 30d, 12h, 2w or 90m (got 'soon')", "older_than")


def test_a_dry_run_deletes_nothing_not_even_an_interrupted_runs_files(history):
    orphan = history.root / "20261101_orphan00_out.png"
    orphan.write_bytes(png_bytes())
    old = save(history, days_ago=40)["operationId"]
    dry = history.cleanup(timedelta(days=30), dry_run=True)
    assert orphan.exists() and dry["resumed"] == 0 and dry["ids"] == [old]
    seen = []
    done = history.cleanup(timedelta(days=30), progress=seen.append)
    assert (done["resumed"], seen, orphan.exists()) == (1, [1], False)


def test_cleanup_without_the_index_says_it_needs_it(history, degraded):
    from generation_studio.history import IndexUnavailable
    with pytest.raises(IndexUnavailable):
        history.cleanup(timedelta(days=1))


# CSV export, recovery, maintenance -----------------------------------------------------
def test_the_csv_comes_in_chunks_of_500_rows():
    from generation_studio.history import export

    class Rows:
        def export_rows(self, filters):
            return ((f"20261101_{n:06d}",) + ("",) * 14 for n in range(501))

    chunks = list(export.chunks(Rows(), Filters()))
    assert [c.count("\n") for c in chunks] == [501, 1, 0]


def test_a_temp_file_of_a_process_we_may_not_signal_is_kept(history, monkeypatch):
    temp = history.root / ".x_out.jpg.pid4242-abc.tmp"
    temp.write_bytes(b"half")

    def kill(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", kill)
    assert recovery.remove_temp_files(history) == 0 and temp.exists()


def won_the_hour(app):
    from generation_studio.history import maintenance
    return maintenance._won(app, "last_cleanup", maintenance.CLEANUP_INTERVAL_SECONDS,
                            unsure=False)


def test_the_hourly_clean_up_is_won_once_an_hour(app):
    from generation_studio.history import maintenance
    index = app.extensions["history"].index
    assert won_the_hour(app) is True
    last = float(index.get_meta("last_cleanup"))
    assert abs(last - time.time()) < 60
    assert won_the_hour(app) is False
    index.swap_meta("last_cleanup", index.get_meta("last_cleanup"),
                    str(last - maintenance.CLEANUP_INTERVAL_SECONDS - 1))
    assert won_the_hour(app) is True


def test_the_periodic_recovery_is_run_by_one_process_of_those_sharing_the_folder(
        storage_dir, monkeypatch, caplog):
    """Two web processes and the job worker share a folder; the recovery lists all
    of it (20 s at 1,000,000 operations), so each interval one of them runs it.
    With the index failing, each runs its own: it needs only the folder."""
    import logging
    import sqlite3
    from generation_studio import create_app
    from generation_studio.history import maintenance
    servers = [create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir),
                           "HISTORY_CHECK_WAITS": True, "RECOVERY_INTERVAL_SECONDS": 300})
               for _ in range(3)]
    started = []
    monkeypatch.setattr(maintenance, "_start", lambda app, name, work: name == "recovery" and
                        started.append(servers.index(app)))
    for app in servers:
        app.extensions["maintenance"]["recovery"] -= 300  # due in each
        assert app.test_client().get("/api/health").status_code == 200
    assert started == [0]

    def get_meta(key):
        raise sqlite3.OperationalError("database is locked")

    with caplog.at_level(logging.WARNING):
        for app in servers[1:]:
            monkeypatch.setattr(app.extensions["history"].index, "get_meta", get_meta)
            app.extensions["maintenance"]["recovery"] -= 300
            assert app.test_client().get("/api/health").status_code == 200
    assert started == [0, 1, 2]
    said = [(r.getMessage(), r.exc_info) for r in caplog.records if "last ran" in r.getMessage()]
    assert said == [("Could not check when the recovery last ran (database is locked)", None)] * 2
    # Known broken (said once, when it broke): the index is not asked again.
    caplog.clear()
    history = servers[0].extensions["history"]
    history.keeper.problem = "DatabaseError: file is not a database"
    monkeypatch.setattr(history.index, "get_meta", get_meta)
    with caplog.at_level(logging.WARNING):
        servers[0].extensions["maintenance"]["recovery"] -= 300
        assert servers[0].test_client().get("/api/health").status_code == 200
    history.keeper.problem = None
    assert (started, caplog.messages) == ([0, 1, 2, 0], [])


def test_a_clean_up_while_the_index_is_rebuilt_waits_without_a_traceback(storage_dir, caplog,
                                                                          monkeypatch):
    import logging
    from generation_studio import create_app
    from generation_studio.history import IndexUnavailable
    app = create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir),
                      "HISTORY_CHECK_WAITS": True, "TRASH_DAYS": 30})

    def empty_trash(age):
        raise IndexUnavailable("This needs the history's index, which is being rebuilt")

    monkeypatch.setattr(app.extensions["history"], "empty_trash", empty_trash)
    with caplog.at_level(logging.INFO):
        assert app.test_client().get("/api/health").status_code == 200
        app.extensions["retention_thread"].join(10)
    said = [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records
            if "retention" in r.getMessage()]
    assert said == [("INFO", "The background retention waits for the index: This needs the "
                             "history's index, which is being rebuilt", None)]


@pytest.mark.parametrize("name", ["recovery", "retention"])
def test_a_turn_still_at_work_is_not_started_again(storage_dir, monkeypatch, name):
    """At 1,000,000 operations a recovery turn or a clean-up can outlast its
    interval: the next waits for it."""
    import threading
    from generation_studio import create_app
    from generation_studio.history import maintenance
    app = create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir),
                      "HISTORY_CHECK_WAITS": True, "RECOVERY_INTERVAL_SECONDS": 0,
                      "TRASH_DAYS": 30})
    release, started = threading.Event(), []

    def work(history):
        started.append(name)
        release.wait(10)

    monkeypatch.setattr(maintenance, {"recovery": "_recover", "retention": "_cleanup"}[name], work)
    monkeypatch.setattr(maintenance, "_won", lambda app, key, seconds, unsure: True)
    client = app.test_client()

    def ask():
        app.extensions["maintenance"]["cleanup"] = -1e9  # due each time
        assert client.get("/api/health").status_code == 200

    for _ in range(3):
        ask()
    release.set()
    app.extensions[f"{name}_thread"].join(10)
    ask()
    app.extensions[f"{name}_thread"].join(10)
    assert started == [name, name]


def test_an_index_that_cannot_be_written_is_rebuilt_in_the_named_temp_folder(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    root = tmp_path / "ops"
    history = HistoryService(root, blocker / "history.sqlite3")
    history.start(wait=True)
    history.keeper._thread.join(20)
    expected = (Path(tempfile.gettempdir())
                / ("generation-studio-index-"
                   + hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16])
                / "history.sqlite3")
    try:
        assert history.health()["indexPath"] == str(expected)
        assert history.health()["index"] == "ok"
    finally:
        history.index.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{expected}{suffix}").unlink(missing_ok=True)
        (expected.parent / "rebuild.lock").unlink()  # the processes' turns to rebuild
        expected.parent.rmdir()


def test_compress_packs_days_before_the_cutoff_day_only_and_reports_each_day(history):
    on_the_day = save(history, days_ago=7)["operationId"]
    older = [save(history, days_ago=d)["operationId"] for d in (8, 9)]
    seen = []
    report = history.compress(timedelta(days=7), progress=seen.append)
    assert (report["days"], seen) == (2, [1, 1])
    assert history.locations() == {on_the_day: "", older[0]: layout.day_of(older[0]),
                                   older[1]: layout.day_of(older[1])}


def test_decompress_every_day_and_keep_a_loose_record_that_came_back(history):
    ops = [save(history, days_ago=d, inputs=[png_bytes()])["operationId"] for d in (8, 8, 9)]
    history.compress(timedelta(days=7))
    back = history.root / f"{ops[0]}.json"
    back.write_text('{"status": "succeeded", "restored": true}')  # restored meanwhile
    seen = []
    assert history.decompress(progress=seen.append) == {"days": 2, "files": 6}
    assert seen == [1, 1] and back.read_text() == '{"status": "succeeded", "restored": true}'
    assert sorted(history.locations()) == sorted(ops)


def test_a_record_never_serves_a_file_of_another_operation(history):
    other = save(history)
    op = history.save({**TEXT_TO_IMAGE, "status": "succeeded", "outputs": [{"file": other["resultFile"]}]})
    assert history.open_file(op["operationId"], other["resultFile"]) is None
    assert history.open_file("20261124_nothinghere", "20261124_nothinghere_out.png") is None


def test_unreadable_records_are_named_with_the_systems_reason(history, monkeypatch):
    for op_id in ("20261101_denied", "20261101_strange"):
        write_record(history.root, op_id)
    real = history.folder.read_each
    errors = {"20261101_denied.json": PermissionError(13, "Permission denied"),
              "20261101_strange.json": OSError("no reason given")}

    def read_each(names):  # root reads any file: the errors are given here
        for name, data, error in real(names):
            yield (name, None, errors[name]) if name in errors else (name, data, error)

    monkeypatch.setattr(history.folder, "read_each", read_each)
    summary = history.reindex()
    assert summary["skipped"] == {"20261101_denied.json": "Permission denied",
                                  "20261101_strange.json": "no reason given"}
    assert (summary["added"], summary["total"]) == (0, 0)


def test_catching_up_reads_each_days_records_under_that_days_lock(history, monkeypatch):
    for op_id in ("20261101_aaaaaa", "20261101_bbbbbb", "20261102_cccccc"):
        write_record(history.root, op_id)
    held, reads = [], []
    real_shared, real_iter = history.locks.shared, history.iter_records

    def shared(days):
        held.append(list(days))
        return real_shared(days)

    def iter_records(op_ids=None, where=None, **kwargs):
        reads.append((held[-1], list(op_ids)))
        return real_iter(op_ids, where, **kwargs)

    monkeypatch.setattr(history.locks, "shared", shared)
    monkeypatch.setattr(history, "iter_records", iter_records)
    history.keeper.catch_up(history.index)
    assert reads == [(["20261101"], ["20261101_aaaaaa", "20261101_bbbbbb"]),
                     (["20261102"], ["20261102_cccccc"])]


def test_changes_made_while_the_index_is_rebuilt_are_applied_to_the_new_one(history):
    from generation_studio.history.index import OperationIndex
    doomed = save(history)["operationId"]
    history.keeper.problem = "being rebuilt (test)"
    added = save(history)["operationId"]
    history.delete(doomed)
    fresh = OperationIndex(history.root / ".index" / "fresh.sqlite3")
    fresh.add([history.get(added)])
    fresh.add([{"operationId": doomed}])
    history.keeper._swap_in(fresh)
    assert (history.keeper.problem, sorted(history.index.ids())) == (None, [added])
    history.keeper.problem = "again (test)"
    later = save(history)["operationId"]
    history.keeper._swap_in(fresh)
    assert sorted(history.index.ids()) == sorted([added, later])


def test_a_broken_index_is_reported_by_the_errors_kind_and_message(history, monkeypatch):
    import sqlite3
    from generation_studio.history.rebuild import IndexKeeper
    monkeypatch.setattr(history.keeper, "_rebuild", lambda: None)  # keep it broken
    IndexKeeper.broken(history.keeper, sqlite3.DatabaseError("database disk image is malformed"))
    IndexKeeper.broken(history.keeper, OSError("a second fault is not reported"))
    health = history.health()
    assert (health["index"], health["indexProblem"]) == \
        ("rebuilding", "DatabaseError: database disk image is malformed")
    history.keeper.problem = None


def test_a_row_shown_unfinished_whose_record_has_ended_is_mended_at_the_recovery_turn(history):
    """Its end was written to another index (two in use at once, after a fault)."""
    op = save(history, status="queued")
    path = history.root / f"{op['operationId']}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "status": "succeeded"}))
    assert [r["operationId"] for r in history.page(Filters(status="queued"), 5).operations] \
        == [op["operationId"]]
    history.check_index()
    assert history.page(Filters(status="queued"), 5).total == 0
    assert history.page(Filters(status="succeeded"), 5).total == 1


def test_an_index_made_in_the_temp_folder_moves_back_to_its_place_once_it_can(tmp_path):
    """A process started after the fault uses the index's own place: two
    indexes would each miss the other's changes."""
    blocker = tmp_path / "index"
    blocker.write_text("x")  # its place cannot be made: a file where its folder goes
    root = tmp_path / "ops"
    history = HistoryService(root, blocker / "history.sqlite3")
    history.start(wait=True)
    history.keeper._thread.join(20)
    fallback = Path(history.index.path)
    try:
        assert fallback != blocker / "history.sqlite3"
        save(history)
        blocker.unlink()  # the fault is lifted
        history.check_index()  # the recovery turn
        history.keeper._thread.join(20)
        assert (history.index.path, history.health()["index"]) == (
            blocker / "history.sqlite3", "ok")
        assert history.page(Filters(), 5).total == 1
        assert not fallback.exists()  # other processes on it find it gone, and follow
    finally:
        history.index.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{fallback}{suffix}").unlink(missing_ok=True)
        (fallback.parent / "rebuild.lock").unlink(missing_ok=True)
        fallback.parent.rmdir()


def test_a_rebuild_that_keeps_failing_is_tried_four_times(history, monkeypatch):
    from generation_studio.history import rebuild
    monkeypatch.setattr(rebuild, "RETRY_SECONDS", (0, 0, 0))
    attempts = []

    def fresh_index():
        attempts.append(1)
        raise OSError("disk gone")

    monkeypatch.setattr(history.keeper, "_fresh_index", fresh_index)
    monkeypatch.setattr(history.keeper, "problem", "DatabaseError: malformed")  # as broken() sets
    monkeypatch.setattr(history.keeper, "_broken_file", os.open(history.index.path, os.O_RDONLY))
    monkeypatch.setattr(history.keeper, "_broken_at", time.time())
    history.keeper._rebuild()
    assert len(attempts) == 4
    os.close(history.keeper._broken_file)


def test_reindex_makes_a_new_index_when_the_old_one_cannot_be_cleared(history, monkeypatch):
    import sqlite3
    ops = [save(history)["operationId"] for _ in range(3)]
    old = history.index

    def refill(empty=True):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(old, "refill", refill)  # where a rebuild empties it
    seen = []
    summary = history.reindex(progress=seen.append)
    assert (summary["added"], summary["total"], seen) == (3, 3, [1, 1, 1])
    assert history.index is not old and sorted(history.index.ids()) == sorted(ops)


def test_a_search_with_another_filter_counts_only_what_both_select(history):
    save(history, prompt="a red barn")
    hit = save(history, prompt="a red lighthouse", status="failed")["operationId"]
    page = history.page(Filters(q="red", status="failed"), limit=10)
    assert (ids(page), page.total, page.next_cursor) == ([hit], 1, None)
    assert history.page(Filters(q="red"), limit=10).total == 2


def test_the_last_full_page_has_no_cursor(history):
    made = [save(history, days_ago=d)["operationId"] for d in (2, 1)]
    page = history.page(Filters(), limit=2)
    assert (ids(page), page.next_cursor) == (made[::-1], None)
    page = history.page(Filters(), limit=1)
    assert (ids(page), page.next_cursor) == ([made[1]], made[1])


def test_a_cursor_that_is_not_in_the_history_is_refused_by_name(history):
    from generation_studio.history.filters import FilterError
    save(history)
    with pytest.raises(FilterError) as caught:
        history.page(Filters(), limit=5, before="20990101_aaaaaaaaaaaa")
    assert caught.value.field == "before"
    assert caught.value.message == ("before='20990101_aaaaaaaaaaaa' is not an operation in the "
                                    "history (it may have been deleted): start again from the "
                                    "first page")


def test_a_search_without_fts5_uses_like_in_the_index(history):
    history.index.connect()
    history.index.has_fts = False  # as on an SQLite built without FTS5
    hit = save(history, prompt="100% cotton")["operationId"]
    save(history, prompt="a barn")
    underscore = save(history, prompt="snake_case")["operationId"]
    backslash = save(history, prompt="C:\\temp")["operationId"]
    save(history, prompt="a 40 watt bulb")
    page = history.page(Filters(q="0%"), limit=10)
    assert (ids(page), page.total) == ([hit], 1)
    assert ids(history.page(Filters(q="_"), limit=10)) == [underscore]
    assert ids(history.page(Filters(q="\\"), limit=10)) == [backslash]
    assert history.count(Filters(q="cotton", status="succeeded")) == 1


def test_searches_with_many_matches_walk_the_dates_and_count_exactly(history):
    rows = [{"operationId": f"20261101_{n:06d}", "operationType": "text_to_image",
             "status": "failed" if n % 2 else "succeeded" if n % 3 else "weird",
             "prompt": f"lighthouse {n}", "provider": {"name": "local" if n % 4 else "other"},
             "createdAt": f"2026-11-01T00:{n // 60 % 60:02d}:{n % 60:02d}.{n // 3600:03d}Z"}
            for n in range(5001)]
    history.index.add(rows)
    newest = sorted(rows, key=lambda r: (r["createdAt"], r["operationId"]), reverse=True)
    assert history.index.page(Filters(q="lighthouse"), 2) == \
        ([newest[0]["operationId"], newest[1]["operationId"]], 5001, newest[1]["operationId"])
    failed = [r["operationId"] for r in newest if r["status"] == "failed"]
    assert history.index.page(Filters(q="lighthouse", status="failed"), 2) == \
        (failed[:2], 2500, failed[1])
    assert history.index.page(Filters(q="lighthouse", status="failed"), 2, before=failed[1]) \
        == (failed[2:4], 2500, failed[3])
    # A status or provider this version has no word for is tested row by row.
    for name, value in (("status", "weird"), ("provider", "other")):
        chosen = [r["operationId"] for r in newest
                  if value in (r["status"], r["provider"]["name"])]
        assert history.index.page(Filters(q="lighthouse", **{name: value}), 2) == \
            (chosen[:2], len(chosen), chosen[1])


@pytest.mark.parametrize("dense_from", [20, 1])  # 1: as if they were sparse
@pytest.mark.parametrize("order", ["written as made", "shuffled"])
def test_a_search_walk_finds_every_page_whatever_order_the_rows_were_written_in(
        history, order, dense_from, monkeypatch):
    """The walk reads the full-text matches newest seq first as far as the rows
    it walks need: rows written out of time order (an archive restored, a
    record of another writer) make it read further, and no match may be missed.
    Small chunks and batches of matches: many of them."""
    import random

    from generation_studio.history import index
    monkeypatch.setattr(index, "WALK_CHUNKS", (16, 64))
    monkeypatch.setattr(index, "MATCHES_AT_ONCE", 7)
    monkeypatch.setattr(index, "DENSE_FROM", dense_from)
    rng = random.Random(7)
    rows = [{"operationId": f"20261101_{n:06d}", "operationType": "text_to_image",
             "status": "failed" if n % 3 == 0 else "succeeded",
             "prompt": "lighthouse at dusk" if n % 5 else "a quiet harbour",
             "createdAt": f"2026-11-01T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z"}
            for n in range(3000)]
    if order == "shuffled":
        rng.shuffle(rows)
    else:  # as made, but for a few old ones written last (restored from an archive)
        rows = rows[100:] + rows[:100]
    for start in range(0, len(rows), 500):
        history.index.add(rows[start:start + 500])
    newest = [r["operationId"] for r in
              sorted(rows, key=lambda r: (r["createdAt"], r["operationId"]), reverse=True)]
    lit = [i for i in newest if "lighthouse" in next(r["prompt"] for r in rows
                                                      if r["operationId"] == i)]
    assert len(lit) == 2400
    for offset in (0, 250, 1000, 2350):
        assert history.index.page(Filters(q="lighthouse"), 50, offset)[0] == \
            lit[offset:offset + 50]
    assert history.index.page(Filters(q="lighthouse"), 50, before=lit[999])[0] == \
        lit[1000:1050]
    failed = [i for i in lit if int(i[-6:]) % 3 == 0]
    assert history.index.page(Filters(q="lighthouse", status="failed"), 30, 500) == \
        (failed[500:530], len(failed), failed[529])
    assert history.index.page(Filters(q="lighthouse"), 50, 2380) == (lit[2380:], 2400, None)


@pytest.mark.parametrize("q, found", [
    ("red_barn", 1),  # the tokenizer cuts at "_": two words, both needed
    ("barn_red", 1),
    ("red_", 2),
    ("_", 0),  # no word at all: nothing matches
    ("_red", 2),
    ("a_red_barn", 1),
    ("red\u19b0barn", 1),  # a letter newer than SQLite's Unicode tables cuts words too
    ("red barn\u19b0", 1),
])
def test_a_search_for_words_the_full_text_index_cuts_finds_them_and_keeps_the_index(
        history, q, found):
    """The full-text table keeps no positions, so it refuses phrases: a word
    its tokenizer cuts in two is searched as two words, never as a phrase
    (which would fail, and a failing index is rebuilt)."""
    made = save(history, prompt="a red_barn at dusk")["operationId"]
    save(history, prompt="a red lighthouse")
    save(history, prompt="the blue barn, XX")  # XX: a word an empty search must not reach
    page = history.page(Filters(q=q, trash="exclude", toplevel=True), limit=10)
    assert page.total == found
    if found == 1:
        assert ids(page) == [made]
    assert history.health()["index"] == "ok" and page.degraded is False


def test_a_long_last_word_is_searched_as_the_few_words_it_starts(history, monkeypatch):
    """FTS5 reads a prefix's matches whole, and skips through a word's: a last
    word longer than the indexed prefixes is spelled as the words it starts
    (the index's own list), unless they are many; the answers are the same."""
    from generation_studio.history import index
    for prompt in ("a watercolor dragon", "watercolor2", "a watercolour", "water", "zebra"):
        save(history, prompt=prompt)
    spelled = history.index._search(Filters(q="Dragon WATERcol")).match
    assert spelled == '("Dragon" AND ("watercolor" OR "watercolor2" OR "watercolour"))'
    assert history.index._search(Filters(q="zebr")).match == '("zebra")'
    assert history.index._search(Filters(q="zebu")).match == '("zebu")'  # no such word
    assert history.index._search(Filters(q="wat")).match == '("wat"*)'  # indexed prefix
    assert history.index._search(Filters(q="café")).match == '- {facets} : ("café"*)'  # FTS5 folds it
    monkeypatch.setattr(index, "PREFIX_WORDS_UP_TO", 3)
    assert history.index._search(Filters(q="watercol")).match == \
        '(("watercolor" OR "watercolor2" OR "watercolour"))'
    monkeypatch.setattr(index, "PREFIX_WORDS_UP_TO", 2)
    assert history.index._search(Filters(q="watercol")).match == '("watercol"*)'
    assert history.page(Filters(q="watercol"), limit=10).total == 3


def test_a_search_for_words_like_the_facets_finds_prompts_not_facets(history):
    """The facets column holds words of its own (``statusfailed``, ``providerlocal``,
    ``starred``, ``trashed``, ``d20261102``...). A search leaves that column out by name only
    when one of its words could be one of those: reading which column holds a
    word costs FTS5 a quarter more."""
    today = "d" + datetime.now(timezone.utc).strftime("%Y%m%d")
    worded = save(history, prompt=f"a starry statue, providerlocal {today} y2026 m m2026")
    for odd in ({"createdAt": "2026-11-02"}, {"trashedAt": iso(datetime.now(timezone.utc))}, {}):
        save(history, prompt="a white field", status="failed", starred=True, **odd)
    # rows whose facets hold those words (a day alone: "dateodd"), and whose prompts do not
    for q in ("sta", "star", "starred", "statu", "statusfailed", "p", "prov", "providerlocal",
              today, today[:5], "y", "y2", "y2026", "m", "m2", "m2026", "d", "d2", "dat", "dateodd",
              "STAR", "Státus", "trash", "trashed"):
        page = history.page(Filters(q=q), limit=10)
        expected = [] if q in ("starred", "statusfailed", "dat", "dateodd", "Státus", "trash",
                               "trashed") else [worded["operationId"]]
        assert (ids(page), page.total) == (expected, len(expected)), q
    assert history.index._search(Filters(q="a white")).match == '("a" AND "white")'
    assert history.index._search(Filters(q="white sta")).match == \
        '- {facets} : ("white" AND "sta"*)'
    assert history.page(Filters(q="white"), limit=10).total == 3
    # Out of the trash, or in it: its word, unless columns are named anyway.
    assert history.index._search(Filters(q="white", trash="exclude")).match == \
        '(("white")) NOT {facets} : ("trashed")'
    assert history.index._search(Filters(q="white", trash="only")).match == \
        '("white") AND {facets} : "trashed"'
    gallery = history.index._search(Filters(q="white", trash="exclude", toplevel=True)).match
    assert gallery == "{" + " ".join(f"c{n}" for n in range(19)) + '} : ("white")'


def test_dates_are_the_words_of_whole_years_months_and_days_and_the_days_they_cut():
    from generation_studio.history.index import date_words
    since_october = date_words("2026-10-01T00:00:00.000Z", None, ["2025", "2026"])
    assert since_october == {"in": ['"m202610"', '"m202611"', '"m202612"'], "edge": [],
                             "out": ['"y2025"'] + [f'"m2026{m:02d}"' for m in range(1, 10)]}
    # A month cut: its word less the days elsewhere, where most of its days are.
    cut = date_words("2026-10-30T10:00:00.000Z", "2026-11-03T23:59:59.999Z", ["2026", "2027"])
    assert cut["in"] == ['"d20261031"', '"d20261101"', '"d20261102"', '"d20261103"']
    assert cut["edge"] == ['"d20261030"']
    assert cut["out"] == (
        [f'"m2026{m:02d}"' for m in range(1, 10)]
        + ['("m202610" NOT ("d20261030" OR "d20261031"))',
           '("m202611" NOT ("d20261101" OR "d20261102" OR "d20261103"))', '"m202612"', '"y2027"'])
    most_of_november = date_words("2026-11-03", "2026-11-29T23:59:59.999Z", ["2026"])
    assert most_of_november["in"] == ['("m202611" NOT ("d20261101" OR "d20261102" OR '
                                      '"d20261130" OR "d20261131"))']
    assert most_of_november["out"][-5:] == ['"d20261101"', '"d20261102"', '"d20261130"',
                                            '"d20261131"', '"m202612"']
    one_day = date_words("2026-11-02", "2026-11-02T12:00:00.000Z", ["2026"])
    assert (one_day["in"], one_day["edge"]) == ([], ['"d20261102"'])
    backwards = date_words("2026-02-20", "2026-02-10T23:59:59.999Z", ["2026"])  # nothing in
    assert backwards == {"in": [], "edge": [], "out": [f'"m2026{m:02d}"' for m in range(1, 13)]}


@pytest.mark.parametrize("filters, alone", [
    (Filters(q="red", trash="exclude", types=["text_to_image"], toplevel=True, status="failed",
             provider="local", starred=True), True),
    (Filters(q="red", trash="only", status="succeeded"), True),
    (Filters(q="red", since="2026-11-01T00:00:00.000Z", until="2026-11-30T23:59:59.999Z"),
     True),  # whole days are words
    (Filters(q="red", since="2026-01-01", until="2026-11-24"), False),  # until: 11-24's start
    (Filters(q="red", since="2026-11-24T10:00:00.000Z"), False),  # a day cut: its rows read
    (Filters(q="red", status="weird"), False),
])
def test_a_search_filtered_by_what_the_full_text_index_knows_is_counted_by_it_alone(
        history, filters, alone):
    """Trash, step, type, status, provider, star and day are words or columns of
    the full-text index: such a search is counted without reading a row."""
    save(history, prompt="a red barn", status="failed", starred=True,
         createdAt="2026-11-24T12:00:00.000Z")
    statements = []
    history.index.connect().set_trace_callback(statements.append)
    history.index.count(filters)
    history.index.connect().set_trace_callback(None)
    assert any("operations" in s for s in statements) is not alone, statements


def day_of(record: dict) -> str:
    """The day of a record as the index keys it (the first ten characters of its time)."""
    return (record.get("createdAt") or "")[:10]


def test_a_search_between_dates_counts_rows_written_out_of_the_order_of_their_days(history):
    """Rows written in the order of their days are counted between the seqs
    of the dates' days. A row written later for an earlier day (a restored
    archive), or moved to another day, is counted with its own day only; a
    rebuild, adding the records day by day, puts the days back in order."""
    def record(day, n):
        return {"operationId": f"2026100{day}_{n:06d}", "operationType": "text_to_image",
                "prompt": "red barn", "status": "succeeded",
                "createdAt": f"2026-10-0{day}T10:00:00.000Z"}

    rows = {r["operationId"]: r for day in (1, 2, 3) for r in (record(day, n) for n in range(4))}
    history.index.add(list(rows.values()))
    since, until = Filters(q="red", since="2026-10-02"), Filters(q="barn", until="2026-10-02")
    assert history.index._day_seqs("2026-10-02", None) is not None
    assert (history.count(since), history.count(until)) == (8, 4)

    moved = rows["20261003_000000"] = {**rows["20261003_000000"],
                                       "createdAt": "2026-10-01T11:00:00.000Z"}
    history.index.add([moved])
    assert history.index._day_seqs("2026-10-02", None) is None
    assert (history.count(since), history.count(until)) == (7, 5)

    late = rows["20261001_000009"] = record(1, 9)
    history.index.add([late])
    history.index.remove(["20261002_000000"])
    del rows["20261002_000000"]
    assert (history.count(since), history.count(until)) == (6, 6)
    assert history.index.page(since, 10)[0] == sorted(
        (i for i, r in rows.items() if r["createdAt"] >= "2026-10-02"), reverse=True)

    with history.index.refill():
        history.index.add(sorted(rows.values(), key=day_of))
    assert history.index._day_seqs("2026-10-02", None) is not None
    assert (history.count(since), history.count(until)) == (6, 6)


def test_the_seqs_of_the_days_between_two_dates_are_those_of_their_rows(history):
    """Days are the first ten characters of a row's time, compared as text, as
    the SQL compares times: an odd time's day sorts where its text does."""
    times = ["2026-10-01T10:00:00.000Z", "2026-10-02T10:00:00.000Z", "2026-10-02T11:00:00.000Z",
             "2026-10-03T10:00:00.000Z", "yesterday"]
    history.index.add([{"operationId": f"20261001_{n:06d}", "prompt": "red", "createdAt": t}
                       for n, t in enumerate(times)])
    seqs = history.index._day_seqs
    assert [seqs("2026-10-02", None), seqs(None, "2026-10-02T23:59:59.999Z"),
            seqs("2026-10-02T12:00:00.000Z", "2026-10-03"), seqs(None, None),
            seqs("2026-10-04", "2026-12-31")] == [(2, 5), (1, 3), (2, 4), (1, 5), None]
    history.index.add([{"operationId": "20261001_000009", "prompt": "red",
                        "createdAt": "2026-10-02T09:00:00.000Z"}])  # after a later day's
    assert [seqs("2026-10-02", None), seqs(None, "2026-10-02"), seqs("2026-10-03", None),
            seqs("2026-10-01", "2026-10-01")] == [(2, 6), None, None, (1, 1)]


@pytest.mark.parametrize("probe", [100, 2])
def test_few_matches_are_read_with_their_count_and_the_page_walks_that_list(
        history, monkeypatch, probe):
    """A search whose matches are few (here at most 30) reads them once, with its
    count, whether the first ``PROBE`` of them hold them all or only tell how
    dense they are; a search of many is counted by FTS5, its matches left unread."""
    from generation_studio.history import index
    monkeypatch.setattr(index, "PROBE", probe)
    history.index.add([{"operationId": f"20261102_{n:06d}", "createdAt":
                        f"2026-11-02T10:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
                        "prompt": "a rare bird" if n % 500 == 0 else "a common cat"}
                       for n in range(3000)])
    rare, common = (history.index._search(Filters(q=q)) for q in ("rare", "common"))
    counted, rare = history.index._count_matches(rare, 30)
    assert (counted, json.loads(rare.known)) == (6, [1, 501, 1001, 1501, 2001, 2501])
    statements = []
    history.index.connect().set_trace_callback(statements.append)
    counted, common = history.index._count_matches(common, 30)
    history.index.connect().set_trace_callback(None)
    assert (counted, common.known) == (2994, None)
    # the probe of a dense word says so: its matches are not read in vain
    assert [s for s in statements if "group_concat" in s] == []

    statements = []
    history.index.connect().set_trace_callback(statements.append)
    page = history.index.page(Filters(q="rare"), 2)
    history.index.connect().set_trace_callback(None)
    assert page[:2] == (["20261102_002500", "20261102_002000"], 6)
    read = [s for s in statements if "prompts MATCH" in s and not s.startswith("--")]
    assert len(read) == (1 if probe == 100 else 2), read  # the probe, then all when needed
    assert len([s for s in statements if "json_each" in s]) == 1, statements  # the walk


@pytest.mark.parametrize("prefix_words, probe, has_json", [
    (10, 100, True),  # a long last word spelled as its words, matches up to 100 read whole
    (1, 2, True),  # or not; matches up to 15 (a hundredth of the rows) read whole, past 2
    (10, 2, False)])  # SQLite without its JSON functions: matches never read whole
def test_a_search_counts_and_pages_each_trash_step_type_and_facet_while_rows_move(
        history, monkeypatch, prefix_words, probe, has_json):
    """A prompt is indexed in the full-text column of its row's place (trash,
    step, type), with its status, provider, star and day as facets: trashing,
    restoring, rewording, retyping, finishing, starring, redating and deleting rows keep
    every combination of those filters exact, page and count, types this
    version does not know included, and the last word a prefix."""
    import random
    from generation_studio.history import index
    monkeypatch.setattr(index, "PREFIX_WORDS_UP_TO", prefix_words)
    monkeypatch.setattr(index, "PROBE", probe)
    if not has_json:
        monkeypatch.setattr(index, "_has_json", lambda conn: False)
        history.index.close()
    rng = random.Random(11)
    types = ["text_to_image", "generate_then_edit", "legacy_upscale", None]
    statuses = ["succeeded", "failed", "running", "weird", None]
    providers = ["local", "replicate", "other", None]
    prompts = ["red lighthouse", "blue lighthouses", "red lightning barn", "Red Barn",
               "a tall tower", "white zebra", "a red_barn café", "Naïve CAFÉ", "die Straße",
               "a starry statue, y2026", None]
    days = ["2025-12-31", "2026-01-01", "2026-01-02", "2026-01-31", "2026-02-01", "2026-02-28",
            "2026-02-30", "2026-03-01", "2026-03-15", "2026-01-32", "2026-00-05"]
    times = ["T00:00:00.000Z", "T10:00:00.000Z", "T23:59:59.999Z", "T10:00:00Z", "T10:00:00.5",
             "", "T00:00:00", "T23:59:59.999999", "T23:59:59.9999Z", "T00:00:00+01:00", " 10h"]

    def created():  # the records' own times, mostly, and odd ones
        if rng.random() < 0.03:
            return rng.choice([None, "yesterday", "2026-13-01T10:00:00.000Z", "2026",
                               "2\"26-01-01T10:00:00.000Z"])
        return rng.choice(days) + rng.choice(times[:3] * 6 + times[3:])

    rows = {}
    for n in range(1500):
        op_id = f"20261102_{n:06d}"
        rows[op_id] = {
            "operationId": op_id, "operationType": rng.choice(types),
            "prompt": rng.choice(prompts), "status": rng.choice(statuses),
            "provider": {"name": rng.choice(providers)}, "starred": rng.random() < 0.2,
            "createdAt": created()}
        if rng.random() < 0.3:
            rows[op_id]["parentId"] = "20261101_parent"
    history.index.add(list(rows.values()))

    bounds = [None, "2026-01-01T00:00:00.000Z", "2026-01-01T23:59:59.999Z",
              "2026-01-01T10:00:00.000Z", "2026-02-01", "2026-01", "2026-03-01T00:00:00",
              "2026-02-30T23:59:59.999Z", "2026-02-28T23:59:59.9999Z", "2025-06-01T00:00:00.000Z",
              "2026-01-31T12:00:00.000Z"]

    def check():
        newest = sorted(rows.values(), key=lambda r: (r["createdAt"] or "", r["operationId"]),
                        reverse=True)
        combinations = [Filters(q=q, trash=trash, types=kinds, toplevel=toplevel)
                        for trash in ("exclude", "only", "include")
                        for q in ("red", "lighthouse", "red light", "gre", "light", "BARN",
                                  "towe", "red_barn", "cafe", "Café naiv", "naïv",
                                  "a red_barn", "strasse", "_", "sta", "y2026")
                        for kinds in ([], ["text_to_image"],
                                      ["text_to_image", "generate_then_edit"], ["legacy_upscale"])
                        for toplevel in (False, True)]
        combinations += [dataclasses.replace(
            rng.choice(combinations), status=rng.choice(["succeeded", "failed", "weird", None]),
            provider=rng.choice(["local", "replicate", "other", None]),
            starred=rng.random() < 0.5, since=rng.choice(bounds), until=rng.choice(bounds))
            for _ in range(300)]
        for f in combinations:
            expected = [r["operationId"] for r in newest if f.matches(r)]
            page = history.index.page(f, 40, 10)
            assert (page[0], page[1]) == (expected[10:50], len(expected)), f
        integrity = history.index.execute("INSERT INTO prompts (prompts) VALUES "
                                          "('integrity-check')")
        assert integrity.fetchall() == []

    for _ in range(3):  # trash, restore, reword, retype, finish, star and delete some
        for op_id in rng.sample(sorted(rows), 300):
            row = rows[op_id]
            change = rng.choice(["trash", "restore", "reword", "retype", "finish", "star",
                                 "redate", "delete"])
            if change == "delete":
                history.index.remove([op_id])
                del rows[op_id]
                continue
            if change == "trash":
                row["trashedAt"] = "2026-11-03T00:00:00.000Z"
            elif change == "restore":
                row.pop("trashedAt", None)
            elif change == "retype":
                row["operationType"] = rng.choice(types)
            elif change == "finish":
                row["status"], row["provider"] = rng.choice(statuses), {"name": "fal"}
            elif change == "star":
                row["starred"] = not row["starred"]
            elif change == "redate":
                row["createdAt"] = created()
            else:
                row["prompt"] = rng.choice(["red lighthouse at dawn", "a green field",
                                            "lightly red"])
            history.index.add([row])
        check()
    with history.index.refill():  # as a rebuild fills it, day by day: searches between
        history.index.add(sorted(rows.values(), key=day_of))  # dates count between seqs
    assert history.index._day_seqs("2026-01-02", "2026-03-01") is not None
    check()


def test_a_refill_of_an_empty_index_counts_rows_written_just_before_it_once(history):
    """The start-up check found the index empty; while it listed the folder a
    server saved a record, with its full-text entry (the triggers were still
    there). The bulk refill keeps that row, and its words as they are at the
    end: not the entry made before a change."""
    empty_index(history.index)
    early = save(history, prompt="a quiet harbour")["operationId"]
    with history.index.refill(empty=False):
        late = save(history, prompt="a busy harbour")["operationId"]
        history.update(early, lambda record: {"prompt": "a loud harbour"})
    assert sorted(history.index.ids()) == sorted([early, late])
    assert [history.count(Filters(q=q)) for q in ("harbour", "quiet", "loud", "busy")] == \
        [2, 0, 1, 1]
    assert history.count(Filters()) == 2  # the summary, made again from every row


def test_a_start_up_check_leaves_the_index_to_a_refill_begun_while_it_listed(history, caplog,
                                                                             monkeypatch):
    """A server starts on an empty index and lists the folder; meanwhile
    ``flask history reindex`` (another process) begins its refill. The check
    steps aside: it neither fills the index itself nor takes it for broken."""
    import logging
    import subprocess
    import sys
    made = [save(history)["operationId"] for _ in range(3)]
    empty_index(history.index)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        server = HistoryService(history.root, history.index.path)
        listed = server.keeper.on_disk

        def on_disk(skipped):
            history.index.execute("INSERT OR REPLACE INTO meta VALUES ('refill', ?)",
                                  (f"{other.pid} {time.time()}",))
            return listed(skipped)

        monkeypatch.setattr(server.keeper, "on_disk", on_disk)
        with caplog.at_level(logging.INFO):
            server.start(wait=True)
        assert f"The history index is being rebuilt by process {other.pid}: the history " \
               "answers from the records until it is done" in caplog.messages
        assert (server.keeper.problem, list(server.index.ids())) == (None, [])
        page = server.page(Filters(), 10)
        assert (sorted(r["operationId"] for r in page.operations), page.degraded) == (
            sorted(made), True)
    finally:
        other.kill()
        other.wait()
        history.index.execute("DELETE FROM meta WHERE key = 'refill'")


def test_a_record_saved_while_an_empty_index_is_caught_up_stays_in_it(history, monkeypatch):
    """The catch-up of an empty index lists the folder, then fills the index
    in bulk; a record saved after the listing is in the index already, and
    the bulk fill must not take it out."""
    made = [save(history, prompt="a harbour")["operationId"] for _ in range(3)]
    empty_index(history.index)
    listed, late = history.keeper.on_disk, []

    def on_disk(skipped):
        yield from listed(skipped)
        late.append(save(history, prompt="a harbour at night")["operationId"])

    monkeypatch.setattr(history.keeper, "on_disk", on_disk)
    summary = history.keeper.catch_up(history.index)
    assert (summary["added"], len(late)) == (3, 1)
    assert sorted(history.index.ids()) == sorted(made + late)
    assert [history.count(Filters(q=q)) for q in ("harbour", "night")] == [4, 1]


def test_a_catch_up_counts_every_row_it_removes_across_batches(history, monkeypatch):
    from generation_studio.history import rebuild
    made = [save(history)["operationId"] for _ in range(5)]
    for op_id in made[:4]:
        (history.root / layout.record_name(op_id)).unlink()
    monkeypatch.setattr(rebuild, "BATCH", 2)
    summary = history.keeper.catch_up(history.index)
    assert (summary["removed"], summary["added"], list(history.index.ids())) == (
        4, 0, made[4:])


def test_a_catch_up_keeps_records_the_listing_missed_while_they_moved(history, monkeypatch):
    """Compress moves a day's records into its archive, decompress back: the
    archives are listed first, then the loose files, so a record moved
    between the two listings is in neither. It is looked for again under its
    day's lock and kept; only a record really gone leaves the index."""
    loose, deleted = save(history)["operationId"], save(history)["operationId"]
    packed = save(history, days_ago=40)["operationId"]
    history.compress(timedelta(days=7))
    (history.root / layout.record_name(deleted)).unlink()
    listed = history.keeper.on_disk
    monkeypatch.setattr(history.keeper, "on_disk", lambda skipped: (
        pair for pair in listed(skipped) if pair[0] not in (loose, packed)))
    summary = history.keeper.catch_up(history.index)
    assert (summary["removed"], sorted(history.index.ids())) == (1, sorted([loose, packed]))


def test_a_catch_up_drops_the_rows_of_an_archive_gone_bad_and_counts_every_day(history):
    """A day's zip replaced by garbage after it was indexed: its operations can no
    longer be read, so their rows go (the archive is named instead), counted
    with a record removed by hand on another day in the same pass."""
    packed = save(history, days_ago=20)["operationId"]
    by_hand, kept = save(history)["operationId"], save(history)["operationId"]
    history.compress(timedelta(days=7))
    archive.path_for(history.root, layout.day_of(packed)).write_bytes(b"garbage")
    (history.root / layout.record_name(by_hand)).unlink()
    summary = history.keeper.catch_up(history.index)
    assert (summary["removed"], list(history.index.ids())) == (2, [kept])
    assert summary["skipped"] == {f"archives/{layout.day_of(packed)}.zip":
                                  "not a readable zip archive (File is not a zip file)"}


# Records of any writer, and their index rows --------------------------------------------
def test_a_guide_shaped_record_is_read_with_every_field_the_history_needs():
    from generation_studio.history import records
    raw = {"id": "x", "operationId": "20990101_wrong", "operationType": "img_to_img",
           "timestamp": "2025-11-03T10:00:00.000Z",
           "provider": "replicate", "error": "boom", "resultFile": "20251103_abc123_out.jpg",
           "inputImages": ["20251103_abc123_in_0.png", {"file": "20251103_abc123_in_1.qqq"},
                           {"nofile": 1}, 7]}
    record = records.decode("20251103_abc123", json.dumps(raw).encode())
    assert record == {**raw, "operationId": "20251103_abc123",
                      "createdAt": "2025-11-03T10:00:00.000Z", "status": "failed",
                      "provider": {"name": "replicate", "model": None},
                      "inputImages": [{"file": "20251103_abc123_in_0.png",
                                       "contentType": "image/png"},
                                      {"file": "20251103_abc123_in_1.qqq",
                                       "contentType": "application/octet-stream"}],
                      "outputs": [{"file": "20251103_abc123_out.jpg", "contentType": "image/jpeg"}],
                      "schemaVersion": 0}


@pytest.mark.parametrize("fields, created, status", [
    ({}, "2025-11-03T00:00:00.000Z", "succeeded"),
    ({"created_at": "2025-11-03T01:00:00.000Z"}, "2025-11-03T01:00:00.000Z", "succeeded"),
    ({"date": "2025-11-03T02:00:00.000Z", "createdAt": 5}, "2025-11-03T02:00:00.000Z",
     "succeeded"),
    ({"createdAt": "2025-11-03T03:00:00.000Z", "timestamp": "x", "status": "running"},
     "2025-11-03T03:00:00.000Z", "running"),
    ({"status": "queued"}, "2025-11-03T00:00:00.000Z", "queued"),
    ({"status": "canceled"}, "2025-11-03T00:00:00.000Z", "canceled"),
    ({"status": "weird", "error": ""}, "2025-11-03T00:00:00.000Z", "succeeded"),
])
def test_a_records_time_and_status_are_found_or_derived(fields, created, status):
    from generation_studio.history import records
    record = records.normalize("20251103_abc123", {"operationType": "text_to_image", **fields})
    assert (record["createdAt"], record["status"]) == (created, status)
    assert record["provider"] == {"name": None, "model": None}
    assert (record["inputImages"], record["outputs"]) == ([], [])
    assert "resultFile" not in record and record["schemaVersion"] == 0


def test_a_record_keeps_its_own_result_file_and_version():
    from generation_studio.history import records
    raw = {"schemaVersion": 1, "operationType": "text_to_image", "provider": {"name": "local"},
           "outputs": [{"file": "a_out_0.png", "contentType": "image/x"}, {"file": "b.png"}],
           "resultFile": "b.png"}
    record = records.normalize("20251103_abc123", raw)
    assert record["resultFile"] == "b.png" and record["schemaVersion"] == 1
    assert record["outputs"] == [{"file": "a_out_0.png", "contentType": "image/x"},
                                 {"file": "b.png", "contentType": "image/png"}]
    assert records.normalize("20251103_abc123", {"operationType": "text_to_image",
                                                 "outputs": ["c.webp"]})["resultFile"] == "c.webp"
    assert records.is_final({"status": "canceled"}) is True
    assert records.is_final({"status": "running"}) is False


@pytest.mark.parametrize("data, reason", [
    (b"{ nope", "invalid JSON (Expecting property name enclosed in double quotes: line 1 "
                "column 3 (char 2))"),
    (b"\xff\xfe\x00", "invalid JSON ("),
    (b"[1]", "not a JSON object (a list)"),
    (b'"text"', "not a JSON object (a str)"),
])
def test_a_file_that_is_not_a_record_is_refused_with_the_reason(data, reason):
    from generation_studio.history import records
    with pytest.raises(records.InvalidRecord) as caught:
        records.decode("20251103_abc123", data)
    assert str(caught.value).startswith(reason) and str(caught.value).endswith(")")


@pytest.mark.parametrize("op_id, raw, reason", [
    ("20251103_abc123", {"hello": "world"}, "no operationType"),
    ("20251103_abc123", {"operationType": 42}, "operationType is not a name (42)"),
    ("20251103_abc123", {"operationType": ""}, "operationType is not a name ('')"),
    ("20251103_abc123", {"operationType": ["a"]}, "operationType is not a name (a list)"),
    ("20251103_abc123", {"operationType": "x", "timestamp": "not a date"},
     "timestamp is not an ISO 8601 time ('not a date')"),
    ("20251103_abc123", {"operationType": "x", "createdAt": "2025-13-01T00:00:00Z"},
     "createdAt is not an ISO 8601 time ('2025-13-01T00:00:00Z')"),
    ("20251399_abc123", {"operationType": "x"}, "its name's date 20251399 is not a day"),
    ("20251103_abc123", {"operationType": "x", "prompt": 7}, "prompt is not text (7)"),
    ("20251103_abc123", {"operationType": "x", "inputImages": "a.png"},
     "inputImages is not a list ('a.png')"),
    ("20251103_abc123", {"operationType": "x", "outputs": {"file": "a.png"}},
     "outputs is not a list (a dict)"),
    ("20251103_abc123", {"operationType": "x", "parentId": "abc"},
     "parentId is not an operation id ('abc')"),
])
def test_a_record_whose_fields_cannot_be_trusted_is_refused_with_the_reason(op_id, raw, reason):
    from generation_studio.history import records
    with pytest.raises(records.InvalidRecord) as caught:
        records.decode(op_id, json.dumps(raw).encode())
    assert str(caught.value) == reason


def test_a_records_time_is_written_as_the_studio_writes_times():
    from generation_studio.history import records

    def created(value):
        return records.normalize("20251103_abc123", {"operationType": "x",
                                                     "timestamp": value})["createdAt"]
    assert created("2025-11-03T14:30:00.000Z") == "2025-11-03T14:30:00.000Z"
    assert created("2025-11-03T16:30:00+02:00") == "2025-11-03T14:30:00.000Z"
    assert created("2025-11-03T14:30:00") == "2025-11-03T14:30:00.000Z"  # UTC when unsaid
    assert created("2025-11-03") == "2025-11-03T00:00:00.000Z"
    assert created("2025-11-03 14:30:00.000Z") == "2025-11-03T14:30:00.000Z"


def test_fields_only_shown_are_dropped_when_of_the_wrong_kind():
    from generation_studio.history import records
    record = records.normalize("20251103_abc123", {
        "operationType": "img_to_img", "completedAt": 5, "resultFile": ["a"], "trashedAt": {},
        "provider": {"name": ["x"], "model": 3, "version": "v"},
        "inputImages": [{"file": "20251103_abc123_in_0.png", "bytes": "big", "width": -1,
                         "height": 2, "frames": True}]})
    assert [k for k in ("completedAt", "resultFile", "trashedAt") if k in record] == []
    assert record["provider"] == {"name": None, "model": None, "version": "v"}
    assert record["inputImages"] == [{"file": "20251103_abc123_in_0.png", "height": 2,
                                      "contentType": "image/png"}]


def test_an_index_row_has_every_column_of_the_record():
    from generation_studio.history.index import row_of
    record = {"operationId": "20261101_aaaaaa", "operationType": "img_to_img",
              "status": "failed", "createdAt": "c", "completedAt": "d", "durationMs": 12,
              "provider": {"name": "fal", "model": "m"}, "prompt": "p", "parentId": "q",
              "error": ValueError("bad"), "resultFile": "r",
              "inputImages": [{"bytes": 10}, {"bytes": 5.5}, {"bytes": "7"}, {}],
              "outputs": [{"bytes": 3}, {"bytes": True}]}
    assert row_of(record) == ("20261101_aaaaaa", "img_to_img", "failed", "c", "d", 12, "fal",
                              "m", "p", "q", "bad", 4, 15.5, 3, "r", None, None)
    bare = row_of({"operationId": "20261101_bbbbbb", "durationMs": True, "prompt": ["x"],
                   "error": ""})
    assert bare == ("20261101_bbbbbb", None, None, None, None, None, None, None, None, None,
                    None, 0, 0, 0, None, None, None)
    kept = row_of({"operationId": "20261101_cccccc", "trashedAt": "t", "starred": True})
    assert kept[-2:] == ("t", 1)


# Filters from a query string: what is accepted, and the exact refusals ----------------
def query(**values):
    from werkzeug.datastructures import MultiDict
    return MultiDict([(k, v) for k, vs in values.items()
                      for v in (vs if isinstance(vs, list) else [vs])])


def test_filters_are_read_from_a_query_string():
    from generation_studio.history.filters import parse
    filters = parse(query(type=["text_to_image", "img_to_img"], status="failed",
                          provider="fal", q="  red  lighthouse ", parentId="20261124_abc",
                          since="2026-11-24", until="2026-11-25T08:30:00+02:00"))
    assert filters == Filters(types=["text_to_image", "img_to_img"], status="failed",
                              provider="fal", q="red lighthouse", parent_id="20261124_abc",
                              since="2026-11-24T00:00:00.000Z",
                              until="2026-11-25T06:30:00.000Z", trash="exclude")
    assert parse(query(until="2026-11-24", q="   ")) == \
        Filters(until="2026-11-24T23:59:59.999Z", trash="exclude")
    assert parse(query(q='"red" (light*')).q == "red light"  # words only reach the index
    assert parse(query(trash="include", starred="1", toplevel="true", ids="20261124_abc")) == \
        Filters(trash="include", starred=True, toplevel=True, ids=["20261124_abc"])
    assert parse(query(), trash="include") == Filters()
    assert parse(query(since="2026-11-24T08:30:00")).since == "2026-11-24T08:30:00.000Z"
    assert parse(query(since="2026-11-24", until="2026-11-24")).until == \
        "2026-11-24T23:59:59.999Z"
    assert parse(query(q="x" * 500)).q == "x" * 500


@pytest.mark.parametrize("values, field, message", [
    ({"type": ["text_to_image", "cats"]}, "type", "type must be one of {types} (got 'cats')"),
    ({"q": "x" * 501}, "q", "q is 501 characters long; the limit is 500"),
    ({"parentId": "../x"}, "parentId",
     "parentId must be an operation id such as 20261124_k3j5x2m7qa9b (got '../x')"),
    ({"since": "2026-11-20", "until": "2026-11-10"}, "since",
     "since (2026-11-20) is after until (2026-11-10)"),
    ({"status": "done"}, "status",
     "status must be one of queued, running, succeeded, failed, canceled (got 'done')"),
    ({"provider": "openai"}, "provider", "provider must be one of local, replicate, fal "
                                         "(got 'openai')"),
    ({"since": "yesterday"}, "since", "since must be a date (2026-11-24) or an ISO 8601 time "
                                      "(2026-11-24T08:30:00Z) (got 'yesterday')"),
    ({"until": "2026-13-40"}, "until", "until must be a date (2026-11-24) or an ISO 8601 time "
                                       "(2026-11-24T08:30:00Z) (got '2026-13-40')"),
    ({"since": "9999-12-31T23:59:59-05:00"}, "since", "since must be a date (2026-11-24) or an "
     "ISO 8601 time (2026-11-24T08:30:00Z) (got '9999-12-31T23:59:59-05:00')"),
])
def test_bad_filters_are_refused_naming_the_field_and_what_is_allowed(values, field, message):
    from generation_studio.catalog import OPERATION_TYPES
    from generation_studio.history.filters import FilterError, parse
    with pytest.raises(FilterError) as caught:
        parse(query(**values))
    assert (caught.value.field, caught.value.message) == \
        (field, message.format(types=", ".join(OPERATION_TYPES)))
    assert str(caught.value) == caught.value.message


# Names on disk -------------------------------------------------------------------------------
def test_ids_and_file_names():
    assert re.fullmatch(r"20261124_[a-z2-7]{12}",
                        layout.new_id(datetime(2026, 11, 24, 23, 59, tzinfo=timezone.utc)))
    assert layout.new_id()[:8] == datetime.now(timezone.utc).strftime("%Y%m%d")
    assert len({layout.new_id() for _ in range(50)}) == 50
    assert (layout.is_id("20251103_abc123"), layout.is_id("2025110_abc"), layout.is_id(7),
            layout.is_id("20251103_" + "a" * 81), layout.is_id("20251103_a/b")) == \
        (True, False, False, False, False)
    assert layout.day_of("20251103_abc123") == "20251103"
    assert layout.input_name("20251103_x", 2, "png") == "20251103_x_in_2.png"
    assert layout.output_name("20251103_x", 1, True, "jpg") == "20251103_x_out_1.jpg"
    assert layout.output_name("20251103_x", 0, False, "jpg") == "20251103_x_out.jpg"
    assert layout.record_id("20251103_x.json") == "20251103_x"
    assert (layout.record_id("20251103_x.jsonx"), layout.record_id("notes.json")) == (None, None)
    assert [layout.owner(n) for n in ("20251103_x_in_0.png", "20251103_x_input_3.jpg",
                                      "20251103_x_out.webp", "20251103_x_out_2.png",
                                      "20251103_x.json", "20251103_x_other.png",
                                      "20251103_x_out.toolongextension", "x_out.png")] == \
        ["20251103_x"] * 5 + [None, None, None]
    assert layout.belongs_to("20251103_ab_out.png", "20251103_ab") is True
    assert layout.belongs_to("20251103_ab_c_out.png", "20251103_ab") is False


# Day locks -----------------------------------------------------------------------------------
def test_day_locks_are_files_made_on_first_use_and_exclude_each_other(history):
    import fcntl
    folder = history.root / layout.LOCK_FOLDER
    with history.locks.exclusive(["20261102", "20261101", "20261101"]):
        assert sorted(p.name for p in folder.iterdir()) == ["20261101.lock", "20261102.lock"]
        assert [stat.S_IMODE((folder / n).stat().st_mode) for n in
                ("20261101.lock", "20261102.lock")] == [0o644, 0o644]
        fd = os.open(folder / "20261101.lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    with history.locks.shared(["20261101"]):
        fd = os.open(folder / "20261101.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared with shared: fine
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    fd = os.open(folder / "20261101.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the block ends
    finally:
        os.close(fd)


# Recovery ----------------------------------------------------------------------------------
def test_lost_workflows_are_written_back_listing_their_steps_in_order(history):
    long_ago = datetime.now(timezone.utc) - timedelta(seconds=recovery.DANGLING_SECONDS + 60)
    parent = history.new_id(long_ago)
    steps = [history.save({"operationType": "image_edit_single", "status": "succeeded",
                           "createdAt": iso(long_ago + timedelta(seconds=n)),
                           "prompt": f"step {n}", "parentId": parent})["operationId"]
             for n in range(2)]
    recent_parent = history.new_id()
    history.save({**TEXT_TO_IMAGE, "status": "succeeded", "createdAt": iso(datetime.now(timezone.utc)),
                  "parentId": recent_parent})  # its workflow may still be saving
    history.save({**TEXT_TO_IMAGE, "status": "succeeded", "createdAt": iso(long_ago),
                  "parentId": "not-an-id"})
    done = history.recover()
    assert done == {"tempFiles": 0, "orphanFiles": 0, "reattached": [parent]}
    record = history.get(parent)
    assert {k: record[k] for k in ("operationType", "status", "createdAt", "completedAt",
                                   "durationMs", "prompt", "steps", "errorType", "error")} == {
        "operationType": "workflow", "status": "failed", "createdAt": iso(long_ago),
        "completedAt": iso(long_ago + timedelta(seconds=1)), "durationMs": None,
        "prompt": "step 0", "steps": steps, "errorType": "Interrupted",
        "error": "This workflow's record was lost (the server stopped while saving it); its "
                 "steps were found and attached to it again."}
    assert history.get(recent_parent) is None


def test_files_without_a_record_go_and_the_others_stay(history):
    kept = save(history, inputs=[png_bytes()])
    orphans = ["20261101_orphan_in_0.png", "20261101_orphan_out.jpg"]
    for name in orphans:
        (history.root / name).write_bytes(b"data")
    (history.root / "20261101_link_out.png").symlink_to(history.root / kept["resultFile"])
    assert recovery.remove_orphans(history) == 2
    assert sorted(sizes(history, kept["operationId"])) == sorted(
        [f"{kept['operationId']}.json", f"{kept['operationId']}_in_0.png", kept["resultFile"]])
    assert [(history.root / n).exists() for n in orphans] == [False, False]
    assert (history.root / "20261101_link_out.png").is_symlink()
    assert recovery.remove_orphans(history) == 0


def test_temp_files_in_archives_and_thumbnails_are_recovered_too(history):
    for folder in (history.root / "archives", history.root / ".thumbs"):
        folder.mkdir()
        (folder / ".x.zip.pid999999999-abc.tmp").write_bytes(b"half")
        (folder / "kept.zip").write_bytes(b"zip")
    assert recovery.remove_temp_files(history) == 2
    assert sorted(p.name for p in (history.root / "archives").iterdir()) == ["kept.zip"]
    assert sorted(p.name for p in (history.root / ".thumbs").iterdir()) == ["kept.zip"]


# The folder: what a save writes, and what reading refuses -------------------------------
def animated_webp() -> bytes:
    import io
    from PIL import Image
    frames = [Image.new("RGB", (8, 6), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def test_a_save_describes_each_file_it_wrote(history):
    video = animated_webp()
    record = history.save({**TEXT_TO_IMAGE, "operationId": "20261124_described", "status": "succeeded"},
                          inputs=[(png_bytes((5, 4)), "me.png")], outputs=[video])
    assert record["operationId"] == "20261124_described" and record["schemaVersion"] == 1
    assert record["inputImages"] == [{
        "file": "20261124_described_in_0.png", "contentType": "image/png",
        "bytes": len(png_bytes((5, 4))), "width": 5, "height": 4, "originalName": "me.png",
        "sha256": hashlib.sha256(png_bytes((5, 4))).hexdigest()}]
    assert record["outputs"] == [{
        "file": "20261124_described_out.webp", "contentType": "image/webp",
        "bytes": len(video), "sha256": hashlib.sha256(video).hexdigest(), "width": 8,
        "height": 6, "frames": 2}]
    assert record["resultFile"] == "20261124_described_out.webp"
    on_disk = (history.root / "20261124_described.json").read_text()
    assert on_disk == json.dumps(record, indent=2, ensure_ascii=False)


def test_a_record_is_written_as_readable_utf8(history):
    record = history.save({**TEXT_TO_IMAGE, "status": "succeeded", "prompt": "un château, été"}, outputs=[])
    text = (history.root / f"{record['operationId']}.json").read_text(encoding="utf-8")
    assert '"prompt": "un château, été"' in text and '\n  "status": "succeeded",\n' in text
    assert (record["outputs"], record["resultFile"]) == ([], None)


def open_descriptors(folder: Path) -> int:
    """This process's descriptors open on files of ``folder``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += Path(os.readlink(f"/proc/self/fd/{fd}")).parent == folder
        except OSError:
            pass  # closed meanwhile (the one listing the folder)
    return count


def test_reading_many_files_gives_each_its_bytes_in_order_and_keeps_no_descriptor(history):
    from generation_studio.storage import folder
    import errno
    names = [f"20261101_{n:06d}.json" for n in range(folder.READ_AHEAD * 2 + 5)]
    for n, name in enumerate(names):
        (history.root / name).write_bytes(b"x" * n)
    (history.root / "20261101_dir.json").mkdir()
    (history.root / "20261101_link.json").symlink_to(history.root / names[0])
    asked = names[:3] + ["20261101_missing.json", "20261101_link.json", "20261101_dir.json"] \
        + names[3:]
    answers = list(history.folder.read_each(iter(asked)))
    assert open_descriptors(history.root) == 0
    assert [name for name, _, _ in answers] == asked
    assert [(data, error) for name, data, error in answers if name in names] == \
        [(b"x" * n, None) for n in range(len(names))]
    missing, link, directory = answers[3:6]
    assert missing == ("20261101_missing.json", None, None)
    assert (link[1], link[2].errno) == (None, errno.ELOOP)
    assert (directory[1], directory[2].errno) == (None, errno.EISDIR)
    reading = history.folder.read_each(names)
    assert next(reading) == (names[0], b"", None)
    assert open_descriptors(history.root) == folder.READ_AHEAD  # the next ones, asked of the disk
    reading.close()  # abandoned half-way: what it had opened is closed
    assert open_descriptors(history.root) == 0
    with pytest.raises(IsADirectoryError):
        history.folder.read("20261101_dir.json")
    assert open_descriptors(history.root) == 0


def test_records_are_read_in_id_order_unless_told_otherwise(history):
    import random
    made = [save(history, days_ago=n / 24)["operationId"] for n in range(12)]
    shuffled = random.Random(5).sample(made, len(made))
    assert [op_id for op_id, _, _ in history.iter_records(shuffled)] == sorted(made)
    assert [op_id for op_id, _, _ in history.iter_records(shuffled, reverse=True)] == \
        sorted(made, reverse=True)
    assert [op_id for op_id, _, _ in history.iter_records(shuffled, sort=False)] == shuffled
    assert [op_id for op_id, record, error in history.iter_records()] == sorted(made)


def test_a_page_of_records_is_asked_of_the_disk_before_the_first_is_read(history, monkeypatch):
    from generation_studio.storage import folder
    ops = [save(history, days_ago=n / 24) for n in range(5)]
    events_seen = []
    fadvise, read_regular = os.posix_fadvise, folder._read_regular
    monkeypatch.setattr(folder.os, "posix_fadvise",
                        lambda fd, *args: events_seen.append("asked") or fadvise(fd, *args))
    monkeypatch.setattr(folder, "_read_regular",
                        lambda fd, name: events_seen.append("read") or read_regular(fd, name))
    page = history.page(Filters(), 5)
    assert [op["operationId"] for op in page.operations] == [op["operationId"] for op in ops]
    assert page.operations == ops
    assert events_seen == ["asked"] * 5 + ["read"] * 5
    assert open_descriptors(history.root) == 0


def test_a_page_out_of_descriptors_reads_what_it_has_open_then_the_rest(history, monkeypatch,
                                                                           caplog):
    """Many requests at once may use every descriptor the process may have:
    the records asked ahead are read first, and the rest are still read."""
    import errno
    from generation_studio.storage import folder
    ops = [save(history, days_ago=n / 24) for n in range(8)]
    real_open = os.open

    def short_of_descriptors(path, flags, *args):  # as if the limit left 3 for the records
        if str(path).startswith(str(history.root)) and open_descriptors(history.root) >= 3:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(folder.os, "open", short_of_descriptors)
    assert history.page(Filters(), 8).operations == ops
    assert caplog.messages == []
    assert open_descriptors(history.root) == 0


def test_a_pipe_named_like_a_record_is_refused_without_waiting_for_a_writer(history):
    import errno
    import threading
    os.mkfifo(history.root / "20261101_pipe.json")
    answers = []
    reading = threading.Thread(target=lambda: answers.extend([
        list(history.folder.read_each(["20261101_pipe.json"])),
        history.get("20261101_pipe")]), daemon=True)
    reading.start()
    reading.join(10)
    assert not reading.is_alive()  # it would wait for ever for a writer
    [(name, data, error)], record = answers
    assert (name, data, error.errno, record) == ("20261101_pipe.json", None, errno.EINVAL, None)
    assert open_descriptors(history.root) == 0


def test_reading_refuses_links_and_what_is_not_a_file(history, caplog):
    import errno
    op = save(history)
    (history.root / "20261101_dir.json").mkdir()
    (history.root / "20261101_link.json").symlink_to(history.root / f"{op['operationId']}.json")
    assert history.folder.read("20261101_missing.json") is None
    with pytest.raises(OSError) as caught:
        history.folder.read("20261101_link.json")
    assert caught.value.errno == errno.ELOOP
    with pytest.raises(OSError) as caught:
        history.folder.read("20261101_dir.json")
    assert caught.value.errno == errno.EISDIR
    assert history.folder.regular_file("20261101_link.json") is None
    assert history.folder.regular_file("20261101_dir.json") is None
    assert history.folder.regular_file(f"{op['resultFile']}/x") is None
    assert history.folder.regular_file(op["resultFile"]) == history.root / op["resultFile"]
    assert history.get_many(["20261101_link", "../x", op["operationId"]]) == \
        {op["operationId"]: op}
    assert caplog.messages == ["Skipped 20261101_link.json: Too many levels of symbolic links"]


def test_a_scan_lists_files_records_temp_files_and_what_it_skips(history):
    op = save(history)
    for name in ("notes.json", "readme.txt", ".hidden", ".x.json.pid1-ab.tmp"):
        (history.root / name).write_text("x")
    (history.root / "20261101_orphan_out.png").write_bytes(b"x")
    (history.root / "20261101_dir_out.png").mkdir()
    (history.root / "20261101_link.json").symlink_to(history.root / "notes.json")
    listing = history.folder.scan()
    assert {k: sorted(v) for k, v in listing.files.items()} == {
        op["operationId"]: sorted([f"{op['operationId']}.json", op["resultFile"]]),
        "20261101_orphan": ["20261101_orphan_out.png"]}
    assert listing.records == {op["operationId"]}
    assert listing.temp == [".x.json.pid1-ab.tmp"]
    assert listing.skipped == {"notes.json": "not named YYYYMMDD_<id>.json",
                               "20261101_link.json": "a symbolic link: never followed",
                               "20261101_dir_out.png": "not a regular file"}
    assert HistoryService(history.root / "absent", history.root / "i.sqlite3").folder.scan() \
        .files == {}


def test_a_reindex_while_a_day_is_packed_or_unpacked_indexes_every_record(history,
                                                                         monkeypatch):
    """``compress`` takes a day's records out of the folder while the reindex
    lists it (seen: whole days left out, "skipped: 0"); ``decompress`` puts
    them back between the listing and the reading."""
    packed = [save(history, days_ago=10)["operationId"] for _ in range(3)]
    unpacked = [save(history, days_ago=20)["operationId"] for _ in range(2)]
    today = save(history)["operationId"]
    history.compress(timedelta(days=15))  # the day of ``unpacked`` in its zip
    walk, packing = history.folder.walk, []

    def walk_while_packing(records_only=False):
        if records_only and not packing:  # the reindex's listing, after the zips'
            packing.append(history.compress(timedelta(days=5)))
        yield from walk(records_only)

    monkeypatch.setattr(history.folder, "walk", walk_while_packing)
    groups = history.keeper._groups

    def groups_after_unpacking(conn):
        retention.decompress(history)  # after the listing, before the reading
        yield from groups(conn)

    monkeypatch.setattr(history.keeper, "_groups", groups_after_unpacking)
    summary = history.reindex()
    assert packing[0]["days"] == 1
    assert (summary["added"], summary["skipped"]) == (6, {})
    assert sorted(history.index.ids()) == sorted([*packed, *unpacked, today])


def test_catching_up_reads_only_the_records_the_index_lacks(history, monkeypatch):
    indexed = [save(history)["operationId"] for _ in range(2)]
    write_record(history.root, "20261101_behind")  # written by a process that died
    summary = history.keeper.catch_up(history.index)
    assert (summary["added"], summary["removed"], summary["total"]) == (1, 0, 3)
    assert history.keeper.progress == [1, 1]
    assert sorted(history.index.ids()) == sorted(indexed + ["20261101_behind"])


# What the server does after requests: recovery and clean-up by the clock ------------------
@pytest.mark.parametrize("days", [{"RETENTION_DAYS": 30, "TRASH_DAYS": None},
                                  {"RETENTION_DAYS": None, "TRASH_DAYS": 30}],
                         ids=["retention", "trash"])
def test_the_server_schedules_recovery_and_clean_up_by_the_clock(storage_dir, monkeypatch,
                                                                 days):
    from generation_studio import create_app
    from generation_studio.history import maintenance
    app = create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir),
                      "HISTORY_CHECK_WAITS": True, "RECOVERY_INTERVAL_SECONDS": 300, **days})
    started, asked, clock = [], [], {"now": 1000.0}

    class Clock:
        monotonic = staticmethod(lambda: clock["now"])
        time = staticmethod(time.time)

    monkeypatch.setattr(maintenance, "time", Clock)
    monkeypatch.setattr(maintenance, "_start", lambda app, name, work: started.append(name))
    monkeypatch.setattr(maintenance, "_won", lambda app, key, seconds, unsure:
                        asked.append((clock["now"], key, seconds, unsure)) or True)
    app.extensions["maintenance"]["recovery"] = 1000.0
    client = app.test_client()

    def at(now):
        clock["now"] = now
        assert client.get("/api/health").status_code == 200

    at(1000.0)  # the first request asks whether the clean-up is due
    at(1059.0)
    at(1060.0)  # then at most once a minute
    at(1299.0)
    at(1300.0)  # recovery every RECOVERY_INTERVAL_SECONDS
    at(1599.0)
    at(1600.0)
    cleanup, recovery = ("last_cleanup", 3600, False), ("last_recovery", 300, True)
    assert asked == [(1000.0, *cleanup), (1060.0, *cleanup), (1299.0, *cleanup),
                     (1300.0, *recovery), (1599.0, *cleanup), (1600.0, *recovery)]
    assert started == ["retention", "retention", "retention", "recovery", "retention",
                       "recovery"]


def test_without_retention_or_trash_days_the_server_never_cleans_up(app, monkeypatch):
    from generation_studio.history import maintenance
    app.config["TRASH_DAYS"] = None
    asked = []
    monkeypatch.setattr(maintenance, "_won", lambda app, key, seconds, unsure:
                        key == "last_recovery" or asked.append(1) or True)
    app.test_client().get("/api/health")
    assert asked == [] and "retention_thread" not in app.extensions


def test_the_hourly_clean_up_is_not_taken_when_the_index_fails(app, monkeypatch):
    import sqlite3

    def get_meta(key):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(app.extensions["history"].index, "get_meta", get_meta)
    assert won_the_hour(app) is False


@pytest.fixture(params=["Etc/GMT-14", "Etc/GMT+12"])
def far_time_zone(request, monkeypatch):
    """The server's local time far from UTC (one of the two is on another date at any
    hour): days are still counted in UTC, as the records are written."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_days_are_utc_days_whatever_the_servers_time_zone(history, far_time_zone):
    now = datetime.now(timezone.utc)
    packed = save(history, days_ago=2)["operationId"]
    save(history, days_ago=1)
    save(history, days_ago=0)
    per_day = history.stats(Filters(), days=2)["perDay"]
    assert per_day == {(now - timedelta(days=1)).strftime("%Y-%m-%d"): 1,
                       now.strftime("%Y-%m-%d"): 1}
    from generation_studio.history.filters import parse
    assert parse(query(since="2026-11-24", until="2026-11-24T08:30:00")) == Filters(
        since="2026-11-24T00:00:00.000Z", until="2026-11-24T08:30:00.000Z", trash="exclude")
    history.compress(timedelta(days=1))
    assert history.locations()[packed] == layout.day_of(packed)
    assert sorted(d for d in history.locations().values() if d) == [layout.day_of(packed)]


def test_every_filter_goes_through_the_index(history):
    parent = history.new_id()
    step = save(history, prompt="a red step", parentId=parent, provider={"name": "fal"})
    save(history, prompt="a red cat", operationType="text_to_video")
    selected = Filters(q="red", types=["text_to_image"], status="succeeded", provider="fal",
                       parent_id=parent, since="2020-01-01T00:00:00.000Z",
                       until="2999-01-01T00:00:00.000Z")
    page = history.page(selected, limit=10)
    assert (ids(page), page.total) == ([step["operationId"]], 1)
    assert [r[0] for r in history.export_rows(selected)] == [step["operationId"]]
    assert history.stats(selected)["total"] == 1


def test_an_empty_history_has_no_success_rate(history):
    stats = history.stats(Filters())
    assert (stats["total"], stats["successRate"], stats["byType"], stats["perDay"]) == \
        (0, None, {}, {})


def test_a_period_of_one_moment_is_accepted():
    from generation_studio.history.filters import parse
    moment = "2026-11-24T08:30:00.000Z"
    assert parse(query(since=moment, until=moment)) == Filters(since=moment, until=moment,
                                                               trash="exclude")


def test_a_search_of_three_words_or_a_quote_inside_a_word_uses_the_index(history):
    hit = save(history, prompt="a red light house")["operationId"]
    save(history, prompt="a red barn")
    assert ids(history.page(Filters(q="a red light"), limit=10)) == [hit]
    assert ids(history.page(Filters(q='light"house'), limit=10)) == [hit]


def test_a_provider_that_is_not_a_name_is_read_as_none():
    from generation_studio.history import records
    assert records.normalize("20251103_abc123", {"operationType": "text_to_image",
                                                 "provider": 5})["provider"] == \
        {"name": None, "model": None}


def test_the_fingerprint_of_ids_counts_them_in_any_order():
    import zlib
    from generation_studio.history.rebuild import ids_fingerprint
    a, b = "20261101_aaaaaa", "20261101_bbbbbb"
    assert ids_fingerprint([]) == (0, 0)
    assert ids_fingerprint([a, b]) == ids_fingerprint([b, a]) == \
        (2, zlib.crc32(a.encode()) + zlib.crc32(b.encode()))


def test_start_up_indexes_records_written_while_no_server_ran(history):
    kept = save(history)["operationId"]
    write_record(history.root, "20261101_behind")
    again = HistoryService(history.root, history.index.path)
    again.start(wait=True)
    assert sorted(again.index.ids()) == sorted([kept, "20261101_behind"])
    assert again.index.has_fts is True  # an existing index keeps its full-text search
    assert ids(again.page(Filters(q="ca"), limit=5)) == [kept]
    assert ids(again.page(Filters(q="at"), limit=5)) == []  # words, not parts of words


def test_start_up_on_a_broken_index_names_the_problem(tmp_path, monkeypatch):
    from generation_studio.history.rebuild import IndexKeeper
    index_path = tmp_path / "ops" / ".index" / "history.sqlite3"
    index_path.parent.mkdir(parents=True)
    index_path.write_bytes(b"this is not a database" * 100)
    history = HistoryService(tmp_path / "ops", index_path)
    assert history.health()["skipped"] == 0  # before any check
    monkeypatch.setattr(IndexKeeper, "_rebuild", lambda self: None)  # keep it broken
    history.start(wait=True)
    assert history.health()["indexProblem"] == "DatabaseError: file is not a database"


def test_a_workflow_written_back_is_a_plain_file_a_person_can_read(history):
    long_ago = datetime.now(timezone.utc) - timedelta(seconds=recovery.DANGLING_SECONDS + 60)
    parent = history.new_id(long_ago)
    steps = [history.save({**TEXT_TO_IMAGE, "status": "succeeded", "parentId": parent,
                           "createdAt": iso(long_ago + timedelta(seconds=n))})["operationId"]
             for n in range(3)]
    history.recover()
    raw = json.loads((history.root / f"{parent}.json").read_text())
    assert {k: raw[k] for k in ("status", "parameters", "resultUrl", "resultUrls",
                                "workflowAnalysis", "provider", "completedAt", "steps")} == {
        "status": "failed", "parameters": {}, "resultUrl": None, "resultUrls": [],
        "workflowAnalysis": None, "provider": {},
        "completedAt": iso(long_ago + timedelta(seconds=2)), "steps": steps}


def test_a_workflow_whose_record_is_there_but_not_indexed_is_left_alone(history):
    long_ago = datetime.now(timezone.utc) - timedelta(seconds=recovery.DANGLING_SECONDS + 60)
    parent = history.save({**TEXT_TO_IMAGE, "operationId": history.new_id(long_ago), "status": "succeeded",
                           "createdAt": iso(long_ago)})
    history.save({**TEXT_TO_IMAGE, "status": "succeeded", "parentId": parent["operationId"],
                  "createdAt": iso(long_ago)})
    history.index.remove([parent["operationId"]])
    assert history.recover()["reattached"] == []
    assert history.get(parent["operationId"])["status"] == "succeeded"


def test_two_processes_making_the_lock_folder_at_once_both_get_their_lock(history, monkeypatch):
    from generation_studio.history import locks
    real_open, calls = os.open, []

    def racing_open(path, *args):
        calls.append(path)
        if len(calls) == 1:  # another process makes the folder just after our first try
            (history.root / layout.LOCK_FOLDER).mkdir()
            raise FileNotFoundError(2, "No such file or directory")
        return real_open(path, *args)

    monkeypatch.setattr(locks.os, "open", racing_open)
    with history.locks.exclusive(["20261101"]):
        assert (history.root / layout.LOCK_FOLDER / "20261101.lock").is_file()


def test_a_save_tells_the_listeners_with_the_record(history):
    heard = []
    listener = lambda sender, record: heard.append((sender, record["operationId"]))  # noqa: E731
    events.operation_saved.connect(listener, sender=history)
    try:
        op_id = save(history)["operationId"]
    finally:
        events.operation_saved.disconnect(listener, sender=history)
    assert heard == [(history, op_id)]


def test_recovery_counts_every_file_it_removes(history):
    for name in ("20261101_first_in_0.png", "20261101_first_out.png", "20261102_second_out.png"):
        (history.root / name).write_bytes(b"data")
    assert recovery.remove_orphans(history) == 3


def test_only_day_archives_are_read(history):
    folder = history.root / "archives"
    folder.mkdir()
    for name in ("notes.zip", "2026.zip", "20261101.zip"):
        with zipfile.ZipFile(folder / name, "w") as z:
            z.writestr("20261101_x.json", "{}")
    assert archive.days(history.root) == ["20261101"]


def test_locations_list_the_records_past_files_that_are_not_records(history):
    op_id = save(history)["operationId"]
    (history.root / "note.json").write_text("{}")
    assert history.locations() == {op_id: ""}


def test_a_day_archive_that_is_a_symbolic_link_is_never_read(history, tmp_path):
    """Asked for by id (not listed: the listing leaves links out), an archived
    record behind a link to a zip elsewhere is not found."""
    op_id = save(history, days_ago=10)["operationId"]
    history.compress(timedelta(days=7))
    real = archive.path_for(history.root, layout.day_of(op_id))
    elsewhere = tmp_path / "elsewhere.zip"
    real.rename(elsewhere)
    real.symlink_to(elsewhere)
    assert (archive.read(history.root, [f"{op_id}.json"]), history.get(op_id)) == ({}, None)
    # Compress of that day replaces the link with its own zip; what it pointed at is untouched.
    kept = elsewhere.read_bytes()
    later = save(history, days_ago=10)["operationId"]  # the same day, loose
    history.compress(timedelta(days=7))
    assert not real.is_symlink() and elsewhere.read_bytes() == kept
    assert history.get(later)["operationId"] == later and history.get(op_id) is None


def test_reading_archives_goes_on_past_a_missing_day(history):
    ops = [save(history, days_ago=d)["operationId"] for d in (10, 9)]
    history.compress(timedelta(days=7))
    archive.path_for(history.root, layout.day_of(ops[0])).unlink()
    names = [f"{ops[0]}.json", f"{ops[1]}.json"]
    assert list(archive.read(history.root, names)) == [f"{ops[1]}.json"]


def test_new_ids_are_dated_in_utc(far_time_zone):
    assert layout.new_id()[:8] == datetime.now(timezone.utc).strftime("%Y%m%d")


def test_start_makes_the_folder_with_its_parents_and_recovers(tmp_path, caplog):
    root = tmp_path / "a" / "b" / "ops"
    history = HistoryService(root, tmp_path / "index" / "deep" / "h.sqlite3")
    history.start(wait=True)
    dead = root / ".x_out.jpg.pid999999999-abc.tmp"
    dead.write_bytes(b"half")
    again = HistoryService(root, tmp_path / "index" / "deep" / "h.sqlite3")
    again.start(wait=True)
    assert root.is_dir() and not dead.exists()
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
    assert again.health()["index"] == "ok"


def test_an_index_write_that_fails_is_kept_and_applied_after_the_rebuild(history, monkeypatch):
    import sqlite3
    from generation_studio.history.index import OperationIndex
    from generation_studio.history.rebuild import IndexKeeper
    monkeypatch.setattr(IndexKeeper, "_rebuild", lambda self: None)

    def add(records):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(history.index, "add", add)
    monkeypatch.setattr(history.keeper, "broken",
                        lambda e: IndexKeeper.broken(history.keeper, e))  # expected here
    op_id = save(history)["operationId"]
    assert history.health()["indexProblem"] == "OperationalError: disk I/O error"
    fresh = OperationIndex(history.root / ".index" / "fresh.sqlite3")
    history.keeper._swap_in(fresh)
    assert list(history.index.ids()) == [op_id]


def test_a_batch_of_rows_is_written_whole_or_not_at_all(tmp_path):
    import sqlite3
    from generation_studio.history.index import OperationIndex
    index = OperationIndex(tmp_path / "i.sqlite3")
    with pytest.raises(sqlite3.ProgrammingError):
        index.add([{"operationId": "20261101_good"}, {"operationId": "20261101_bad",
                                                       "operationType": {"not": "text"}}])
    assert list(index.ids()) == []
    index.add([{"operationId": "20261101_good"}])
    assert list(index.ids()) == ["20261101_good"]


def test_an_index_of_another_version_is_named_as_such(tmp_path, monkeypatch, caplog):
    """An upgrade: a warning, not an error, and the health names the versions."""
    import sqlite3
    from generation_studio.history.rebuild import IndexKeeper
    path = tmp_path / "ops" / ".index" / "history.sqlite3"
    path.parent.mkdir(parents=True)
    sqlite3.connect(path).execute("PRAGMA user_version = 99").connection.close()
    monkeypatch.setattr(IndexKeeper, "_rebuild", lambda self: None)
    history = HistoryService(tmp_path / "ops", path)
    history.start(wait=True)
    from generation_studio.history.index import SCHEMA_VERSION
    assert history.health()["indexProblem"] == \
        f"OtherVersion: index of another version (99, expected {SCHEMA_VERSION})"
    told = [r for r in caplog.records if "history index" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in told] == [
        ("WARNING", f"The history index {path} was made by another version of the studio "
                    f"(index of another version (99, expected {SCHEMA_VERSION})): the history "
                    f"answers from the records while it is rebuilt in the background")]


def test_a_new_index_searches_words_not_parts_of_words(history):
    save(history, prompt="a cat")
    assert history.index.has_fts is True
    assert ids(history.page(Filters(q="at"), limit=5)) == []


def test_a_query_that_fails_names_its_error_while_the_folder_answers(history, monkeypatch):
    import sqlite3
    from generation_studio.history.rebuild import IndexKeeper
    op_id = save(history)["operationId"]
    monkeypatch.setattr(IndexKeeper, "_rebuild", lambda self: None)
    monkeypatch.setattr(history.keeper, "broken", lambda e: IndexKeeper.broken(history.keeper, e))

    def page(*args):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(history.index, "page", page)
    assert ids(history.page(Filters(), limit=5)) == [op_id]
    assert history.health()["indexProblem"] == "OperationalError: database is locked"
