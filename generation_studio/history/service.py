"""HistoryService: the one piece of code that reads, lists, searches, counts,
deletes, compresses, restores and exports operations.

The API, the pages, the CLI and the admin page all call it, so they cannot
disagree. The records on disk (``storage``) are the truth; the SQLite index
(``index``) is a cache of them. When the index cannot be used — missing,
unreadable, corrupt, of another version, not writable — the service says so
once in the log, answers from the folder (degraded: pages in day order, no
statistics) and rebuilds the index in the background, in its place or, when
that place cannot be written, in the system's temp folder.
"""

import errno
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from .. import events, thumbnails
from ..storage import archive, layout
from ..storage.folder import OperationFolder
from . import records, recovery, retention
from . import trash as trashing
from .filters import FilterError, Filters, parse
from .index import OperationIndex
from .locks import DayLocks
from .rebuild import IndexKeeper

# At most this many records are read to answer one page from the folder.
SCAN_LIMIT = 2000


class NotFound(LookupError):
    """No such operation (or no such file of it)."""


class IndexUnavailable(RuntimeError):
    """What was asked needs the index, which is being rebuilt."""


class ArchiveDamaged(RuntimeError):
    """A day's zip whose members cannot all be read back: deleting from it
    would lose them, and leaving the operation in it would bring it back."""


@dataclass
class Page:
    operations: list
    total: int | None
    next_cursor: str | None
    degraded: bool = False


class HistoryService:
    def __init__(self, root, index_path, logger=None):
        self.folder = OperationFolder(root)
        self.root = self.folder.root
        self.locks = DayLocks(self.root)
        self.log = logger or logging.getLogger(__name__)
        self.index_path = Path(index_path)
        self.keeper = IndexKeeper(self, OperationIndex(index_path))

    def start(self, wait: bool = False) -> None:
        """Create the folder, then check the index and recover what dead
        writers left: in the background (the server answers meanwhile)
        unless ``wait``."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.log.info("Storage folders initialised: %s", self.root)
        except OSError as e:
            # Said once: nothing to check or recover until it can be used (the
            # recovery turns check again then).
            self.log.error("Storage folder %s cannot be used (%s): operations will not be "
                           "saved until it can", self.root, e)
            return
        self.keeper.start(wait=wait, then=self.recover)

    def wait_ready(self) -> None:
        self.keeper.ready.wait()

    def recover(self) -> dict:
        """Remove what dead writers left, reattach lost workflows (``recovery``)."""
        try:
            return recovery.recover(self)
        except OSError as e:
            self.log.error("Recovery of %s failed (%s); it will run again later", self.root, e)
            return {}

    def check_index(self) -> None:
        """Compare the index with the records again (the server's recovery
        turn): records another program put into the folder or took out of it
        are added to the history or removed from it."""
        self.keeper.check(again=True)

    @property
    def index(self) -> OperationIndex:
        return self.keeper.index

    # Writing ----------------------------------------------------------------------
    def new_id(self, when=None) -> str:
        while True:
            op_id = layout.new_id(when)
            if self.folder.regular_file(layout.record_name(op_id)) is None:
                return op_id

    def save(self, record: dict, inputs=(), outputs=()) -> dict:
        """Write a new operation (files, then record, then its index row) and
        return its record. ``inputs`` are ``(bytes, name)`` pairs, ``outputs``
        bytes or paths of temp files of this folder."""
        op_id = record.get("operationId") or self.new_id()
        record = {"operationId": op_id, **record, "schemaVersion": records.SCHEMA_VERSION}
        indexed = []

        def index(record):  # while the folder's fsync runs
            self.keeper.add([record])
            indexed.append(op_id)

        with self.locks.shared([layout.day_of(op_id)]):
            try:
                record = self.folder.write(op_id, record, inputs, outputs, meanwhile=index)
            except BaseException:
                if indexed:  # the files are gone: so is their row
                    self.keeper.remove(indexed)
                raise
        events.operation_saved.send(self, record=record)
        return record

    def update(self, op_id: str, change, outputs=(), durable: bool = True) -> dict | None:
        """Change a record in place, under its day's lock, so that two writers
        never lose each other's change: ``change(record)`` gets the record as
        on disk and returns the fields to set, or None to leave it as it is.
        ``outputs`` (bytes, or temp files of this folder) are written first.
        Returns the new record, or None when ``change`` declined. A change
        that may be lost in a power cut (a lease, progress) is not ``durable``:
        the previous version then comes back, whole."""
        with self.locks.exclusive([layout.day_of(op_id)]):
            data = self.folder.read(layout.record_name(op_id))
            if data is None:
                raise NotFound(f"No operation {op_id!r}")
            record = json.loads(data)
            changes = change(record)
            if changes is None:
                return None
            record.update(changes)

            def index(record):  # while the folder's fsync runs
                self.keeper.add([self._measure(records.normalize(op_id, record))])

            self.folder.rewrite(op_id, record, outputs, durable, meanwhile=index)
        events.operation_saved.send(self, record=record)
        return record

    def restore(self, op_id: str, record_data: bytes, files: dict) -> dict:
        """Put an operation back (from a backup): ``files`` maps each of its
        file names to a finished temp file of this folder (see ``temp_file``),
        moved in first; then its record, then its index row. An operation
        already there is overwritten: the caller decides whether to."""
        record = records.decode(op_id, record_data)
        for name in files:
            if not layout.belongs_to(name, op_id):
                raise ValueError(f"{name!r} is not a file of operation {op_id}")
        with self.locks.exclusive([layout.day_of(op_id)]):
            self.folder.put_back(op_id, record_data, files)
            self.keeper.add([record])
        return record

    def temp_file(self, suffix: str = ""):
        return self.folder.temp_file(suffix)

    def writable(self) -> bool:
        return self.folder.writable()

    # Reading ----------------------------------------------------------------------
    def get(self, op_id: str) -> dict | None:
        """The record of ``op_id``, loose or archived, or None."""
        return self.get_many([op_id]).get(op_id)

    def get_many(self, op_ids) -> dict[str, dict]:
        """The records of ``op_ids`` that exist and can be read. They are asked
        of the disk together: a page of records not in memory comes up to 1.6× faster."""
        found, archived = {}, []
        names = (layout.record_name(i) for i in op_ids if layout.is_id(i))
        for name, data, error in self.folder.read_each(names):
            op_id = layout.record_id(name)
            if error is not None:
                self.log.warning("Skipped %s: %s", name, error.strerror or error)
            elif data is None:
                archived.append(name)
            else:
                self._decode_into(found, op_id, data, loose=True)
        damaged = {}
        for name, data in archive.read(self.root, archived, damaged).items():
            self._decode_into(found, layout.record_id(name), data)
        for name, why in damaged.items():
            self.log.warning("Skipped %s: %s", name, why)
        return found

    def _decode_into(self, found: dict, op_id: str, data: bytes, loose=False) -> None:
        try:
            found[op_id] = records.decode(op_id, data)
        except records.InvalidRecord as e:
            self.log.warning("Skipped %s.json: %s", op_id, e)
        else:
            if loose:
                self._measure(found[op_id])

    def _measure(self, record: dict) -> dict:
        """``record`` with the sizes its loose files' entries do not give (the
        guide's records name their files only), read off the folder."""
        for entry in record["inputImages"] + record["outputs"]:
            if "bytes" not in entry and layout.belongs_to(entry["file"], record["operationId"]):
                size = self.folder.size(entry["file"])
                if size is not None:
                    entry["bytes"] = size
        return record

    def require(self, op_id: str) -> dict:
        record = self.get(op_id)
        if record is None:
            why = self._unreadable(op_id)
            raise NotFound(f"Operation {op_id!r} is in the folder but cannot be read: {why}"
                           if why else f"No operation {op_id!r}")
        return record

    def _unreadable(self, op_id: str) -> str | None:
        """Why the loose record of ``op_id`` cannot be read, if it is there."""
        if not layout.is_id(op_id):
            return None
        try:
            data = self.folder.read(layout.record_name(op_id))
            if data is not None:
                records.decode(op_id, data)
        except records.InvalidRecord as e:
            return str(e)
        except OSError as e:
            return "a symbolic link: never followed" if e.errno == errno.ELOOP else \
                e.strerror or str(e)
        return None

    def open_file(self, op_id: str, name: str):
        """``(path or bytes, entry)`` of ``name`` if it is one of ``op_id``'s
        files (listed in its record and named as its own); None otherwise."""
        record = self.get(op_id)
        if record is None or not layout.belongs_to(name, op_id):
            return None
        for entry in record["inputImages"] + record["outputs"]:
            if entry["file"] == name:
                path = self.folder.regular_file(name)
                if path is not None:
                    return path, entry
                data = archive.read(self.root, [name]).get(name)
                return (data, entry) if data is not None else None
        return None

    def read_file(self, op_id: str, name: str) -> bytes:
        """The bytes of one of ``op_id``'s files; NotFound when it is gone."""
        found = self.open_file(op_id, name)
        if found is None:
            raise NotFound(f"Operation {op_id!r} has no file {name!r}")
        data = found[0]
        return data if isinstance(data, bytes) else data.read_bytes()

    def unfinished(self) -> list[str]:
        """Ids of the operations queued or running (empty while the index rebuilds)."""
        return self.keeper.query(lambda ix: ix.with_status(records.UNFINISHED), lambda: [])

    def with_steps(self, op_id: str) -> list[str]:
        """``op_id`` and the ids of its workflow steps, steps first."""
        record = self.get(op_id) or {}
        steps = [s for s in record.get("steps") or [] if layout.is_id(s)]
        steps += [s for s in self.keeper.query(lambda ix: ix.steps_of(op_id), lambda: [])
                  if s not in steps]
        return steps + [op_id]

    def page(self, filters: Filters, limit: int, offset: int = 0,
             before: str | None = None) -> Page:
        """One page of records, newest first; ``before`` the last id already seen."""
        def from_index(ix):
            if before and ix.created_at(before) is None:
                raise FilterError(f"before={before!r} is not an operation in the history (it "
                                  "may have been deleted): start again from the first page",
                                  "before")
            ids, total, cursor = ix.page(filters, limit, offset, before)
            found = self.get_many(ids)
            return Page([found[i] for i in ids if i in found], total, cursor)

        return self.keeper.query(from_index, lambda: self._scan_page(filters, limit, offset,
                                                                      before))

    def _scan_page(self, filters: Filters, limit: int, offset: int, before) -> Page:
        """A page read from the folder: ids in reverse order, at most SCAN_LIMIT read."""
        where = self.locations()
        ids = sorted(where, reverse=True)
        if before:
            ids = [i for i in ids if i < before]
        chosen, skipped, last = [], 0, None
        for op_id, record, _ in self.iter_records(ids[:SCAN_LIMIT], where, sort=False):
            last = op_id
            if record is None or not filters.matches(record):
                continue
            if skipped < offset:
                skipped += 1
                continue
            chosen.append(record)
            if len(chosen) == limit:
                break
        more = last is not None and last != ids[-1] if ids else False
        total = len(where) if filters == Filters() else None
        return Page(chosen, total, last if more else None, degraded=True)

    def filters_from(self, args, trash: str = "exclude") -> Filters:
        """``filters.parse``, a type being one of the catalogue or of the history."""
        return parse(args, trash, recorded=lambda: self.keeper.query(
            lambda ix: ix.types(), lambda: None))

    def stats(self, filters: Filters, days: int = 30) -> dict:
        return self.keeper.query(lambda ix: ix.stats(filters, days), self.unavailable)

    def count(self, filters: Filters) -> int | None:
        return self.keeper.query(lambda ix: ix.count(filters), lambda: None)

    def export_rows(self, filters: Filters):
        """Index rows (``index.COLUMNS``) of the selected operations, newest first."""
        from .index import row_of

        def from_folder():
            return (row_of(r) for _, r, _ in self.iter_records(sort=True, reverse=True)
                    if r is not None and filters.matches(r))
        return self.keeper.query(lambda ix: ix.export_rows(filters), from_folder)

    def unavailable(self):
        raise IndexUnavailable(f"This needs the history's index, which is being rebuilt from "
                               f"the records ({self.keeper.progress_text()}); try again shortly")

    # Listing the folder -----------------------------------------------------------
    def locations(self) -> dict[str, str]:
        """``{id: where its record is}``: "" loose, else the archive's day."""
        return dict(self.keeper.on_disk({}))  # loose ones last: they win

    def iter_records(self, op_ids=None, where=None, sort=True, reverse=False):
        """``(id, record or None, error)`` for every operation (or ``op_ids``),
        read in batches; ``where`` is ``locations()`` when the caller has it."""
        where = self.locations() if where is None else where
        wanted = list(where) if op_ids is None else [i for i in op_ids if i in where]
        if sort:
            wanted.sort(reverse=reverse)
        for start in range(0, len(wanted), 500):
            batch = wanted[start:start + 500]
            damaged = {}
            packed = archive.read(self.root, [layout.record_name(i) for i in batch if where[i]],
                                  damaged)
            loose = self.folder.read_each(layout.record_name(i) for i in batch if not where[i])
            for op_id in batch:
                if where[op_id]:
                    name = layout.record_name(op_id)
                    data = packed.get(name)
                    error = ValueError(damaged[name]) if name in damaged else None
                else:
                    _, data, error = next(loose)
                if data is None and error is None:  # packed or unpacked since it was listed
                    data, error = self._read_elsewhere(op_id, where[op_id])
                try:
                    if error is not None:
                        raise error
                    if data is None:
                        raise FileNotFoundError(2, f"{op_id}.json is gone")
                    record = records.decode(op_id, data)
                    yield op_id, record if where[op_id] else self._measure(record), None
                except (OSError, ValueError) as e:
                    yield op_id, None, e

    def _read_elsewhere(self, op_id: str, listed_in: str):
        """``(bytes or None, error or None)`` of a record not where it was
        listed: in the folder if listed in its day's zip, else in that zip.
        (The catch-up reads under the day's lock: where it is now, it stays.)"""
        name = layout.record_name(op_id)
        if listed_in:
            try:
                return self.folder.read(name), None
            except OSError as e:
                return None, e
        damaged = {}
        data = archive.read(self.root, [name], damaged).get(name)
        return data, ValueError(damaged[name]) if name in damaged else None

    # Changing ---------------------------------------------------------------------
    def delete(self, op_id: str) -> tuple[list[str], int]:
        """Delete an operation whole, with a workflow's steps: ``(ids, bytes freed)``.
        Raises NotFound when it is not there (or another caller deleted it first)."""
        ids = self.with_steps(op_id)
        with self.locks.exclusive(layout.day_of(i) for i in ids):
            if self.get(op_id) is None:
                raise NotFound(f"No operation {op_id!r}")
            freed, _ = self._delete_locked(ids)
        return ids, freed

    def delete_many(self, op_ids, progress=None) -> tuple[int, int]:
        """Delete operations whole, one day at a time: ``(bytes freed, how
        many were deleted)``, those another caller deleted first not counted."""
        by_day, freed, deleted = {}, 0, 0
        for op_id in op_ids:
            by_day.setdefault(layout.day_of(op_id), []).append(op_id)
        for day, ids in sorted(by_day.items()):
            with self.locks.exclusive([day]):
                more, found = self._delete_locked(ids)
            freed, deleted = freed + more, deleted + found
            if progress:
                progress(len(ids))
        return freed, deleted

    def _delete_locked(self, ids) -> tuple[int, int]:
        """Records first (they leave the history at once), then their files,
        then index rows; archived ones are dropped from their zip. The caller
        holds the days' locks. ``(bytes freed, records found)``."""
        found = self.get_many(ids)
        names = [layout.record_name(i) for i in ids]
        for op_id, record in found.items():
            names += [e["file"] for e in record["inputImages"] + record["outputs"]
                      if layout.belongs_to(e["file"], op_id)]
        freed = self.folder.remove(names)
        for op_id in ids:  # its thumbnail and previews
            entries = found.get(op_id, {})
            thumbnails.remove(self.root, op_id, [e["file"] for e in entries.get("inputImages", [])
                                                 + entries.get("outputs", [])])
        for day in {layout.day_of(i) for i in ids}:
            try:
                freed += archive.drop(self.root, day, set(ids))
            except archive.Unreadable as e:
                if not e.whole:  # its operations are read from it: never say done
                    raise ArchiveDamaged(f"{e.name}: {e}; nothing can be deleted from it "
                                         "until it is repaired") from None
                self.log.warning("%s: %s; left as it is", e.name, e)  # none is listed
        self.keeper.remove(ids)
        return freed, len(found)

    def star(self, op_id: str, starred: bool) -> dict:
        """Star (or unstar) an operation; its record."""
        self.require(op_id)
        return self.update(op_id, lambda r: {"starred": True if starred else None},
                           ) or self.require(op_id)

    def used_by(self, op_id: str) -> list[dict]:
        """The operations made from ``op_id`` (its reruns, and those that took
        one of its files as input): ``{operationId, operationType, status,
        relation, file}``, oldest first."""
        rows = self.keeper.query(lambda ix: ix.used_by(op_id), lambda: [])
        found = self.get_many([r[0] for r in rows])
        return [{"operationId": i, "operationType": found[i].get("operationType"),
                 "status": found[i].get("status"), "relation": relation, "file": file}
                for i, relation, file in rows if i in found]

    # The trash (``trash``), retention and archives (``retention``), named here so callers find them.
    trash = trashing.trash
    untrash = trashing.untrash
    empty_trash = trashing.empty
    cleanup = retention.cleanup
    compress = retention.compress
    decompress = retention.decompress
    old_operations = retention.old_operations

    def reindex(self, progress=None) -> dict:
        """Rebuild the index from the records; report what could not be read."""
        return self.keeper.rebuild_now(progress)

    def health(self) -> dict:
        return {"writable": self.writable(), **self.keeper.health()}
