"""IndexKeeper: keeps the index in step with the records, and repairs it.

At start (in the background) it compares the index's ids with the records'
and catches up when they differ. Whenever the index fails — missing tables,
garbage, a truncated file, another version, a read-only file or folder — it
logs one line, the history answers from the folder meanwhile, and a thread
rebuilds the index: in its own place when the broken files can be removed,
else in the system's temp folder. Rows written while it rebuilds are kept
aside and applied when it is done, so none is lost.
"""

import contextlib
import fcntl
import hashlib
import json
import multiprocessing
import os
import sqlite3
import tempfile
import threading
import time
import zlib
from pathlib import Path

from ..storage import archive, layout
from .index import (IndexBusy, OperationIndex, OtherVersion, file_identity, hold, row_of,
                    sources_of)
from .records import UNFINISHED

BATCH = 5000  # rows per transaction, records read per pass
SEEN_BATCH = 50_000  # ids of the folder's listing sorted and stored at once
# What a broken index raises: SQLite's errors, or the OS's for its file or folder.
INDEX_ERRORS = (sqlite3.Error, OSError)
READY_WAIT_SECONDS = 3  # a query at start-up waits this long for the first check
SKIPPED_NAMED = 50  # files not read as records named in /api/health (all are counted)
RETRY_SECONDS = (5, 30, 120)
REFILL_POLL_SECONDS = 0.5  # how often a process waiting for another's refill looks again


def ids_fingerprint(ids) -> tuple[int, int]:
    """(count, sum of CRC32s) of ``ids``: equal sets give equal fingerprints,
    and a difference is all but certain to show."""
    count = total = 0
    for op_id in ids:
        count += 1
        total += zlib.crc32(op_id.encode())
    return count, total


class IndexKeeper:
    def __init__(self, service, index: OperationIndex):
        self.service = service
        self.index = index
        self.problem = None  # why the index is not in use, while it is rebuilt
        self.progress = [0, 0]
        self.skipped = {}  # file name -> why it is not read as a record
        self.ready = threading.Event()  # cleared while the start-up check runs
        self.ready.set()
        self._lock = threading.Lock()
        self._pending = []  # ("add", records) / ("remove", ids) while rebuilding
        self._thread = None  # the background rebuild
        self._rebuilding = threading.Lock()  # one rebuild at a time
        self._rebuilt = None  # what the last background rebuild (or fill of an empty index) made
        self._started = time.time()
        self._broken_file = None  # the index file that failed, held open (see _rebuilt_elsewhere)
        self._telling = False  # a refill here writes its progress for other processes
        self._broken_at = 0.0

    # What the service calls -------------------------------------------------------
    def query(self, use, fallback):
        """``use(index)``, or ``fallback()`` when the index cannot be used."""
        self.ready.wait(READY_WAIT_SECONDS)
        if self.problem is None:
            try:
                if self.index.refilled_by() is None:  # else it holds only part of the rows
                    return use(self.index)
            except INDEX_ERRORS as e:
                self.broken(e)
        return fallback()

    def add(self, records) -> None:
        self._write("add", records, lambda ix: ix.add(records))

    def remove(self, ids) -> None:
        ids = list(ids)
        self._write("remove", ids, lambda ix: ix.remove(ids))

    def _write(self, kind, items, do) -> None:
        with self._lock:
            if self.problem is not None:
                self._pending.append((kind, items))
                return
        try:
            do(self.index)
        except INDEX_ERRORS as e:
            self.broken(e)
            with self._lock:
                self._pending.append((kind, items))

    def health(self) -> dict:
        refiller = None if self.problem else self._refiller()
        problem = self.problem or (refiller and f"being rebuilt by process {refiller}")
        state = "rebuilding" if problem else "ok" if self.ready.is_set() else "checking"
        mine = self.problem or refiller == os.getpid()
        return {"index": state, "indexPath": str(self.index.path), "indexProblem": problem,
                "indexProgress": self.progress_text() if mine else
                self._told_progress() if refiller else None,
                **self._skipped_report()}

    def _found_skipped(self, index, skipped: dict) -> None:
        """Keep what the folder holds that is not a record: here, and in the
        index for every other process (web workers, the job worker), so that
        all report the same, whichever listed the folder last. A process that
        left the start-up to another's refill never lists it itself."""
        self.skipped = skipped
        report = json.dumps(_summary(skipped))
        with contextlib.suppress(*INDEX_ERRORS):
            if index.get_meta("skipped") != report:  # most starts find what the last did
                index.set_meta("skipped", report)

    def _skipped_report(self) -> dict:
        """``skipped`` and ``skippedFiles`` as the index holds them, else as
        this process found them (the index broken, or older than this)."""
        if self.problem is None:
            try:
                report = json.loads(self.index.get_meta("skipped") or "null")
            except (*INDEX_ERRORS, ValueError):
                report = None
            if isinstance(report, dict) and set(report) == {"skipped", "skippedFiles"}:
                return report
        return _summary(self.skipped)

    def _told_progress(self) -> str | None:
        """How far another process's refill has gone, as it said in the index."""
        try:
            return self.index.get_meta("progress")
        except INDEX_ERRORS:
            return None

    def _refiller(self) -> int | None:
        try:
            return self.index.refilled_by()
        except INDEX_ERRORS:
            return None  # the next query finds it broken and says so

    def progress_text(self) -> str:
        done, total = self.progress
        return f"{done} of {total} records read"

    # Start-up ---------------------------------------------------------------------
    def start(self, wait: bool = False, then=None) -> None:
        """Check the index against the records, then call ``then()``; in the
        background unless ``wait``."""
        def run():
            self.check()
            if then:
                then()
        if wait:
            run()
        else:
            self.ready.clear()
            threading.Thread(target=run, daemon=True, name="index-check").start()

    def check(self, again: bool = False) -> None:
        """Compare the index's ids with the records' and catch up when they
        differ: at start, and ``again`` in the server's recovery turns, for
        records another program put into the folder or took out of it.

        Again, a save or delete made while the folder was listed is not a
        difference (the index is asked before and after), a record known to
        be unreadable is not read at every turn (it is read again once mended
        and reindexed), and the skipped files are logged only when they change.
        """
        if again and self.problem is not None and not (self._thread and self._thread.is_alive()):
            self.service.log.info("Trying again to rebuild the history index (%s)", self.problem)
            self._start_rebuild()  # it gave up: the storage may be back
            return
        if again and (self.problem is not None or not self.ready.is_set()):
            return  # a rebuild, or the start-up's check, is under way
        if again and self._back_in_place():
            return
        told = _summary(self.skipped)
        try:
            refiller = self.index.refilled_by()
            if refiller not in (None, os.getpid()):
                raise IndexBusy(refiller)
            # The index first, then the folder: a record saved in between is
            # then found missing and added, never taken for one that is gone.
            indexed = ids_fingerprint(self.index.ids())
            skipped = {}
            found = ids_fingerprint(self._readable(skipped, self.skipped if again else {}))
            if found != indexed and not (again and found == ids_fingerprint(self.index.ids())):
                summary = self.catch_up(self.index)
                if indexed == (0, 0):  # every record read, as a rebuild reads them
                    self._rebuilt = summary
                self.service.log.info("History index caught up: %d added, %d removed (%s)",
                                      summary["added"], summary["removed"], self.index.path)
            else:
                self._found_skipped(self.index, skipped)
            if again:
                self._refresh_unfinished()
            if not again or _summary(self.skipped) != told:
                self._log_skipped()
        except IndexBusy as e:  # that process's refill will hold every record
            if not again:
                self.service.log.info("The history index is being rebuilt by process %d: "
                                      "the history answers from the records until it is "
                                      "done", e.pid)
        except INDEX_ERRORS as e:
            if self.service.root.is_dir():
                self.broken(e)
            else:
                self.service.log.error("Storage folder %s cannot be read (%s)",
                                       self.service.root, e)
        finally:
            self.ready.set()

    def _back_in_place(self) -> bool:
        """An index made in the temp folder while its own place could not be
        written moves back there once it can (a process started since uses
        that place: two indexes would each miss the other's changes)."""
        place = Path(self.service.index_path)
        if Path(self.index.path) == place:
            return False
        try:
            place.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        if not os.access(place.parent, os.W_OK) or \
                (place.exists() and not os.access(place, os.W_OK)):
            return False
        with self._lock:
            if self.problem is not None:
                return False
            self.problem = f"moving back to {place} from the temp folder"
            self._broken_at = time.time()
            with contextlib.suppress(OSError):
                self._broken_file = hold(self.index.path)
        self.service.log.info("The history index's own place %s can be written again: the "
                              "index moves back there", place)
        self._start_rebuild()
        return True

    def _refresh_unfinished(self) -> None:
        """Rows still queued or running whose record has ended: written to
        another index while two were in use, say. The row is made to say what
        the record says, so that no operation is shown unfinished for good."""
        ended = [r for r in self.service.get_many(self.index.with_status(UNFINISHED)).values()
                 if r["status"] not in UNFINISHED]
        if ended:
            self.index.add(ended)
            self.service.log.info("History index: %d operation(s) it showed unfinished had "
                                  "ended; their rows now say so", len(ended))

    def _readable(self, skipped: dict, unreadable: dict):
        """The ids of ``on_disk`` but those of ``unreadable`` records (kept in
        ``skipped`` while they are there)."""
        for op_id, where in self.on_disk(skipped):
            name = _place(op_id, where)
            if name in unreadable:
                skipped[name] = unreadable[name]
            else:
                yield op_id

    def on_disk(self, skipped: dict):
        """``(id, where its record is)`` of every record, streamed: archived
        ones (the archive's day), then loose ones (""); files that are not
        records go into ``skipped``."""
        root = self.service.root
        before = archive.versions(root)
        yield from self._archived(before, skipped)
        for kind, name, what in self.service.folder.walk(records_only=True):
            if kind == "record":
                yield what, ""
            elif kind == "skipped":
                skipped[name] = what
        # A day packed while the folder was listed had its records taken out of
        # the folder before the listing came to them: its zip is listed again.
        # (One unpacked meanwhile was listed from its zip, before.) An id may
        # then come twice: wherever it is when read, it is found (``iter_records``).
        after = archive.versions(root)
        yield from self._archived([d for d, v in after.items() if before.get(d) != v], skipped)

    def _archived(self, days, skipped: dict):
        for day in days:
            try:
                names = archive.names(self.service.root, day)
            except archive.Unreadable as e:
                skipped[e.name] = str(e)
                continue
            for name in names:
                if layout.record_id(name):
                    yield layout.record_id(name), day

    def _log_skipped(self) -> None:
        if self.skipped:
            self.service.log.warning("History: skipped %d file(s) that are not readable "
                                     "records — %s", len(self.skipped),
                                     skipped_text(self.skipped, "`flask history reindex` "
                                                                "names them all"))

    # Catching up and rebuilding ---------------------------------------------------
    def catch_up(self, index, rebuild=False, progress=None) -> dict:
        """Make ``index`` match the records on disk; return what changed.

        Rows of operations that are gone are removed; records the index lacks
        (all of them with ``rebuild``) are read and added, one day at a time
        under that day's shared lock, so a delete never races a row back in.
        Memory stays flat whatever the number of records: the index's ids and
        the folder's are compared in temporary tables of SQLite, and an empty
        index is filled in bulk (``OperationIndex.refill``). A ``rebuild``
        empties the index as its refill starts: other processes see it marked
        as being refilled, never empty.
        """
        with index.refill() if rebuild else contextlib.nullcontext():
            return self._catch_up(index, rebuild, progress)

    def _catch_up(self, index, refilling: bool, progress) -> dict:
        conn = index.connect()
        skipped = {}
        try:
            empty = self._snapshot(conn, skipped)
            gone = 0
            for ids in _chunks(conn, "SELECT id FROM temp.indexed WHERE id > ? AND id NOT IN "
                                     "(SELECT id FROM temp.seen) ORDER BY id LIMIT ?"):
                gone += self._remove_gone(index, [i for i, in ids])
            missing = conn.execute("SELECT COUNT(*) FROM temp.seen WHERE id NOT IN "
                                   "(SELECT id FROM temp.indexed)").fetchone()[0]
            self.progress = [0, missing]
            bulk = empty and missing and not refilling
            self._telling = bool(bulk or refilling)  # other processes' health shows the progress
            with index.refill(empty=False) if bulk else contextlib.nullcontext():
                added, unreadable = self._add_missing(conn, index, skipped, progress)
            total = conn.execute("SELECT COUNT(*) FROM temp.seen").fetchone()[0]
        finally:
            conn.execute("DROP TABLE IF EXISTS temp.seen")
            conn.execute("DROP TABLE IF EXISTS temp.indexed")
        self._found_skipped(index, skipped)
        return {"added": added, "removed": gone, "skipped": skipped,
                "total": total - unreadable}

    def _remove_gone(self, index, ids: list) -> int:
        """Remove from ``index`` those of ``ids`` (sorted; not in the listing)
        whose record is gone, looked for again under each day's lock: one moved
        into its day's archive or out of it while the folder was listed was in
        neither place when each was listed. How many were removed."""
        removed = 0
        for day, batch in _by_day(ids):
            with self.service.locks.shared([day]):
                try:
                    archived = set(archive.names(self.service.root, day))
                except archive.Unreadable:
                    archived = set()  # none of its records can be read: as listed
                gone = [i for i in batch if layout.record_name(i) not in archived
                        and not self.service.folder.is_regular(layout.record_name(i))]
                index.remove(gone)
            removed += len(gone)
        return removed

    def _snapshot(self, conn, skipped: dict) -> bool:
        """The index's ids (first: see ``check``) into ``temp.indexed``, the
        records on disk into ``temp.seen``; whether the index was empty."""
        conn.execute("DROP TABLE IF EXISTS temp.indexed")
        conn.execute("DROP TABLE IF EXISTS temp.seen")
        conn.execute("CREATE TEMP TABLE indexed (id TEXT PRIMARY KEY) WITHOUT ROWID")
        conn.execute("CREATE TEMP TABLE seen (id TEXT PRIMARY KEY, place TEXT) WITHOUT ROWID")
        conn.execute("INSERT INTO temp.indexed SELECT id FROM main.operations")
        batch = []
        for row in self.on_disk(skipped):
            batch.append(row)
            if len(batch) >= SEEN_BATCH:
                _insert_seen(conn, batch)
                batch = []
        _insert_seen(conn, batch)
        return conn.execute("SELECT COUNT(*) FROM temp.indexed").fetchone()[0] == 0

    def _add_missing(self, conn, index, skipped: dict, progress) -> tuple[int, int]:
        """Read and add the records in ``temp.seen`` but not ``temp.indexed``,
        a batch at a time, each day's under its lock; ``(added, unreadable)``.
        Many records are read and parsed by a pool of processes (the CPU's
        work: JSON and rows), this one writing the index."""
        added = unreadable = 0
        pending = []  # (the day's lock, held; its records being read; where they are)

        def write_until(left: int) -> None:
            nonlocal added, unreadable
            while len(pending) > left:
                n, bad = self._add_read(index, pending, skipped, progress)
                added, unreadable = added + n, unreadable + bad

        with _readers(self.progress[1]) as pool:
            try:
                for day, ids, where in self._groups(conn):
                    # A day's records are read (by the pool) while the day before's
                    # rows are written, each under its own day's lock until written.
                    lock = contextlib.ExitStack()
                    lock.enter_context(self.service.locks.shared([day]))
                    pending.append((lock, self._read(pool, ids, where), where))
                    write_until(1 if pool else 0)
                write_until(0)
            finally:
                for lock, _, _ in pending:
                    lock.close()
        return added, unreadable

    def _groups(self, conn):
        """``(day, ids, where)`` of the records to read, a day (or part of one) at a time."""
        for rows in _chunks(conn, "SELECT id, place FROM temp.seen WHERE id > ? AND id NOT "
                                  "IN (SELECT id FROM temp.indexed) ORDER BY id LIMIT ?"):
            where = dict(rows)
            for day, ids in _by_day(where):
                yield day, ids, where

    def _add_read(self, index, pending: list, skipped: dict, progress) -> tuple[int, int]:
        """Add the rows of the first of ``pending`` and release its lock;
        ``(added, unreadable)``."""
        lock, read, where = pending[0]
        with lock:
            result = self._add_rows(index, read, where, skipped, progress)
        pending.pop(0)
        return result

    def _add_rows(self, index, read, where: dict, skipped: dict, progress) -> tuple[int, int]:
        found, sources, unreadable = [], [], 0
        for op_id, row, its_sources, problem in read:
            self.progress[0] += 1
            if progress:
                progress(1)
            if problem == GONE:
                continue  # deleted since the folder was listed
            if problem is not None:
                skipped[_place(op_id, where[op_id])] = problem
                unreadable += 1
                continue
            found.append(row)
            sources += its_sources
        index.add_rows(found, sources)
        if self._telling:
            index.set_meta("progress", self.progress_text())
        return len(found), unreadable

    def _read(self, pool, ids: list, where: dict):
        """``rows_of`` the records ``ids``: here, or shared among ``pool``'s processes."""
        if pool is None:
            return rows_of(self.service, ids, where)
        jobs = [(str(self.service.root), part, {i: where[i] for i in part})
                for part in (ids[n:n + READ_BATCH] for n in range(0, len(ids), READ_BATCH))]
        return (found for part in pool.imap(_read_in_worker, jobs) for found in part)

    def rebuild_now(self, progress=None) -> dict:
        """``flask history reindex``: rebuild in place (repairing a broken file).

        A rebuild already running in the background (the start-up check found
        the index broken), or a start-up check filling an empty index (none
        was there), is this one: it is followed to its end, not run a second
        time over the same records."""
        for busy in (lambda: not self.ready.is_set(),  # the check, which may start a rebuild
                     lambda: self._thread is not None and self._thread.is_alive()):
            earlier = self._rebuilt
            if busy():
                self._follow(busy, progress)
                if self.problem is None and self._rebuilt is not earlier:  # it made this one
                    return self._rebuilt
        with self._rebuilding:
            try:
                return self.catch_up(self.index, rebuild=True, progress=progress)
            except INDEX_ERRORS as e:
                self.service.log.warning("The history index %s is broken (%s): making a new "
                                         "one", self.index.path, e)
                with self._replacing():
                    index = self._fresh_index()
                    summary = self.catch_up(index, progress=progress)
                    self._swap_in(index)
                return summary

    def _follow(self, busy, progress) -> None:
        """Wait while ``busy()`` (a rebuild, or a fill), passing its progress on to ``progress``."""
        told = 0
        while busy():
            time.sleep(0.2)
            done = self.progress[0]
            if progress and done > told:
                progress(done - told)
                told = done

    def broken(self, error: Exception) -> None:
        """The index failed: answer from the folder and rebuild in the background."""
        with self._lock:
            if self.problem is not None:
                return
            self.problem = f"{type(error).__name__}: {error}"
            self._broken_at = time.time()
            with contextlib.suppress(OSError):
                self._broken_file = hold(self.index.path)
        if isinstance(error, OtherVersion):  # expected after an upgrade: not a fault
            self.service.log.warning("The history index %s was made by another version of the "
                                     "studio (%s): the history answers from the records while it "
                                     "is rebuilt in the background", self.index.path, error)
        else:
            self.service.log.error("The history index %s cannot be used (%s): the history "
                                   "answers from the records while it is rebuilt in the "
                                   "background", self.index.path, error)
        self._start_rebuild()

    def _start_rebuild(self) -> None:
        self._thread = threading.Thread(target=self._rebuild, daemon=True, name="index-rebuild")
        self._thread.start()

    def _rebuild(self) -> None:
        for attempt in range(len(RETRY_SECONDS) + 1):
            try:
                with self._rebuilding, self._replacing():
                    if self.problem is None:  # ``reindex`` repaired it meanwhile
                        return
                    index = self._rebuilt_elsewhere()
                    if index is not None:
                        self._swap_in(index)
                        self.service.log.info("History index rebuilt by another process: "
                                              "using it (%s)", index.path)
                        return
                    index = self._fresh_index()
                    summary = self.catch_up(index)
                    self._swap_in(index)
                    self._rebuilt = summary
                self.service.log.info("History index rebuilt: %d operation(s) (%s)",
                                      summary["added"], index.path)
                self._log_skipped()
                return
            except (INDEX_ERRORS + (IndexBusy,)) as e:  # busy: another filled it first
                if attempt == len(RETRY_SECONDS):
                    self.service.log.error("Could not rebuild the history index (%s); it will "
                                           "be tried again at the next recovery turn", e)
                    return
                time.sleep(RETRY_SECONDS[attempt])

    def _swap_in(self, index: OperationIndex) -> None:
        with self._lock:
            for kind, items in self._pending:
                index.add(items) if kind == "add" else index.remove(items)
            self._pending = []
            old, self.index, self.problem = self.index, index, None
            if self._broken_file is not None:
                os.close(self._broken_file)
                self._broken_file = None
        place, fallback = self._places()
        if Path(old.path) == fallback and Path(index.path) == place:
            # Back in its place: the copy in the temp folder goes (other processes
            # still on it then find it gone, and take this one up).
            old.close()
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    Path(f"{fallback}{suffix}").unlink()
            self.service.log.info("History index back in its place %s; its copy in the temp "
                                  "folder was removed", place)

    def _places(self) -> tuple[Path, Path]:
        """Where the index goes: its own place, else one in the system's temp
        folder (the same for every process sharing the folder)."""
        place = Path(self.service.index_path)
        return place, Path(tempfile.gettempdir()) / (
            "generation-studio-index-"
            + hashlib.sha256(str(self.service.root.resolve()).encode()).hexdigest()[:16]
        ) / place.name

    @contextlib.contextmanager
    def _replacing(self):
        """Held while this process replaces the index file. The processes
        sharing the folder all find it broken at about the same time: one
        rebuilds, the others then take its file up (``_rebuilt_elsewhere``)
        instead of each removing the file another has just made."""
        for folder in (path.parent for path in self._places()):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(folder / "rebuild.lock", os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)
            return
        yield  # no folder to lock in: none to rebuild in either (the rebuild says so)

    def _rebuilt_elsewhere(self) -> OperationIndex | None:
        """The index another process made since this one found its own broken:
        a file other than the broken one in the index's place (or that one,
        refilled since: ``flask history reindex``), or in the temp folder one
        made after this process started; whole and writable. One that another
        process is filling now is waited for: it will be whole."""
        for n, path in enumerate(self._places()):
            try:
                found = file_identity(os.stat(path))
            except OSError:
                continue
            same = self._broken_file is not None and \
                found == file_identity(os.fstat(self._broken_file))
            index = OperationIndex(path)
            try:
                while index.refilled_by() not in (None, os.getpid()):
                    time.sleep(REFILL_POLL_SECONDS)
                made = float(index.get_meta("created") or 0)
                refilled = float(index.get_meta("refilled") or 0)
                if (refilled >= self._broken_at if same else n == 0 or made >= self._started):
                    index.set_meta("checked", str(time.time()))  # proves it can be written
                    return index
            except (INDEX_ERRORS + (ValueError,)):
                pass
            index.close()
        return None

    def _fresh_index(self) -> OperationIndex:
        """An empty, writable index: in place of the broken one, or in the
        system's temp folder when its own place cannot be written."""
        for path in self._places():
            try:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
                index = OperationIndex(path)
                index.swap_meta("created", None, str(time.time()))  # proves it can be written
                return index
            except (OSError, sqlite3.Error) as e:
                self.service.log.warning("Cannot make the history index at %s (%s)", path, e)
        raise OSError("no writable place for the history index "
                      f"({', '.join(map(str, self._places()))})")


GONE = "gone"  # a record deleted since the folder was listed
READ_BATCH = 500  # records a reader process reads per job
PARALLEL_FROM = 20_000  # fewer records are read faster than processes start


def rows_of(service, ids, where):
    """``(id, index row, lineage rows, None)`` for each record of ``ids``, or
    ``(id, None, [], GONE or why it cannot be read)``."""
    for op_id, record, error in service.iter_records(ids, where):
        if error is None:
            yield op_id, row_of(record), sources_of(record), None
        else:
            yield op_id, None, [], GONE if isinstance(error, FileNotFoundError) else \
                _reason(error)


_worker_service = None


def _read_in_worker(job) -> list:
    global _worker_service
    root, ids, where = job
    if _worker_service is None or str(_worker_service.root) != root:
        from .service import HistoryService  # (the service imports this module)
        _worker_service = HistoryService(root, os.devnull)
    return list(rows_of(_worker_service, ids, where))


@contextlib.contextmanager
def _readers(count: int):
    """A pool of reader processes when ``count`` records are many enough, else None."""
    if count < PARALLEL_FROM or (os.cpu_count() or 1) < 2:
        yield None
        return
    # Spawned, not forked: this runs in a background thread of a server with
    # other threads (gunicorn's, the job workers'), and a forked child can
    # inherit a lock one of them held and wait on it for ever (seen at 50,000
    # records under gunicorn). Twice as many as processors: reading files
    # waits on the disk as much as it parses.
    with multiprocessing.get_context("spawn").Pool(2 * os.cpu_count()) as pool:
        yield pool


def _insert_seen(conn, rows) -> None:
    # Loose records come after archived ones: a record in both is served loose
    # (a stable sort keeps that order). Sorted, the rows go into the table's
    # B-tree in a few passes: the folder lists them in no order (3.3 s for
    # 1,000,000, against 8 s unsorted by 5,000).
    rows.sort(key=lambda row: row[0])
    conn.execute("BEGIN")
    conn.executemany("INSERT OR REPLACE INTO temp.seen VALUES (?, ?)", rows)
    conn.execute("COMMIT")


def _chunks(conn, sql: str):
    """The rows of ``sql`` (keyset-paged on the first column: ``> ?``, ``LIMIT ?``)
    a batch at a time, so that the caller may write between batches."""
    last = ""
    while True:
        rows = conn.execute(sql, (last, BATCH)).fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _by_day(ids):
    day, batch = None, []
    for op_id in ids:  # sorted: one day's ids are together
        if layout.day_of(op_id) != day and batch:
            yield day, batch
            batch = []
        day = layout.day_of(op_id)
        batch.append(op_id)
    if batch:
        yield day, batch


def _place(op_id: str, where: str) -> str:
    """How ``skipped`` names a record: its file, or its place in a day's archive."""
    return f"{layout.ARCHIVES}/{where}.zip:{layout.record_name(op_id)}" if where else \
        layout.record_name(op_id)


def skipped_text(skipped: dict, more: str) -> str:
    """The first five files not read as records, with why; ``more`` says
    where to find the others, when there are."""
    shown = "; ".join(f"{n}: {why}" for n, why in sorted(skipped.items())[:5])
    return shown + (f" (and {len(skipped) - 5} more: {more})" if len(skipped) > 5 else "")


def _summary(skipped: dict) -> dict:
    return {"skipped": len(skipped), "skippedFiles": [
        f"{name}: {why}" for name, why in sorted(skipped.items())[:SKIPPED_NAMED]]}


def _reason(error: Exception) -> str:
    return str(error) if not isinstance(error, OSError) else (error.strerror or str(error))
