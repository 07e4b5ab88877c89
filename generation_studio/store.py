"""OperationStore: operation records and their files, on disk, written atomically.

One flat folder; for each operation ``YYYYMMDD_<id>``:

- ``YYYYMMDD_<id>.json``        the record (written last)
- ``YYYYMMDD_<id>_in_<n>.<ext>`` each input image, n from 0
- ``YYYYMMDD_<id>_out.<ext>``    the result (``_out_<n>`` when there are several)

Every file goes to a temporary name in the same folder, is flushed and
fsynced, then ``os.replace``d onto its name. The JSON comes last, so a JSON
that exists always has all its files; a failed save removes what it wrote.
Old days may be packed into ``archives/`` (see ``archive``); reading works the
same either way. Each save also writes the operation's row in the index.
"""

import itertools
import json
import logging
import os
import re
import secrets
import tempfile
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path

from . import archive, media
from .atomic import TMP_SUFFIX, move_atomic, write_atomic

SCHEMA_VERSION = 1
# Temp files (and files with no record) older than this belong to a writer that died.
STALE_SECONDS = 15 * 60
ID_PATTERN = re.compile(r"^\d{8}_[a-z2-7]{12}$")
ID_LENGTH = 21
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
THUMBS = ".thumbs"  # gallery thumbnails (see thumbnails.py), deleted with their operation
logger = logging.getLogger(__name__)


def current_store() -> "OperationStore":
    """The app's store (with its index)."""
    from flask import current_app
    return current_app.extensions["operation_store"]


class OperationExists(Exception):
    """An operation id that is already on disk was about to be written."""


def ids_fingerprint(ids) -> tuple[int, int]:
    """(count, sum of CRC32s) of ``ids``: equal sets give equal fingerprints, and
    a difference is all but certain to show."""
    count = total = 0
    for op_id in ids:
        count += 1
        total += zlib.crc32(op_id.encode())
    return count, total


def random_token(length: int = 12) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


class OperationStore:
    """Reads and writes operations in one folder (and its day archives)."""

    def __init__(self, root, index=None):
        self.root = Path(root)
        self.index = index

    def init(self) -> int:
        """Create the folder and remove stale temp files; return how many."""
        self.root.mkdir(parents=True, exist_ok=True)
        removed = 0
        cutoff = time.time() - STALE_SECONDS
        for entry in os.scandir(self.root):
            if entry.name.endswith(TMP_SUFFIX) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        return removed

    def new_id(self, when: datetime | None = None) -> str:
        """A fresh operation id, dated ``when`` (UTC), not used on disk."""
        day = (when or datetime.now(timezone.utc)).strftime("%Y%m%d")
        while True:
            op_id = f"{day}_{random_token()}"
            if not (self.root / f"{op_id}.json").exists():
                return op_id

    # Writing ----------------------------------------------------------------------
    def save(self, record: dict, inputs=(), outputs=()) -> dict:
        """Write an operation and return its full record.

        ``record`` holds the fields the caller knows; ``inputs`` is a list of
        ``(bytes, original_name)`` and ``outputs`` a list of bytes or of paths
        of files already in this folder (downloads, moved in without being
        read into memory). The store adds the id (unless given), the file
        entries and the schema version.
        """
        op_id = record.get("operationId") or self.new_id()
        record = {"operationId": op_id, **record}  # id first, for a reader of the JSON
        json_path = self.root / f"{op_id}.json"
        if json_path.exists():
            raise OperationExists(op_id)
        written = []
        try:
            record["inputImages"] = [
                self._write_file(written, f"{op_id}_in_{n}", data, originalName=name)
                for n, (data, name) in enumerate(inputs)
            ]
            several = len(outputs) > 1
            record["outputs"] = [
                self._write_file(written, f"{op_id}_out_{n}" if several else f"{op_id}_out", data)
                for n, data in enumerate(outputs)
            ]
            record["resultFile"] = record["outputs"][0]["file"] if outputs else None
            record["schemaVersion"] = SCHEMA_VERSION
            write_atomic(json_path, json.dumps(record, indent=2, ensure_ascii=False).encode())
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        self._index(record)
        return record

    def _index(self, record: dict) -> None:
        if self.index is None:
            return
        try:
            self.index.add([record])
        except Exception:  # the JSON is the truth; start-up or reindex catches up
            logger.exception("Could not index operation %s", record["operationId"])

    def _write_file(self, written: list, stem: str, data, **extra) -> dict:
        info = media.describe(data)
        path = self.root / f"{stem}.{info.ext}"
        if isinstance(data, Path):
            move_atomic(data, path)
        else:
            write_atomic(path, data)
        written.append(path)
        entry = {
            "file": path.name,
            "contentType": info.content_type,
            "bytes": info.size,
            "sha256": info.sha256,
            "width": info.width,
            "height": info.height,
        }
        if info.frames:
            entry["frames"] = info.frames
        entry.update(extra)
        return entry

    def delete(self, op_id: str) -> int:
        """Delete one operation whole; return the bytes freed."""
        return self.delete_many([op_id])

    def delete_many(self, op_ids, progress=None) -> int:
        """Delete operations whole; return the bytes freed.

        Each record goes first, so the operation leaves the history at once;
        then its files, then its index row. Archived operations are dropped
        from their day's zip, one rewrite per day.
        """
        loose, freed, archived, done = self.loose_files(), 0, {}, []
        for op_id in op_ids:
            names = loose.get(op_id, [])
            (self.root / THUMBS / f"{op_id}.webp").unlink(missing_ok=True)
            if f"{op_id}.json" in names:
                for name in sorted(names, key=lambda n: not n.endswith(".json")):
                    path = self.root / name
                    freed += path.stat().st_size
                    path.unlink(missing_ok=True)
                done.append(op_id)
                if len(done) >= 500:  # index rows go in batches, after their files
                    self._unindex(done, progress)
                    done = []
            else:
                archived.setdefault(op_id[:8], set()).add(op_id)
        self._unindex(done, progress)
        for day, ids in archived.items():
            if archive.path_for(self.root, day).exists():
                freed += archive.drop(self.root, day, ids)
            self._unindex(ids, progress)
        return freed

    def _unindex(self, op_ids, progress=None) -> None:
        if self.index is not None and op_ids:
            self.index.remove(op_ids)
        if progress and op_ids:
            progress(len(op_ids))

    def with_steps(self, op_id: str) -> list[str]:
        """``op_id`` and the ids of its workflow steps, steps first."""
        steps = [r[0] for r in self.index.execute(
            "SELECT id FROM operations WHERE parent_id = ?", (op_id,))]
        return steps + [op_id]

    def remove_orphans(self) -> int:
        """Delete loose files whose record is gone (an interrupted delete), once
        they are too old to belong to a save in progress; return how many."""
        cutoff = time.time() - STALE_SECONDS
        removed = 0
        for op_id, names in self.loose_files().items():
            if f"{op_id}.json" in names:
                continue
            paths = [self.root / n for n in names]
            if all(p.stat().st_mtime < cutoff for p in paths):
                for path in paths:
                    path.unlink(missing_ok=True)
                removed += len(paths)
        return removed

    def temp_file(self, suffix: str = "") -> Path:
        """A new temp file in this folder (so that save can move it in), or in
        the system's temp folder when this one cannot be written."""
        try:
            fd, name = tempfile.mkstemp(dir=self.root, prefix=".download.",
                                        suffix=suffix + TMP_SUFFIX)
        except OSError:
            fd, name = tempfile.mkstemp(prefix=".download.", suffix=suffix + TMP_SUFFIX)
        os.close(fd)
        return Path(name)

    def writable(self) -> bool:
        return self.root.is_dir() and os.access(self.root, os.W_OK)

    # Reading ----------------------------------------------------------------------
    def get(self, op_id: str) -> dict | None:
        """The record of ``op_id``, or None when there is no such operation."""
        return self.get_many([op_id]).get(op_id)

    def get_many(self, op_ids) -> dict[str, dict]:
        """The records of ``op_ids`` that exist, loose or archived."""
        found, missing = {}, []
        for op_id in op_ids:
            if not ID_PATTERN.match(op_id or ""):
                continue
            try:
                found[op_id] = json.loads((self.root / f"{op_id}.json").read_bytes())
            except FileNotFoundError:
                missing.append(f"{op_id}.json")
            except ValueError as e:
                logger.warning("Skipped %s.json: not a readable record (%s)", op_id, e)
        for name, data in archive.read(self.root, missing).items():
            try:
                found[name[:-5]] = json.loads(data)
            except ValueError as e:
                logger.warning("Skipped %s in its archive: not a readable record (%s)", name, e)
        return found

    def open_file(self, op_id: str, name: str):
        """``(path or bytes, entry)`` of ``name`` if it is one of ``op_id``'s files."""
        record = self.get(op_id)
        if record is None:
            return None
        for entry in record.get("inputImages", []) + record.get("outputs", []):
            if entry["file"] == name:
                path = self.root / name
                if path.is_file():
                    return path, entry
                data = archive.read(self.root, [name]).get(name)
                return (data, entry) if data is not None else None
        return None

    def loose_files(self) -> dict[str, list[str]]:
        """Every operation's loose file names, by operation id (one folder scan)."""
        files = {}
        for entry in os.scandir(self.root):
            if ID_PATTERN.match(entry.name[:ID_LENGTH]) and not entry.name.endswith(TMP_SUFFIX):
                files.setdefault(entry.name[:ID_LENGTH], []).append(entry.name)
        return files

    def fingerprint(self) -> tuple[int, int]:
        """(how many operations, a checksum of their ids), loose or archived,
        streamed without keeping the names (see ``ids_fingerprint``)."""
        loose = (e.name[:-5] for e in os.scandir(self.root)
                 if e.name.endswith(".json") and ID_PATTERN.match(e.name[:-5]))
        packed = (n[:-5] for day in archive.days(self.root)
                  for n in archive.names(self.root, day) if n.endswith(".json"))
        return ids_fingerprint(itertools.chain(loose, packed))

    def record_names(self) -> dict[str, str]:
        """``{operation id: where its record is}`` ("" loose, else the archive day)."""
        names = {}
        for day in archive.days(self.root):
            names.update({n[:-5]: day for n in archive.names(self.root, day)
                          if n.endswith(".json")})
        names.update({op_id: "" for op_id, files in self.loose_files().items()
                      if f"{op_id}.json" in files})
        return names

    def iter_records(self, op_ids=None, where=None):
        """``(op_id, record or None, error)`` for every operation (or ``op_ids``);
        ``where`` is ``record_names()`` when the caller has it already."""
        where = self.record_names() if where is None else where
        wanted = sorted(where if op_ids is None else set(op_ids) & set(where))
        for start in range(0, len(wanted), 500):
            batch = wanted[start:start + 500]
            loose = {i for i in batch if not where[i]}
            packed = archive.read(self.root, [f"{i}.json" for i in batch if where[i]])
            for op_id in batch:
                try:
                    data = (self.root / f"{op_id}.json").read_bytes() if op_id in loose \
                        else packed[f"{op_id}.json"]
                    yield op_id, json.loads(data), None
                except (OSError, KeyError, ValueError) as e:
                    yield op_id, None, e
