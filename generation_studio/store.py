"""OperationStore: operation records and their files, on disk, written atomically.

One flat folder; for each operation ``YYYYMMDD_<id>``:

- ``YYYYMMDD_<id>.json``        the record (written last)
- ``YYYYMMDD_<id>_in_<n>.<ext>`` each input image, n from 0
- ``YYYYMMDD_<id>_out.<ext>``    the result (``_out_<n>`` when there are several)

Every file goes to a temporary name in the same folder, is flushed and
fsynced, then ``os.replace``d onto its name. The JSON comes last, so a JSON
that exists always has all its files; a failed save removes what it wrote.
"""

import json
import os
import re
import secrets
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from . import media

SCHEMA_VERSION = 1
TMP_SUFFIX = ".tmp"
FILE_MODE = 0o644  # mkstemp makes 0600; records are meant to be read with cat
# Temp files older than this at start-up belong to a writer that died.
STALE_TMP_SECONDS = 15 * 60
ID_PATTERN = re.compile(r"^\d{8}_[a-z2-7]{12}$")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


class OperationExists(Exception):
    """An operation id that is already on disk was about to be written."""


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or none."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def move_atomic(source: Path, path: Path) -> None:
    """Move a finished file in the same folder onto ``path``, fsynced first."""
    fd = os.open(source, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(source, FILE_MODE)
    os.replace(source, path)


def random_token(length: int = 12) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


class OperationStore:
    """Reads and writes operations in one folder."""

    def __init__(self, root):
        self.root = Path(root)

    def init(self) -> int:
        """Create the folder and remove stale temp files; return how many."""
        self.root.mkdir(parents=True, exist_ok=True)
        removed = 0
        cutoff = time.time() - STALE_TMP_SECONDS
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
        return record

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

    def get(self, op_id: str) -> dict | None:
        """The record of ``op_id``, or None when there is no such operation."""
        if not ID_PATTERN.match(op_id or ""):
            return None
        try:
            return json.loads((self.root / f"{op_id}.json").read_bytes())
        except FileNotFoundError:
            return None

    def query(self, limit: int = 50, offset: int = 0, types=None, status=None):
        """Records newest first, filtered; return ``(page, total)``."""
        paths = self._record_paths_newest_first()
        if not types and not status:
            return [self._read(p) for p in paths[offset:offset + limit]], len(paths)
        matching = [
            r for r in map(self._read, paths)
            if (not types or r.get("operationType") in types)
            and (not status or r.get("status") == status)
        ]
        return matching[offset:offset + limit], len(matching)

    def _record_paths_newest_first(self) -> list[Path]:
        try:
            entries = [e for e in os.scandir(self.root)
                       if e.name.endswith(".json") and ID_PATTERN.match(e.name[:-5])]
        except FileNotFoundError:
            return []
        # The JSON is written when the operation ends: its mtime orders them.
        entries.sort(key=lambda e: (e.stat().st_mtime_ns, e.name), reverse=True)
        return [Path(e.path) for e in entries]

    @staticmethod
    def _read(path: Path) -> dict:
        return json.loads(path.read_bytes())

    def find_file(self, op_id: str, name: str):
        """``(path, entry)`` of ``name`` if it is one of ``op_id``'s files, else None."""
        record = self.get(op_id)
        if record is None:
            return None
        for entry in record.get("inputImages", []) + record.get("outputs", []):
            if entry["file"] == name and (self.root / name).is_file():
                return self.root / name, entry
        return None

    def temp_file(self, suffix: str = "") -> Path:
        """A new temp file in this folder (so that save can move it in), or in
        the system's temp folder when this one cannot be written."""
        try:
            fd, name = tempfile.mkstemp(dir=self.root, prefix=".download.", suffix=suffix + TMP_SUFFIX)
        except OSError:
            fd, name = tempfile.mkstemp(prefix=".download.", suffix=suffix + TMP_SUFFIX)
        os.close(fd)
        return Path(name)

    def writable(self) -> bool:
        return self.root.is_dir() and os.access(self.root, os.W_OK)
