"""What the backup knows, in ``<STORAGE_DIR>/.backup/ledger.sqlite3``, shared
by every process of the studio (server, workers, CLI):

- ``objects``: what was uploaded (name, size, ETag, sha256), so an object
  whose ETag the listing still shows needs no HEAD to learn its sha256, and
  an ETag that changed behind our back is noticed;
- ``hashes``: the sha256 of local files by (size, mtime), so an incremental
  run does not read the whole history again;
- ``meta``: the status (last success, last error, failing since).

It is a cache: deleting it costs a slower run, never a wrong one.
"""

import hashlib
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (name TEXT PRIMARY KEY, size INTEGER, etag TEXT, sha256 TEXT);
CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,
                                   sha256 TEXT);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
"""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Ledger:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # Objects in the bucket ---------------------------------------------------------
    def uploaded(self, name: str, size: int, etag: str | None, sha256: str) -> None:
        self._db().execute("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?)",
                           (name, size, etag, sha256))

    def known(self, name: str) -> dict | None:
        row = self._db().execute("SELECT size, etag, sha256 FROM objects WHERE name = ?",
                                 (name,)).fetchone()
        return dict(zip(("size", "etag", "sha256"), row)) if row else None

    def forget(self, names) -> None:
        self._db().executemany("DELETE FROM objects WHERE name = ?", [(n,) for n in names])

    def count_records(self) -> int:
        return self._db().execute("SELECT count(*) FROM objects WHERE name LIKE '%.json'"
                                  ).fetchone()[0]

    # Local files -------------------------------------------------------------------
    def local_sha256(self, path: Path) -> str:
        """The sha256 of a local file, read again only when its size or mtime changed."""
        st = path.stat()
        row = self._db().execute("SELECT sha256 FROM hashes WHERE path = ? AND size = ? AND "
                                 "mtime_ns = ?", (str(path), st.st_size, st.st_mtime_ns)).fetchone()
        if row:
            return row[0]
        sha = sha256_file(path)
        self._db().execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)",
                           (str(path), st.st_size, st.st_mtime_ns, sha))
        return sha

    # Status ------------------------------------------------------------------------
    def get(self, name: str) -> str | None:
        row = self._db().execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set(self, **values) -> None:
        self._db().executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                               [(k, None if v is None else str(v)) for k, v in values.items()])

    def succeeded(self) -> None:
        self.set(lastSuccess=_now(), lastError=None, failingSince=None)

    def failed(self, message: str) -> None:
        self.set(lastError=message, lastFailure=_now(), failingSince=self.get("failingSince")
                 or _now())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
