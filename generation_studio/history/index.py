"""OperationIndex: the history's SQLite index, and every SQL statement.

The JSON records are the truth; this index (standard library ``sqlite3``,
WAL mode, one connection per thread) is a cache of what queries need, one
row per operation, so that a page, a search, the statistics or an export
never scan the files. Several processes may write at once: SQLite's locking
serialises them. Any ``sqlite3.Error`` reaches the caller: the history
service treats the index as broken and rebuilds it from the records.
"""

import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .filters import Filters, iso

SCHEMA_VERSION = 4  # an index file of another version is rebuilt
BUSY_TIMEOUT_SECONDS = 5  # a writer holding the lock longer is a fault, not a wait
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
# A search whose page has more rows to choose from than this walks the date
# index instead of sorting them all; one with more matches than JOIN_MATCHES_UP_TO
# is counted by testing rows against the matches (see _select).
SORT_MATCHES_UP_TO = 500
JOIN_MATCHES_UP_TO = 5000


def row_of(record: dict) -> tuple:
    """The index row of a (normalised) record."""
    inputs, outputs = record.get("inputImages") or [], record.get("outputs") or []
    provider = record.get("provider") or {}
    prompt = record.get("prompt")
    return (record["operationId"], record.get("operationType"), record.get("status"),
            record.get("createdAt"), record.get("completedAt"), _number(record.get("durationMs")),
            provider.get("name"), provider.get("model"),
            prompt if isinstance(prompt, str) else None, record.get("parentId"),
            str(record["error"]) if record.get("error") else None, len(inputs),
            sum(_number(f.get("bytes")) or 0 for f in inputs),
            sum(_number(f.get("bytes")) or 0 for f in outputs), record.get("resultFile"))


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class OperationIndex:
    def __init__(self, path):
        self.path = Path(path)
        self._local = threading.local()
        self.has_fts = None

    def connect(self) -> sqlite3.Connection:
        """This thread's connection, made (and the schema checked) on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS,
                                   isolation_level=None, check_same_thread=False)
            try:
                self._prepare(conn)
            except BaseException:
                conn.close()
                raise
            self._local.conn = conn
        return conn

    def _prepare(self, conn) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            self.has_fts = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'prompts'"
                                        ).fetchone() is not None
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")  # a cache: a crash costs a rebuild, not data
            return
        if version != 0:
            raise sqlite3.DatabaseError(f"index of another version ({version}, "
                                        f"expected {SCHEMA_VERSION})")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")  # a cache: a crash costs a rebuild, not data
        conn.executescript(SCHEMA)
        try:
            conn.executescript(FTS_SCHEMA)
            self.has_fts = True
        except sqlite3.OperationalError:  # SQLite built without FTS5: LIKE instead
            self.has_fts = False
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def execute(self, sql: str, params=()):
        return self.connect().execute(sql, params)

    # Writing ------------------------------------------------------------------
    def add(self, records) -> None:
        """Insert or replace the rows of ``records`` in one transaction."""
        rows = [row_of(r) for r in records]
        if rows:
            with self._transaction() as conn:
                conn.executemany(UPSERT, rows)

    def remove(self, ids) -> None:
        ids = [(i,) for i in ids]
        if ids:
            with self._transaction() as conn:
                conn.executemany("DELETE FROM operations WHERE id = ?", ids)

    def clear(self) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM operations")

    def swap_meta(self, key: str, old, new) -> bool:
        """Set ``key`` to ``new`` if it is still ``old``: True if this caller won."""
        with self._transaction() as conn:
            if self.get_meta(key) != old:
                return False
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, new))
        return True

    def _transaction(self):
        return _Transaction(self.connect())

    # Reading ------------------------------------------------------------------
    def ids(self):
        """Every indexed id, streamed."""
        return (row[0] for row in self.execute("SELECT id FROM operations"))

    def get_meta(self, key: str):
        row = self.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def created_at(self, op_id: str):
        row = self.execute("SELECT created_at FROM operations WHERE id = ?", (op_id,)).fetchone()
        return row[0] if row else None

    def with_status(self, statuses) -> list[str]:
        statuses = list(statuses)
        return [r[0] for r in self.execute(
            f"SELECT id FROM operations WHERE status IN ({', '.join('?' * len(statuses))})",
            statuses)]

    def steps_of(self, op_id: str) -> list[str]:
        return [r[0] for r in self.execute("SELECT id FROM operations WHERE parent_id = ?",
                                           (op_id,))]

    def created_before(self, cutoff: str) -> list[tuple[str, int]]:
        """``(id, bytes)`` of operations created before ``cutoff``, oldest first."""
        return self.execute("SELECT id, COALESCE(input_bytes, 0) + COALESCE(output_bytes, 0) "
                            "FROM operations WHERE created_at < ? ORDER BY created_at",
                            (cutoff,)).fetchall()

    def count(self, filters: Filters) -> int:
        return self.page(filters, 0)[1]

    def page(self, filters: Filters, limit: int, offset: int = 0,
             before: str | None = None) -> tuple[list[str], int, str | None]:
        """``(ids, total, next_cursor)`` for one page, newest first; ``before``
        is the id of the last row already seen (it must be indexed)."""
        matches = self._prompt_matches(filters)
        if matches is not None and filters == Filters(q=filters.q):
            total = matches  # the search is the only filter: its own count
        else:
            count_by = "member" if matches and matches > JOIN_MATCHES_UP_TO else "join"
            source, where, params = self._select(filters, count_by)
            total = self.execute(f"SELECT COUNT(*){source}{where}", params).fetchone()[0]
        if limit == 0:
            return [], total, None
        # Few rows to show: sort them. Many: walk the dates, the first page comes quickly.
        walk = matches is not None and total > SORT_MATCHES_UP_TO
        source, where, params = self._select(filters, "walk" if walk else "join")
        if before:
            where = _also(where, "(created_at, id) < (?, ?)")
            params = params + [self.created_at(before), before]
        rows = self.execute(f"SELECT id{source}{where} ORDER BY created_at DESC, id DESC "
                            f"LIMIT ? OFFSET ?", params + [limit + 1, offset]).fetchall()
        ids = [r[0] for r in rows[:limit]]
        return ids, total, ids[-1] if len(rows) > limit else None

    def export_rows(self, filters: Filters):
        """A cursor over the rows (``COLUMNS``) selected, newest first."""
        source, where, params = self._select(filters)
        return self.execute(f"SELECT {', '.join(COLUMNS)}{source}{where} "
                            f"ORDER BY created_at DESC, id DESC", params)

    def stats(self, filters: Filters, days: int = 30) -> dict:
        """Counts, success rate, durations, operations per day and storage."""
        source, where, params = self._select(filters)
        by_type = {}
        for op_type, status, count, in_bytes, out_bytes in self.execute(
                f"SELECT type, status, COUNT(*), SUM(input_bytes), SUM(output_bytes)"
                f"{source}{where} GROUP BY type, status", params):
            entry = by_type.setdefault(op_type, {"count": 0, "succeeded": 0, "failed": 0,
                                                 "bytes": 0})
            entry["count"] += count
            entry[status] = entry.get(status, 0) + count
            entry["bytes"] += (in_bytes or 0) + (out_bytes or 0)
        for op_type, median, p95 in self._duration_percentiles(source, where, params):
            by_type.setdefault(op_type, {})["durationMs"] = {"median": median, "p95": p95}
        total = sum(e["count"] for e in by_type.values())
        succeeded = sum(e["succeeded"] for e in by_type.values())
        failed = sum(e["failed"] for e in by_type.values())
        since = (datetime.now(timezone.utc) - timedelta(days=days - 1)).strftime("%Y-%m-%d")
        per_day = dict(self.execute(
            f"SELECT substr(created_at, 1, 10) AS day, COUNT(*){source}"
            f"{_also(where, 'created_at >= ?')} GROUP BY day ORDER BY day",
            params + [since]).fetchall())
        return {"total": total, "succeeded": succeeded, "failed": failed,
                "successRate": round(succeeded / total, 4) if total else None,
                "byType": by_type, "perDay": per_day, "days": days,
                "storageBytes": sum(e["bytes"] for e in by_type.values())}

    def _duration_percentiles(self, source: str, where: str, params: list):
        """(type, median, p95) of durations by nearest rank: per type, the count,
        then one row at each rank through the (type, duration_ms) index."""
        typed = _also(where, "type IS ?")
        rows = []
        for op_type, n in self.execute(f"SELECT type, COUNT(*){source}{where} GROUP BY type",
                                       params).fetchall():
            values = [self.execute(f"SELECT duration_ms{source}{typed} "
                                   f"ORDER BY duration_ms LIMIT 1 OFFSET ?",
                                   params + [op_type, rank - 1]).fetchone()[0]
                      for rank in ((n + 1) // 2, max(1, -(-95 * n // 100)))]
            rows.append((op_type, *values))
        return rows

    def _prompt_matches(self, filters: Filters) -> int | None:
        """How many prompts match the search (FTS5 counts them fast), or None."""
        if not filters.q:
            return None
        self.connect()
        if not self.has_fts:
            return None
        return self.execute("SELECT COUNT(*) FROM prompts WHERE prompts MATCH ?",
                            (fts_query(filters.q),)).fetchone()[0]

    def _select(self, filters: Filters, search: str = "join") -> tuple[str, str, list]:
        """``(" FROM ...", " WHERE ..." or "", params)`` selecting the matching rows.

        How a prompt search is joined: ``join`` starts from the full-text
        matches (CROSS JOIN keeps that order), best when they are few;
        ``member`` tests rows against the matches and lets SQLite choose the
        index (a count with other filters); ``walk`` walks the date index
        testing each row: the way to a first page when matches are many.
        """
        source, clauses, params = " FROM operations", [], []
        if filters.q:
            self.connect()
            if self.has_fts and search in ("member", "walk"):
                if search == "walk":
                    source = " FROM operations INDEXED BY by_created"
                clauses.append("seq IN (SELECT rowid FROM prompts WHERE prompts MATCH ?)")
                params.append(fts_query(filters.q))
            elif self.has_fts:
                source = (" FROM (SELECT rowid AS seq FROM prompts WHERE prompts MATCH ?)"
                          " AS matched CROSS JOIN operations USING (seq)")
                params.append(fts_query(filters.q))
            else:
                clauses.append("prompt LIKE ? ESCAPE '\\'")
                params.append("%" + filters.q.replace("\\", "\\\\").replace("%", "\\%")
                              .replace("_", "\\_") + "%")
        if filters.types:
            clauses.append(f"type IN ({', '.join('?' * len(filters.types))})")
            params += list(filters.types)
        for column, value in (("status", filters.status), ("provider", filters.provider),
                              ("parent_id", filters.parent_id)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if filters.since:
            clauses.append("created_at >= ?")
            params.append(filters.since)
        if filters.until:
            clauses.append("created_at <= ?")
            params.append(filters.until)
        return source, (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def cutoff(older_than: timedelta) -> str:
    return iso(datetime.now(timezone.utc) - older_than)


def fts_query(text: str) -> str:
    """Every word must appear (the last as a prefix); FTS syntax is neutralised."""
    words = [w.replace('"', '""') for w in text.split()]
    return " ".join(f'"{w}"' for w in words[:-1]) + (f' "{words[-1]}"*' if words else "")


def _also(where: str, condition: str) -> str:
    """``where`` with one more condition."""
    return where + (" AND " if where else " WHERE ") + condition


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK): one writer at a time, no lost rows."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind, value, tb):
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")
