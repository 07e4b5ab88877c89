"""OperationIndex: what history queries need, in SQLite, beside the records.

The JSON records stay the truth; this index (standard library ``sqlite3``,
WAL mode, one connection per thread) holds one row per operation so that a
page, a search, the statistics or an export never scan the files. The store
writes the row in the same step as the record; ``sync`` catches up with the
files (a missing or stale index), ``rebuild`` starts again from them.
Several processes may write at once: SQLite's locking serialises them.
"""

import logging
import sqlite3
import threading
from pathlib import Path

logger = logging.getLogger(__name__)
BATCH = 1000

SCHEMA_VERSION = 3  # an index file of another version is dropped and rebuilt
SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (
    seq INTEGER PRIMARY KEY,  -- stable rowid for the full-text table
    id TEXT UNIQUE NOT NULL,
    type TEXT, status TEXT, created_at TEXT, completed_at TEXT, duration_ms REAL,
    provider TEXT, model TEXT, prompt TEXT, parent_id TEXT, error TEXT,
    input_count INTEGER, input_bytes INTEGER, output_bytes INTEGER, result_file TEXT
);
CREATE INDEX IF NOT EXISTS by_created ON operations (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS by_type ON operations (type, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS by_type_status ON operations (type, status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS by_type_duration ON operations (type, duration_ms);
CREATE INDEX IF NOT EXISTS by_status ON operations (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS for_stats ON operations (type, status, input_bytes, output_bytes);
CREATE INDEX IF NOT EXISTS by_parent ON operations (parent_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
# Prompts searchable with FTS5, kept in step with the table by triggers.
FTS_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS prompts USING fts5(
    prompt, content='operations', content_rowid='seq');
CREATE TRIGGER IF NOT EXISTS prompts_insert AFTER INSERT ON operations BEGIN
    INSERT INTO prompts (rowid, prompt) VALUES (new.seq, new.prompt);
END;
CREATE TRIGGER IF NOT EXISTS prompts_delete AFTER DELETE ON operations BEGIN
    INSERT INTO prompts (prompts, rowid, prompt) VALUES ('delete', old.seq, old.prompt);
END;
CREATE TRIGGER IF NOT EXISTS prompts_update AFTER UPDATE ON operations BEGIN
    INSERT INTO prompts (prompts, rowid, prompt) VALUES ('delete', old.seq, old.prompt);
    INSERT INTO prompts (rowid, prompt) VALUES (new.seq, new.prompt);
END;
"""
COLUMNS = ("id", "type", "status", "created_at", "completed_at", "duration_ms", "provider",
           "model", "prompt", "parent_id", "error", "input_count", "input_bytes",
           "output_bytes", "result_file")
UPSERT = (f"INSERT INTO operations ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
          f"ON CONFLICT (id) DO UPDATE SET "
          + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:]))


def row_of(record: dict) -> tuple:
    """The index row of a record."""
    inputs, outputs = record.get("inputImages") or [], record.get("outputs") or []
    provider = record.get("provider") or {}
    return (record["operationId"], record.get("operationType"), record.get("status"),
            record.get("createdAt"), record.get("completedAt"), record.get("durationMs"),
            provider.get("name"), provider.get("model"), record.get("prompt"),
            record.get("parentId"), record.get("error"), len(inputs),
            sum(f.get("bytes") or 0 for f in inputs), sum(f.get("bytes") or 0 for f in outputs),
            record.get("resultFile"))


class OperationIndex:
    def __init__(self, path):
        self.path = Path(path)
        self._local = threading.local()
        self.has_fts = None

    def connect(self) -> sqlite3.Connection:
        """This thread's connection, made (and the schema created) on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] not in (0, SCHEMA_VERSION):
                conn.executescript("DROP TABLE IF EXISTS prompts; DROP TABLE IF EXISTS operations;")
            conn.executescript(SCHEMA)
            try:
                conn.executescript(FTS_SCHEMA)
                self.has_fts = True
            except sqlite3.OperationalError:  # SQLite built without FTS5: LIKE instead
                self.has_fts = False
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._local.conn = conn
        return conn

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # Writing ------------------------------------------------------------------
    def add(self, records) -> None:
        """Insert or replace the rows of ``records`` in one transaction."""
        rows = [row_of(r) for r in records]
        conn = self.connect()
        with _transaction(conn):
            conn.executemany(UPSERT, rows)

    def remove(self, ids) -> None:
        ids = [(i,) for i in ids]
        conn = self.connect()
        with _transaction(conn):
            conn.executemany("DELETE FROM operations WHERE id = ?", ids)

    def clear(self) -> None:
        conn = self.connect()
        with _transaction(conn):
            conn.execute("DELETE FROM operations")

    def check(self, store) -> dict | None:
        """At start-up: catch up only when the index's ids differ from the
        records' (compared by fingerprint, streamed on both sides)."""
        from .store import ids_fingerprint
        rows = (row[0] for row in self.connect().execute("SELECT id FROM operations"))
        if ids_fingerprint(rows) == store.fingerprint():
            return None
        return self.catch_up(store)

    def catch_up(self, store, rebuild: bool = False, progress=None) -> dict:
        """Make the index match the records on disk; return what changed.

        Rows of operations that are gone are removed; records the index lacks
        (all of them with ``rebuild``) are read and added. A record that cannot
        be read is skipped with a warning naming it. ``progress(n)`` is called
        as records are read.
        """
        on_disk = store.record_names()
        if rebuild:
            self.clear()
        in_index = self.ids()
        gone = in_index - on_disk.keys()
        self.remove(gone)
        missing = on_disk.keys() - in_index
        added, skipped, batch = 0, [], []
        for op_id, record, error in store.iter_records(missing, on_disk):
            if progress:
                progress(1)
            if error is not None:
                where = f"archives/{on_disk[op_id]}.zip:" if on_disk[op_id] else ""
                logger.warning("Skipped %s%s.json: not a readable record (%s)", where, op_id, error)
                skipped.append(op_id)
                continue
            batch.append(record)
            if len(batch) >= BATCH:
                self.add(batch)
                added, batch = added + len(batch), []
        self.add(batch)
        return {"added": added + len(batch), "removed": len(gone), "skipped": skipped,
                "total": len(on_disk) - len(skipped)}

    # Reading ------------------------------------------------------------------
    def ids(self) -> set[str]:
        return {row[0] for row in self.connect().execute("SELECT id FROM operations")}

    def get_meta(self, key: str):
        row = self.connect().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def swap_meta(self, key: str, old, new) -> bool:
        """Set ``key`` to ``new`` if it is still ``old``: True if this caller won."""
        conn = self.connect()
        with _transaction(conn):
            if self.get_meta(key) != old:
                return False
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, new))
        return True

    def created_at(self, op_id: str):
        row = self.connect().execute("SELECT created_at FROM operations WHERE id = ?",
                                     (op_id,)).fetchone()
        return row[0] if row else None

    def execute(self, sql: str, params=()):
        return self.connect().execute(sql, params)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK): one writer at a time, no lost rows."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, tb):
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")
