"""The index at scale: its summary table (counts and bytes kept by triggers),
the percentiles found through duration buckets, the bulk refill of a rebuild,
the streamed catch-up and its reader processes. Each answer is compared with
the same figure computed plainly from the records on disk."""

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from generation_studio.history import HistoryService, rebuild
from generation_studio.history import index as index_module
from generation_studio.history.filters import Filters, iso
from generation_studio.storage import layout

from .conftest import empty_index, png_bytes


@pytest.fixture
def history(tmp_path):
    """A history on a fresh folder whose index must never break (as in test_history_units)."""
    h = HistoryService(tmp_path / "ops", tmp_path / "ops" / ".index" / "history.sqlite3")
    h.start(wait=True)
    failures, real_broken = [], h.keeper.broken
    h.keeper.broken = lambda error: failures.append(error) or real_broken(error)
    yield h
    assert failures == []


def save(history, days_ago=0.0, outputs=None, **fields):
    when = datetime.now(timezone.utc) - timedelta(days=days_ago)
    record = {"operationId": history.new_id(when), "operationType": "text_to_image",
              "status": "succeeded", "createdAt": iso(when), "prompt": "a cat",
              "provider": {"name": "local", "model": "m"}, **fields}
    return history.save(record, outputs=[png_bytes()] if outputs is None else outputs)


def a_mixed_history(history) -> list[str]:
    """Operations of several types, statuses and days; a workflow with steps;
    one updated, one trashed, one deleted."""
    made = [save(history, days_ago=d, operationType=t, status=s, prompt=p)["operationId"]
            for d, t, s, p in [(0, "text_to_image", "succeeded", "a red barn"),
                               (0, "text_to_image", "failed", "a red lighthouse"),
                               (1, "text_to_video", "succeeded", "a blue lighthouse"),
                               (3, "img_to_img", "succeeded", "a red fox"),
                               (3, "text_to_video", "failed", "red")]]
    flow = save(history, operationType="edit_then_video", prompt="a red flow")["operationId"]
    made += [flow] + [save(history, operationType="image_edit_single", parentId=flow,
                           prompt="a red step")["operationId"] for _ in range(2)]
    history.update(made[0], lambda r: {"status": "failed"})
    history.trash(made[2])
    history.delete(made[3])
    return made


def plain(history) -> list[dict]:
    """Every record on disk, read one by one: what the index must agree with."""
    return [r for _, r, _ in history.iter_records()]


SUMMARY_FILTERS = [Filters(), Filters(trash="exclude"), Filters(trash="only"),
                   Filters(toplevel=True), Filters(toplevel=True, trash="exclude"),
                   Filters(types=["text_to_image", "text_to_video"], status="failed"),
                   Filters(status="succeeded", trash="exclude", toplevel=True)]


def expected_stats(records) -> dict:
    by_type = {}
    for r in records:
        entry = by_type.setdefault(r["operationType"], {"count": 0, "succeeded": 0,
                                                         "failed": 0, "bytes": 0})
        entry["count"] += 1
        entry[r["status"]] += 1
        entry["bytes"] += sum(f.get("bytes") or 0 for f in r["inputImages"] + r["outputs"])
    return by_type


def check_against_the_records(history) -> None:
    records = plain(history)
    for filters in SUMMARY_FILTERS:
        chosen = [r for r in records if filters.matches(r)]
        assert history.count(filters) == len(chosen), filters
        stats = history.stats(filters)
        assert {t: {k: v for k, v in e.items() if k != "durationMs"}
                for t, e in stats["byType"].items()} == expected_stats(chosen), filters
        days = {}
        for r in chosen:
            days[r["createdAt"][:10]] = days.get(r["createdAt"][:10], 0) + 1
        assert stats["perDay"] == dict(sorted(days.items())), filters


def test_the_summary_agrees_with_the_records_after_saves_updates_trash_and_deletes(history):
    a_mixed_history(history)
    check_against_the_records(history)


def test_the_summary_agrees_with_the_records_after_a_reindex_and_a_catch_up(history):
    made = a_mixed_history(history)
    assert history.reindex()["added"] == len(made) - 1
    check_against_the_records(history)
    history.index.remove([made[1]])  # the index lost a row: the catch-up puts it back
    assert history.keeper.catch_up(history.index)["added"] == 1
    check_against_the_records(history)


def test_the_summary_follows_saves_made_after_a_reindex(history):
    a_mixed_history(history)
    history.reindex()
    save(history, operationType="pose_transfer", prompt="a late lighthouse")
    history.trash(save(history, operationType="pose_transfer")["operationId"])
    check_against_the_records(history)
    assert [r["prompt"] for r in history.page(Filters(q="late"), 5).operations] == \
        ["a late lighthouse"]


def nearest_ranks(values) -> tuple:
    """Median and 95th percentile by nearest rank, NULLs first (SQLite's order)."""
    ordered = sorted(values, key=lambda v: (v is not None, v if v is not None else 0))
    n = len(ordered)
    return ordered[(n + 1) // 2 - 1], ordered[max(1, -(-95 * n // 100)) - 1]


@pytest.mark.parametrize("seed", range(4))
def test_percentiles_through_the_buckets_are_the_nearest_ranks(history, seed):
    rng = random.Random(seed)
    pool = [None, -3.5, 0, 0.4, 0.999, 1, 1.5, 9.99, 10, 99.9, 100, 101, 999.5, 1000, 1e12]
    durations = {t: [rng.choice(pool) if rng.random() < 0.3 else
                     round(rng.lognormvariate(5, 2), rng.choice((0, 1, 3)))
                     for _ in range(rng.randrange(1, 300))]
                 for t in ("text_to_image", "text_to_video")}
    history.index.add([{"operationId": f"20261101_{t[8:]}{n:05d}", "operationType": t,
                        "status": rng.choice(("succeeded", "failed")),
                        "createdAt": "2026-11-01T00:00:00.000Z", "durationMs": d}
                       for t, values in durations.items() for n, d in enumerate(values)])
    stats = history.stats(Filters())["byType"]
    for t, values in durations.items():
        median, p95 = nearest_ranks(values)
        assert stats[t]["durationMs"] == {"median": median, "p95": p95}
    failed = history.stats(Filters(status="failed"))["byType"]
    rows = history.index.execute("SELECT type, duration_ms FROM operations "
                                 "WHERE status = 'failed'").fetchall()
    for t in failed:
        median, p95 = nearest_ranks([d for typ, d in rows if typ == t])
        assert failed[t]["durationMs"] == {"median": median, "p95": p95}


@pytest.mark.parametrize("duration, bucket", [(1, 101), (1.5, 101), (9.99, 109), (10, 210),
                                               (57.4, 257), (99.9, 299), (100, 310),
                                               (1234, 412), (0.5, 0), (-2, 0)])
def test_a_duration_falls_in_the_bucket_whose_floor_is_below_it(history, duration, bucket):
    history.index.add([{"operationId": "20261101_aaaaaa", "durationMs": duration}])
    assert history.index.execute("SELECT bucket FROM durations").fetchall() == [(bucket,)]
    if bucket:
        assert index_module.bucket_floor(bucket) <= duration < \
            index_module.bucket_floor(bucket + 1 if bucket % 100 < 99 else bucket + 11)


def test_a_search_without_the_trash_counts_only_what_is_not_trashed(history):
    hits = [save(history, prompt=f"a red barn {n}")["operationId"] for n in range(3)]
    save(history, prompt="a blue barn")
    history.trash(hits[0])
    page = history.page(Filters(q="red", trash="exclude"), 2)
    assert (page.total, [r["operationId"] for r in page.operations]) == (2, hits[:0:-1])
    assert history.page(Filters(q="red"), 2).total == 3
    assert history.page(Filters(q="red", trash="only"), 2).total == 1


def test_a_reindex_leaves_every_index_and_trigger_in_place(history):
    a_mixed_history(history)
    names = {r[0] for r in history.index.execute("SELECT name FROM sqlite_master")}
    history.reindex()
    assert {r[0] for r in history.index.execute("SELECT name FROM sqlite_master")} == names
    assert history.index.get_meta("refill") is None


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_an_index_whose_refill_died_half_way_is_rebuilt(history, tmp_path):
    made = a_mixed_history(history)
    history.index.execute("INSERT INTO meta VALUES ('refill', ?)", (f"{dead_pid()} 0",))
    history.index.execute("DROP INDEX by_created")  # as the refill left it
    again = HistoryService(history.root, history.index.path)
    again.start(wait=True)
    again.keeper._thread.join(20)
    assert again.keeper.problem is None
    assert sorted(again.index.ids()) == sorted(i for i in made if i != made[3])
    assert again.index.execute("SELECT 1 FROM sqlite_master WHERE name = 'by_created'"
                               ).fetchone() == (1,)


def test_a_running_server_finds_a_refill_that_died_at_its_next_query(history):
    """The refilling process died after this one had opened the index: the
    next query finds it, answers from the records and rebuilds the index."""
    op_id = save(history)["operationId"]
    server = HistoryService(history.root, history.index.path)  # this one breaks, on purpose
    server.start(wait=True)
    assert server.count(Filters()) == 1  # connected, index in use
    history.index.execute("INSERT INTO meta VALUES ('refill', ?)", (f"{dead_pid()} 0",))
    history.index.execute("DELETE FROM operations")  # as the refill left it
    page = server.page(Filters(), 10)
    assert ([r["operationId"] for r in page.operations], page.degraded) == ([op_id], True)
    server.keeper._thread.join(20)
    assert (server.keeper.problem, server.count(Filters())) == (None, 1)


def test_an_index_being_refilled_by_a_live_process_is_kept_but_not_read(history):
    """Another process (``flask history reindex``) refills the index: it is
    not broken, but holds only part of the rows until the refill ends, so the
    history answers from the records meanwhile and says so."""
    op_id = save(history)["operationId"]
    history.index.execute("DELETE FROM operations")  # the refill has not reached it yet
    history.index.execute("INSERT INTO meta VALUES ('refill', ?)",
                          (f"{os.getppid()} {time.time()}",))
    again = HistoryService(history.root, history.index.path)
    again.start(wait=True)
    page = again.page(Filters(), 10)
    assert ([r["operationId"] for r in page.operations], page.degraded) == ([op_id], True)
    assert again.count(Filters()) is None
    health = again.health()
    assert (health["index"], health["indexProblem"], health["indexProgress"]) == (
        "rebuilding", f"being rebuilt by process {os.getppid()}", None)
    assert again.keeper.problem is None  # not taken for broken: nothing rebuilds it here
    history.index.execute("DELETE FROM meta WHERE key = 'refill'")
    again.keeper.catch_up(again.index)  # as the refill's end leaves it: every row
    assert (again.count(Filters()), again.page(Filters(), 10).degraded) == (1, False)
    assert again.health()["index"] == "ok"


def test_many_records_are_read_by_reader_processes_alike(history, monkeypatch):
    made = a_mixed_history(history)
    (history.root / "20261101_bad.json").write_text("{ not json")
    serial = history.reindex()
    rows = history.index.execute("SELECT * FROM operations ORDER BY id").fetchall()
    monkeypatch.setattr(rebuild, "PARALLEL_FROM", 1)
    monkeypatch.setattr(rebuild, "READ_BATCH", 2)
    forked = []
    real_pool = rebuild._readers

    def readers(count):
        forked.append(count)
        return real_pool(count)

    monkeypatch.setattr(rebuild, "_readers", readers)
    with history.locks.shared(["20261101"]):  # a day lock held while the readers fork
        parallel = history.reindex()
    assert forked == [len(made)]  # the deleted one is gone, the bad one is read and skipped
    assert (parallel["added"], parallel["skipped"]) == (serial["added"], serial["skipped"]) \
        == (len(made) - 1, {"20261101_bad.json": serial["skipped"]["20261101_bad.json"]})
    assert history.index.execute("SELECT * FROM operations ORDER BY id").fetchall() == rows
    with history.locks.exclusive(["20261101"]):  # no reader kept the day's lock
        pass


def test_catching_up_never_lists_the_whole_folder_at_once(history, monkeypatch):
    made = a_mixed_history(history)
    empty_index(history.index)

    def scan():
        raise AssertionError("the catch-up holds the whole listing")

    monkeypatch.setattr(history.folder, "scan", scan)
    assert history.keeper.catch_up(history.index)["added"] == len(made) - 1
    assert history.index.execute("SELECT name FROM sqlite_temp_master WHERE name != 'terms'"
                                 ).fetchall() == []  # terms: the full-text index's words


def test_rows_written_while_the_index_rebuilds_are_not_lost(history):
    before = {save(history)["operationId"] for _ in range(3)}
    real, late = history.keeper.on_disk, []

    def on_disk(skipped):
        yield from real(skipped)
        if history.keeper.problem and not late:  # a save lands just after the folder scan
            late.append(save(history)["operationId"])

    history.keeper.on_disk = on_disk
    history.keeper.broken = rebuild.IndexKeeper.broken.__get__(history.keeper)
    history.keeper.broken(sqlite3.DatabaseError("database disk image is malformed"))
    history.keeper._thread.join(20)
    assert history.keeper.problem is None and len(late) == 1
    assert set(history.index.ids()) == before | set(late)


def test_a_record_listed_twice_loose_and_archived_is_served_loose(history):
    op_id = save(history, days_ago=10)["operationId"]
    history.compress(timedelta(days=5))
    history.decompress()
    assert history.locations() == {op_id: ""}
    assert layout.day_of(op_id) not in history.locations().values()


def test_reader_processes_inherit_no_lock_of_the_server(history, monkeypatch):
    """The readers start afresh (spawned): a lock another thread of the server
    holds (here one that reading would take) cannot hang them, as it did when
    they were forked from a gunicorn worker's background thread."""
    import threading
    a_mixed_history(history)
    held, release = threading.Lock(), threading.Event()
    real_rows = rebuild.rows_of

    def rows_taking_the_lock(*args):
        with held:
            yield from real_rows(*args)

    monkeypatch.setattr(rebuild, "PARALLEL_FROM", 1)
    monkeypatch.setattr(rebuild, "rows_of", rows_taking_the_lock)
    holder = threading.Thread(target=lambda: (held.acquire(), release.wait(), held.release()))
    holder.start()
    try:
        done = []
        worker = threading.Thread(target=lambda: done.append(history.reindex()), daemon=True)
        worker.start()
        worker.join(60)
        assert done, "the reader processes hung on a lock held in the server"
    finally:
        release.set()
        holder.join()


def test_a_rebuild_reads_the_loose_copy_of_a_record_also_in_an_archive(history):
    """A record both loose and archived (a decompress cut short) is read loose
    by a rebuild, whatever the order the folder lists it in."""
    from generation_studio.storage import archive
    op_id = save(history, days_ago=10, prompt="a cat")["operationId"]
    history.compress(timedelta(days=5))
    name = layout.record_name(op_id)
    record = json.loads(archive.read(history.root, [name])[name])
    (history.root / name).write_text(json.dumps({**record, "prompt": "a loose dog"}))
    history.reindex()
    assert [op["prompt"] for op in history.page(Filters(q="dog"), 10).operations] == \
        ["a loose dog"]
    assert history.page(Filters(q="cat"), 10).operations == []


def day_is_locked(history, day: str) -> bool:
    import fcntl
    with open(history.root / layout.LOCK_FOLDER / f"{day}.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def test_reader_processes_read_a_day_while_the_one_before_is_written_each_under_its_lock(
        history, monkeypatch):
    """With reader processes, the next day's records are read while a day's
    rows are written; each day's rows are written while its lock is held, and
    every lock is let go, also when writing fails."""
    made = [save(history, days_ago=d)["operationId"] for d in (0, 0, 1, 2, 2, 3)]
    for n, op_id in enumerate(made[2:5], 2):  # each uses the one before: lineage to keep
        history.update(op_id, lambda r, n=n: {"derivedFrom": [
            {"operationId": made[n - 1], "file": f"{made[n - 1]}_out.png", "relation": "input"}]})
    lineage = history.index.execute("SELECT * FROM derived ORDER BY id").fetchall()
    bad = f"{layout.day_of(made[0])}_bad.json"  # in the last day read
    (history.root / bad).write_text("{ not json")
    monkeypatch.setattr(rebuild, "PARALLEL_FROM", 1)
    monkeypatch.setattr(rebuild, "READ_BATCH", 1)
    real_add = history.index.add_rows
    written = []  # (days of the rows written, days locked then)

    def add_rows(rows, sources):
        days = sorted({layout.day_of(r[0]) for r in rows})
        written.append((days, [d for d in sorted({layout.day_of(i) for i in made})
                               if day_is_locked(history, d)]))
        return real_add(rows, sources)

    monkeypatch.setattr(history.index, "add_rows", add_rows)
    summary = history.reindex()
    assert (summary["added"], list(summary["skipped"])) == (len(made), [bad])
    assert len(lineage) == 3
    assert history.index.execute("SELECT * FROM derived ORDER BY id").fetchall() == lineage
    days = sorted({layout.day_of(i) for i in made})
    assert [w[0] for w in written] == [[d] for d in days]
    # While a day is written, it and the next day (being read) are locked, none other
    assert [w[1] for w in written] == [days[n:n + 2] for n in range(len(days))]
    assert sorted(history.index.ids()) == sorted(made)
    assert not any(day_is_locked(history, d) for d in days)

    def failing(rows, sources):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(history.index, "add_rows", failing)
    with pytest.raises(sqlite3.OperationalError) as caught:
        history.keeper.catch_up(history.index, rebuild=True)
    assert caught.value.__traceback__ is not None  # it keeps the rebuild's frame, and its locks
    assert not any(day_is_locked(history, d) for d in days)
