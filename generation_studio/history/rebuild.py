"""IndexKeeper: keeps the index in step with the records, and repairs it.

At start (in the background) it compares the index's ids with the records'
and catches up when they differ. Whenever the index fails — missing tables,
garbage, a truncated file, another version, a read-only file or folder — it
logs one line, the history answers from the folder meanwhile, and a thread
rebuilds the index: in its own place when the broken files can be removed,
else in the system's temp folder. Rows written while it rebuilds are kept
aside and applied when it is done, so none is lost.
"""

import hashlib
import sqlite3
import tempfile
import threading
import time
import zlib
from pathlib import Path

from ..storage import layout
from .index import OperationIndex

BATCH = 1000
# What a broken index raises: SQLite's errors, or the OS's for its file or folder.
INDEX_ERRORS = (sqlite3.Error, OSError)
READY_WAIT_SECONDS = 3  # a query at start-up waits this long for the first check
RETRY_SECONDS = (5, 30, 120)


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
        self._thread = None

    # What the service calls -------------------------------------------------------
    def query(self, use, fallback):
        """``use(index)``, or ``fallback()`` when the index cannot be used."""
        self.ready.wait(READY_WAIT_SECONDS)
        if self.problem is None:
            try:
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
        state = "rebuilding" if self.problem else "ok" if self.ready.is_set() else "checking"
        return {"index": state, "indexPath": str(self.index.path), "indexProblem": self.problem,
                "indexProgress": self.progress_text() if self.problem else None,
                "skipped": len(self.skipped),
                "skippedFiles": [f"{n}: {why}" for n, why in sorted(self.skipped.items())[:50]]}

    def progress_text(self) -> str:
        done, total = self.progress
        return f"{done} of {total} records read"

    # Start-up ---------------------------------------------------------------------
    def start(self, wait: bool = False, then=None) -> None:
        """Check the index against the records, then call ``then()``; in the
        background unless ``wait``."""
        def run():
            self._check()
            if then:
                then()
        if wait:
            run()
        else:
            self.ready.clear()
            threading.Thread(target=run, daemon=True, name="index-check").start()

    def _check(self) -> None:
        try:
            # The index first, then the folder: a record saved in between is
            # then found missing and added, never taken for one that is gone.
            indexed = ids_fingerprint(self.index.ids())
            listing = self.service.folder.scan()
            if indexed != ids_fingerprint(self.service.locations(listing)):
                summary = self.catch_up(self.index)
                self.service.log.info("History index caught up: %d added, %d removed (%s)",
                                      summary["added"], summary["removed"], self.index.path)
            else:
                self.skipped = dict(listing.skipped)
            self._log_skipped()
        except INDEX_ERRORS as e:
            if self.service.root.is_dir():
                self.broken(e)
            else:
                self.service.log.error("Storage folder %s cannot be read (%s)",
                                       self.service.root, e)
        finally:
            self.ready.set()

    def _log_skipped(self) -> None:
        if self.skipped:
            shown = "; ".join(f"{n}: {why}" for n, why in sorted(self.skipped.items())[:5])
            more = f" (and {len(self.skipped) - 5} more)" if len(self.skipped) > 5 else ""
            self.service.log.warning("History: skipped %d file(s) that are not readable "
                                     "records — %s%s", len(self.skipped), shown, more)

    # Catching up and rebuilding ---------------------------------------------------
    def catch_up(self, index, rebuild=False, progress=None) -> dict:
        """Make ``index`` match the records on disk; return what changed.

        Rows of operations that are gone are removed; records the index lacks
        (all of them with ``rebuild``) are read and added, one day at a time
        under that day's shared lock, so a delete never races a row back in.
        """
        if rebuild:
            index.clear()
        in_index = set(index.ids())  # before the folder: see _check
        listing = self.service.folder.scan()
        where = self.service.locations(listing)
        gone = in_index - where.keys()
        index.remove(gone)
        missing = sorted(where.keys() - in_index)
        skipped = dict(listing.skipped)
        self.progress = [0, len(missing)]
        added = unreadable = 0
        for day, ids in _by_day(missing):
            with self.service.locks.shared([day]):
                batch = []
                for op_id, record, error in self.service.iter_records(ids, where):
                    self.progress[0] += 1
                    if progress:
                        progress(1)
                    if isinstance(error, FileNotFoundError):
                        continue  # deleted since the folder was listed
                    if error is not None:
                        place = f"archives/{where[op_id]}.zip:" if where.get(op_id) else ""
                        skipped[f"{place}{layout.record_name(op_id)}"] = _reason(error)
                        unreadable += 1
                        continue
                    batch.append(record)
                    if len(batch) >= BATCH:
                        index.add(batch)
                        added, batch = added + len(batch), []
                index.add(batch)
                added += len(batch)
        self.skipped = skipped
        return {"added": added, "removed": len(gone), "skipped": skipped,
                "total": len(where) - unreadable}

    def rebuild_now(self, progress=None) -> dict:
        """``flask history reindex``: rebuild in place (repairing a broken file)."""
        try:
            return self.catch_up(self.index, rebuild=True, progress=progress)
        except INDEX_ERRORS as e:
            self.service.log.warning("The history index %s is broken (%s): making a new one",
                                     self.index.path, e)
            index = self._fresh_index()
            summary = self.catch_up(index, progress=progress)
            self._swap_in(index)
            return summary

    def broken(self, error: Exception) -> None:
        """The index failed: answer from the folder and rebuild in the background."""
        with self._lock:
            if self.problem is not None:
                return
            self.problem = f"{type(error).__name__}: {error}"
        self.service.log.error("The history index %s cannot be used (%s): the history answers "
                               "from the records while it is rebuilt in the background",
                               self.index.path, error)
        self._thread = threading.Thread(target=self._rebuild, daemon=True, name="index-rebuild")
        self._thread.start()

    def _rebuild(self) -> None:
        for attempt in range(len(RETRY_SECONDS) + 1):
            try:
                index = self._fresh_index()
                summary = self.catch_up(index)
                self._swap_in(index)
                self.service.log.info("History index rebuilt: %d operation(s) (%s)",
                                      summary["added"], index.path)
                self._log_skipped()
                return
            except INDEX_ERRORS as e:
                if attempt == len(RETRY_SECONDS):
                    self.service.log.error("Could not rebuild the history index (%s); it will "
                                           "be tried again at the next start", e)
                    return
                time.sleep(RETRY_SECONDS[attempt])

    def _swap_in(self, index: OperationIndex) -> None:
        with self._lock:
            for kind, items in self._pending:
                index.add(items) if kind == "add" else index.remove(items)
            self._pending = []
            self.index, self.problem = index, None

    def _fresh_index(self) -> OperationIndex:
        """An empty, writable index: in place of the broken one, or in the
        system's temp folder when its own place cannot be written."""
        place = Path(self.index.path)
        fallback = Path(tempfile.gettempdir()) / (
            "generation-studio-index-"
            + hashlib.sha256(str(self.service.root.resolve()).encode()).hexdigest()[:16]
        ) / place.name
        for path in (place, fallback):
            try:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
                index = OperationIndex(path)
                index.swap_meta("created", None, str(time.time()))  # proves it can be written
                return index
            except (OSError, sqlite3.Error) as e:
                self.service.log.warning("Cannot make the history index at %s (%s)", path, e)
        raise OSError(f"no writable place for the history index ({place}, {fallback})")


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


def _reason(error: Exception) -> str:
    return str(error) if not isinstance(error, OSError) else (error.strerror or str(error))
