"""OperationIndex: the history's SQLite index, and every SQL statement.

The JSON records are the truth; this index (standard library ``sqlite3``,
WAL mode, one connection per thread) is a cache of what queries need, one
row per operation, so that a page, a search, the statistics or an export
never scan the files. Several processes may write at once: SQLite's locking
serialises them. Any ``sqlite3.Error`` reaches the caller: the history
service treats the index as broken and rebuilds it from the records.
"""

import contextlib
import dataclasses
import json
import os
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .. import liveness
from ..catalog import OPERATION_TYPES
from .filters import PROVIDERS, STATUSES, Filters, iso, words

SCHEMA_VERSION = 14  # an index file of another version is rebuilt
BUSY_TIMEOUT_SECONDS = 5  # a writer holding the lock longer is a fault, not a wait
SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (
    seq INTEGER PRIMARY KEY,  -- stable rowid for the full-text table
    id TEXT UNIQUE NOT NULL,
    type TEXT, status TEXT, created_at TEXT, completed_at TEXT, duration_ms REAL,
    provider TEXT, model TEXT, prompt TEXT, parent_id TEXT, error TEXT,
    input_count INTEGER, input_bytes INTEGER, output_bytes INTEGER, result_file TEXT,
    trashed_at TEXT, starred INTEGER
);
-- Lineage: each operation's sources (derivedFrom), to answer "used by".
CREATE TABLE IF NOT EXISTS derived (id TEXT NOT NULL, source TEXT NOT NULL, file TEXT,
                                    relation TEXT);
CREATE INDEX IF NOT EXISTS derived_by_source ON derived (source);
CREATE INDEX IF NOT EXISTS derived_by_id ON derived (id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
-- Counts and bytes per type, status, day, trashed or not, step or not: what
-- the statistics and most counts need, kept by triggers (a few thousand rows
-- instead of a scan of every operation). NULLs are stored as '' (a key).
CREATE TABLE IF NOT EXISTS summary (
    type TEXT NOT NULL, status TEXT NOT NULL, day TEXT NOT NULL, trashed INTEGER NOT NULL,
    step INTEGER NOT NULL, n INTEGER NOT NULL, input_bytes NOT NULL, output_bytes NOT NULL,
    PRIMARY KEY (type, status, day, trashed, step)) WITHOUT ROWID;
-- Durations per type and bucket (two significant digits: see bucket_floor), to
-- find a percentile's row with a short walk instead of counting up to it.
CREATE TABLE IF NOT EXISTS durations (
    type TEXT NOT NULL, status TEXT NOT NULL, trashed INTEGER NOT NULL, step INTEGER NOT NULL,
    bucket INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (type, bucket, status, trashed, step)) WITHOUT ROWID;
-- The lowest and the highest seq of each day's rows (as the summary's day): a
-- search between two dates counts the rows between their days' seqs when no
-- other day's are among them (OperationIndex._day_seqs). A delete never narrows them.
CREATE TABLE IF NOT EXISTS day_seqs (day TEXT PRIMARY KEY, low INTEGER NOT NULL,
                                     high INTEGER NOT NULL) WITHOUT ROWID;
"""
# The secondary indexes: dropped while a rebuild refills the table (indexing
# sorted rows afterwards is several times faster than row by row), then made again.
INDEXES = """
CREATE INDEX IF NOT EXISTS by_created ON operations (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS by_type ON operations (type, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS by_type_status ON operations (type, status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS by_type_duration ON operations (type, duration_ms);
CREATE INDEX IF NOT EXISTS by_status ON operations (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS by_parent ON operations (parent_id);
CREATE INDEX IF NOT EXISTS by_trashed ON operations (trashed_at) WHERE trashed_at IS NOT NULL;
"""
INDEX_NAMES = ("by_created", "by_type", "by_type_status", "by_type_duration", "by_status",
               "by_parent", "by_trashed")
# The summary's key of a row, for ``new`` or ``old`` in a trigger.
_KEY = ("IFNULL({r}.type, ''), IFNULL({r}.status, ''), IFNULL(substr({r}.created_at, 1, 10), ''),"
        " {r}.trashed_at IS NOT NULL, {r}.parent_id IS NOT NULL")
_WHERE_KEY = ("type = IFNULL({r}.type, '') AND status = IFNULL({r}.status, '') AND day = "
              "IFNULL(substr({r}.created_at, 1, 10), '') AND trashed = ({r}.trashed_at IS NOT "
              "NULL) AND step = ({r}.parent_id IS NOT NULL)")
_DURATION_KEY = ("IFNULL({r}.type, ''), IFNULL({r}.status, ''), {r}.trashed_at IS NOT NULL,"
                 " {r}.parent_id IS NOT NULL, {bucket}")
_DURATION_WHERE = ("type = IFNULL({r}.type, '') AND status = IFNULL({r}.status, '') AND trashed "
                   "= ({r}.trashed_at IS NOT NULL) AND step = ({r}.parent_id IS NOT NULL) AND "
                   "bucket = {bucket}")
# A duration's bucket: -1 none, 0 under 1 ms, else digits * 100 + its first two digits
# (1.5 -> 101, 57.4 -> 257, 1234 -> 412): in the order of the durations.
_BUCKET = ("(CASE WHEN {r}.duration_ms IS NULL THEN -1 WHEN {r}.duration_ms < 1 THEN 0 ELSE "
           "length(CAST(CAST({r}.duration_ms AS INTEGER) AS TEXT)) * 100 + "
           "CAST(substr(CAST(CAST({r}.duration_ms AS INTEGER) AS TEXT), 1, 2) AS INTEGER) END)")


def _add(r: str) -> str:
    key = _KEY.format(r=r)
    bucket = _BUCKET.format(r=r)
    return (f"INSERT INTO summary VALUES ({key}, 1, IFNULL({r}.input_bytes, 0), "
            f"IFNULL({r}.output_bytes, 0)) ON CONFLICT DO UPDATE SET n = n + 1, "
            f"input_bytes = input_bytes + excluded.input_bytes, "
            f"output_bytes = output_bytes + excluded.output_bytes;\n"
            f"INSERT INTO durations VALUES ({_DURATION_KEY.format(r=r, bucket=bucket)}, 1) "
            f"ON CONFLICT DO UPDATE SET n = n + 1;\n"
            f"INSERT INTO day_seqs VALUES (IFNULL(substr({r}.created_at, 1, 10), ''), {r}.seq, "
            f"{r}.seq) ON CONFLICT DO UPDATE SET low = MIN(low, excluded.low), "
            f"high = MAX(high, excluded.high);\n")


def _take(r: str) -> str:
    where = _WHERE_KEY.format(r=r)
    dwhere = _DURATION_WHERE.format(r=r, bucket=_BUCKET.format(r=r))
    return (f"UPDATE summary SET n = n - 1, input_bytes = input_bytes - IFNULL({r}.input_bytes, 0),"
            f" output_bytes = output_bytes - IFNULL({r}.output_bytes, 0) WHERE {where};\n"
            f"DELETE FROM summary WHERE n = 0 AND {where};\n"
            f"UPDATE durations SET n = n - 1 WHERE {dwhere};\n"
            f"DELETE FROM durations WHERE n = 0 AND {dwhere};\n")


SUMMARY_TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS summary_insert AFTER INSERT ON operations BEGIN\n"
    f"{_add('new')}END;\n"
    f"CREATE TRIGGER IF NOT EXISTS summary_delete AFTER DELETE ON operations BEGIN\n"
    f"{_take('old')}END;\n"
    f"CREATE TRIGGER IF NOT EXISTS summary_update AFTER UPDATE ON operations BEGIN\n"
    f"{_take('old')}{_add('new')}END;\n")
# The summary of every row at once (after a rebuild has refilled the table).
SUMMARY_FILL = (
    f"DELETE FROM summary;\nDELETE FROM durations;\nDELETE FROM day_seqs;\n"
    f"INSERT INTO summary SELECT {_KEY.format(r='o')}, COUNT(*), SUM(IFNULL(o.input_bytes, 0)),"
    f" SUM(IFNULL(o.output_bytes, 0)) FROM operations o GROUP BY 1, 2, 3, 4, 5;\n"
    f"INSERT INTO durations SELECT {_DURATION_KEY.format(r='o', bucket=_BUCKET.format(r='o'))},"
    f" COUNT(*) FROM operations o GROUP BY 1, 2, 3, 4, 5;\n"
    f"INSERT INTO day_seqs SELECT IFNULL(substr(created_at, 1, 10), ''), MIN(seq), MAX(seq) "
    f"FROM operations GROUP BY 1;\n")
# Prompts searchable with FTS5, kept in step with the table by triggers. A
# row's prompt is in one column of many, named for where the row is: in the
# trash or not, a workflow's step or not, and its type (types this version
# does not know share the last). A search with those filters is then counted
# by the full-text index alone, its columns saying which rows. Contentless
# (the table holds the prompts), rowid = seq; it keeps which columns hold a
# word, not where (searches are words, never phrases: a third less to read);
# prefixes of one to three letters are indexed: the last word is a prefix.
# One more column, ``facets``, holds a word per status, provider, star and
# trash (``statusfailed``, ``providerlocal``, ``starred``, ``trashed``): a
# search filtered by them is counted by the full-text index too. Searches never
# look in that column (and leave it out by name only when a word searched may
# be one of its own: FTS5 reads a word a quarter faster when no column is
# named). For that reason too, a search that names columns only for the trash
# (the usual one: out of it) asks for its word instead: few rows are in the
# trash. One that names them anyway (for the steps or types) names the trash's.
# Most operations succeed: that status has no word, the others do (statusother:
# none or one this version does not know), and a search for it is one without
# the others' words, which FTS5 reads faster than a word of nearly every row.
# And words for the day a row was created, its month and its year (d20261102
# m202611 y2026), when what follows the day sorts from DAY_START to DAY_END as
# the records' own times do (2026-11-02T10:00:00Z and naive times do too; a day
# alone or 2026-11-02T00:00:00 do not, being before DAY_START); ``dateodd`` when
# not: a search between two dates is counted by the full-text index too (see
# date_words). Times are compared as text, as the SQL compares them.
FTS_TYPES = OPERATION_TYPES
_PLACES = len(FTS_TYPES) + 1  # per trash and step: one column per type, one for the others
FTS_COLUMNS = tuple(f"c{n}" for n in range(4 * _PLACES))
_UNWORDED_STATUS = "succeeded"
_FACET_STEMS = ("status", "provider", "starred", "trashed", "dateodd")  # and y2026, d20261102
DAY_START, DAY_END = "T00:00:00.000Z", "T23:59:59.999Z"
ODD = '"dateodd"'  # the full-text expression of rows without date words
_DAY, _YEAR, _MONTH = ("substr({r}.created_at, %s)" % span for span in ("1, 10", "1, 4", "6, 2"))
_DATE_WORDS = (f"CASE WHEN {_DAY} GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]' AND "
               f"{_YEAR} > '0000' AND {_MONTH} BETWEEN '01' AND '12' AND substr({{r}}.created_at,"
               f" 9, 2) BETWEEN '01' AND '31' AND substr({{r}}.created_at, 11) BETWEEN "
               f"'{DAY_START}' AND '{DAY_END}' THEN 'y' || {_YEAR} || ' m' || {_YEAR} || {_MONTH}"
               f" || ' d' || {_YEAR} || {_MONTH} || substr({{r}}.created_at, 9, 2) "
               f"ELSE 'dateodd' END")
_FACETS = ("trim(CASE {r}.status WHEN '" + _UNWORDED_STATUS + "' THEN '' "
           + " ".join(f"WHEN '{v}' THEN 'status{v}'" for v in STATUSES if v != _UNWORDED_STATUS)
           + " ELSE 'statusother' END || ' ' || CASE {r}.provider "
           + " ".join(f"WHEN '{v}' THEN 'provider{v}'" for v in PROVIDERS)
           + " ELSE '' END || CASE WHEN {r}.starred THEN ' starred' ELSE '' END || "
           + "CASE WHEN {r}.trashed_at IS NOT NULL THEN ' trashed' ELSE '' END || ' ' || "
           + _DATE_WORDS + ")")


def fts_column(trashed: bool, step: bool, type_number: int) -> str:
    return FTS_COLUMNS[(2 * trashed + step) * _PLACES + type_number]


PREFIX_INDEXED = 3  # prefixes of up to so many letters have their own entries
FTS_TABLE = f"""
CREATE VIRTUAL TABLE IF NOT EXISTS prompts USING fts5(
    {', '.join(FTS_COLUMNS)}, facets, content='', columnsize=0, detail=column,
    prefix='{' '.join(str(n) for n in range(1, PREFIX_INDEXED + 1))}');
"""
# The words of the full-text index, to find those a prefix stands for (see _spelled).
FTS_TERMS = "CREATE VIRTUAL TABLE IF NOT EXISTS temp.terms USING fts5vocab(main, prompts, instance)"

# The column of row {r}: its number, then the prompt in that column alone, and its facets.
_FTS_PLACE = ("(({r}.trashed_at IS NOT NULL) * 2 + ({r}.parent_id IS NOT NULL)) * "
              f"{_PLACES} + CASE {{r}}.type "
              + " ".join(f"WHEN '{t}' THEN {n}" for n, t in enumerate(FTS_TYPES))
              + f" ELSE {len(FTS_TYPES)} END")
_FTS_VALUES = ("SELECT seq, " + ", ".join(f"CASE place WHEN {n} THEN prompt END"
                                           for n in range(len(FTS_COLUMNS)))
               + ", facets FROM (SELECT {r}.seq AS seq, {r}.prompt AS prompt, " + _FTS_PLACE
               + " AS place, " + _FACETS + " AS facets {source})")
_FTS_ADD = f"INSERT INTO prompts (rowid, {', '.join(FTS_COLUMNS)}, facets) {{values}};\n"
_FTS_TAKE = (f"INSERT INTO prompts (prompts, rowid, {', '.join(FTS_COLUMNS)}, facets) "
             "SELECT 'delete', * FROM ({values});\n")


def _fts_values(r: str, source: str = "") -> str:
    return _FTS_VALUES.format(r=r, source=source)


FTS_TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS prompts_insert AFTER INSERT ON operations BEGIN\n"
    f"{_FTS_ADD.format(values=_fts_values('new'))}END;\n"
    f"CREATE TRIGGER IF NOT EXISTS prompts_delete AFTER DELETE ON operations BEGIN\n"
    f"{_FTS_TAKE.format(values=_fts_values('old'))}END;\n"
    f"CREATE TRIGGER IF NOT EXISTS prompts_update AFTER UPDATE ON operations BEGIN\n"
    f"{_FTS_TAKE.format(values=_fts_values('old'))}"
    f"{_FTS_ADD.format(values=_fts_values('new'))}END;\n")
FTS_FILL = _FTS_ADD.format(values=_fts_values("o", "FROM operations o")).strip().rstrip(";")
TRIGGER_NAMES = ("prompts_insert", "prompts_delete", "prompts_update", "summary_insert",
                 "summary_delete", "summary_update")
COLUMNS = ("id", "type", "status", "created_at", "completed_at", "duration_ms", "provider",
           "model", "prompt", "parent_id", "error", "input_count", "input_bytes",
           "output_bytes", "result_file", "trashed_at", "starred")
UPSERT = (f"INSERT INTO operations ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
          f"ON CONFLICT (id) DO UPDATE SET "
          + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:]))
# A search whose page has more rows to choose from than this walks the date
# index instead of sorting them all (see _walk_search); one with more matches
# than JOIN_MATCHES_UP_TO is counted by testing rows against the matches (see _select).
SORT_MATCHES_UP_TO = 500
JOIN_MATCHES_UP_TO = 5000
# A search matching more than one row in DENSE_FROM reads its matches newest
# first as it walks (see _walk_search); a sparser one tests the rows it walks
# against all its matches. The walk reads rows a chunk at a time, the chunks
# growing from the first to the last size, and matches MATCHES_AT_ONCE at a time.
DENSE_FROM = 100
# A match sorted costs about as much as SORT_COST rows walked (measured at 1,000,000).
SORT_COST = 3
# A last word longer than the indexed prefixes (PREFIX_INDEXED) that starts at
# most PREFIX_WORDS_UP_TO words is searched as those words (see _spelled).
PREFIX_WORDS_UP_TO = 10
WALK_CHUNKS = (256, 8192)
MATCHES_AT_ONCE = 1000
# A search reads its first PROBE matches to tell whether they may be few (see _count_matches).
PROBE = 100


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
            sum(_number(f.get("bytes")) or 0 for f in outputs), record.get("resultFile"),
            record.get("trashedAt") if isinstance(record.get("trashedAt"), str) else None,
            1 if record.get("starred") is True else None)


def sources_of(record: dict) -> list[tuple]:
    """The lineage rows of a record: ``(id, source id, file, relation)``."""
    found = record.get("derivedFrom")
    return [(record["operationId"], d["operationId"], d.get("file"), d.get("relation"))
            for d in (found if isinstance(found, list) else [])
            if isinstance(d, dict) and isinstance(d.get("operationId"), str)]


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class IndexBusy(RuntimeError):
    """Another process is refilling the index (``OperationIndex.refill``)."""

    def __init__(self, pid: int):
        super().__init__(f"the history index is being rebuilt by process {pid}: try again "
                         "when it is done")
        self.pid = pid


class OtherVersion(sqlite3.DatabaseError):
    """An index file made by another version of the studio (an upgrade): rebuilt."""


def hold(path) -> int:
    """An open descriptor of the file at ``path``: while it is open, the
    file's inode is not given to another file."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def file_identity(found: os.stat_result) -> tuple[int, int]:
    return found.st_dev, found.st_ino


class IndexGone(sqlite3.DatabaseError):
    """The index file was removed while in use: rebuilt, never silently made anew."""


class OperationIndex:
    def __init__(self, path):
        self.path = Path(path)
        self._local = threading.local()
        self.has_fts = self.has_json = None
        self.identity = None  # (device, inode) of the file in use, once opened

    def connect(self) -> sqlite3.Connection:
        """This thread's connection, made (and the schema checked) on first use,
        and made again when another process has put a new file in the index's
        place (a rebuild): a connection to the file it replaced would go on
        reading and writing a file nobody else sees. Each connection holds the
        file open, so that its inode cannot be reused by the new one."""
        conn = getattr(self._local, "conn", None)
        identity = self._identity_now()
        if conn is not None and identity == self._local.identity:
            return conn
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS,
                                   isolation_level=None, check_same_thread=False)
            try:
                self._prepare(conn)
                held = hold(self.path)
            except BaseException:
                conn.close()
                raise
            opened = file_identity(os.fstat(held))
            if identity in (None, opened):  # the file was not replaced while it was opened
                break
            conn.close()
            os.close(held)
            identity = self._identity_now()
        self._local.conn, self._local.held = conn, held
        self._local.identity = self.identity = opened
        return conn

    def _identity_now(self) -> tuple[int, int] | None:
        """The identity of the file in the index's place; None before it is
        first made; ``IndexGone`` when it was removed since."""
        try:
            return file_identity(os.stat(self.path))
        except FileNotFoundError:
            if self.identity is not None:
                self.close()
                raise IndexGone(f"the index file {self.path} was removed") from None
            return None

    def _prepare(self, conn) -> None:
        self.has_json = _has_json(conn)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            self.has_fts = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'prompts'"
                                        ).fetchone() is not None
            if self.has_fts:
                conn.execute(FTS_TERMS)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")  # a cache: a crash costs a rebuild, not data
            _refilled_by(conn)
            return
        if version != 0:
            raise OtherVersion(f"index of another version ({version}, expected {SCHEMA_VERSION})")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")  # a cache: a crash costs a rebuild, not data
        conn.executescript(SCHEMA + INDEXES + SUMMARY_TRIGGERS)
        try:
            conn.executescript(FTS_TABLE + FTS_TRIGGERS)
            conn.execute(FTS_TERMS)
            self.has_fts = True
        except sqlite3.OperationalError:  # SQLite built without FTS5: LIKE instead
            self.has_fts = False
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            os.close(self._local.held)
            self._local.conn = None

    def execute(self, sql: str, params=()):
        return self.connect().execute(sql, params)

    # Writing ------------------------------------------------------------------
    def add(self, records) -> None:
        """Insert or replace the rows of ``records`` in one transaction."""
        records = list(records)
        self.add_rows([row_of(r) for r in records], [s for r in records for s in sources_of(r)])

    def add_rows(self, rows: list, sources: list) -> None:
        """``add`` of rows made already (``row_of``, ``sources_of``)."""
        if rows:
            with self._transaction() as conn:
                conn.executemany(UPSERT, rows)
                conn.executemany("DELETE FROM derived WHERE id = ?", [(r[0],) for r in rows])
                conn.executemany("INSERT INTO derived VALUES (?, ?, ?, ?)", sources)

    def remove(self, ids) -> None:
        ids = [(i,) for i in ids]
        if ids:
            with self._transaction() as conn:
                conn.executemany("DELETE FROM operations WHERE id = ?", ids)
                conn.executemany("DELETE FROM derived WHERE id = ?", ids)

    @contextlib.contextmanager
    def refill(self, empty: bool = True):
        """Empty the index (unless not ``empty``: it is, but for rows written
        since) and fill it fast: while the caller adds rows, the secondary
        indexes, the full-text entries and the summary are left aside; they
        are made from all the rows at once at the end. Meanwhile the index is
        marked as being refilled (``refilled_by``), so that other processes
        answer from the records, and what they write is kept. A refill whose
        process dies half-way is refused by the next connection (``_prepare``),
        so the index is rebuilt."""
        with self._transaction() as conn:
            other = _refilled_by(conn)
            if other not in (None, os.getpid()):
                raise IndexBusy(other)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('refill', ?)",
                         (f"{os.getpid()} {time.time()}",))
            conn.execute("DELETE FROM meta WHERE key = 'progress'")  # the refill's, for others
            if empty:
                self._empty(conn)
            else:
                self._drop_triggers(conn)
            for name in INDEX_NAMES:
                conn.execute(f"DROP INDEX IF EXISTS {name}")
        try:
            yield
        finally:
            for statement in _statements(INDEXES):  # each its own short transaction
                self.execute(statement)
            with self._transaction() as conn:
                if self.has_fts:  # every row's entry, those written before the refill too
                    conn.execute("INSERT INTO prompts (prompts) VALUES ('delete-all')")
                    conn.execute(FTS_FILL)
                for statement in _statements(SUMMARY_FILL):
                    conn.execute(statement)
                self._make_triggers(conn)
                conn.execute("DELETE FROM meta WHERE key = 'refill'")
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('refilled', ?)",
                             (str(time.time()),))

    def refilled_by(self) -> int | None:
        """The process refilling this index now: until it ends, the index
        holds only part of the rows."""
        return _refilled_by(self.connect())

    def _empty(self, conn) -> None:
        self._drop_triggers(conn)
        for table in ("operations", "derived", "summary", "durations", "day_seqs"):
            conn.execute(f"DELETE FROM {table}")  # without triggers: at once
        if self.has_fts:
            conn.execute("INSERT INTO prompts (prompts) VALUES ('delete-all')")

    def _drop_triggers(self, conn) -> None:
        for name in TRIGGER_NAMES:
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")

    def _make_triggers(self, conn) -> None:
        for statement in _statements(SUMMARY_TRIGGERS + (FTS_TRIGGERS if self.has_fts else "")):
            conn.execute(statement)

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

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

    def types(self) -> list[str]:
        """The operation types the history holds."""
        return [t for t, in self.execute("SELECT DISTINCT type FROM summary WHERE n > 0 "
                                         "AND type != '' ORDER BY type")]

    def with_status(self, statuses) -> list[str]:
        statuses = list(statuses)
        return [r[0] for r in self.execute(
            f"SELECT id FROM operations WHERE status IN ({', '.join('?' * len(statuses))})",
            statuses)]

    def used_by(self, op_id: str) -> list[tuple]:
        """``(id, relation, file)`` of the operations made from ``op_id``, oldest first."""
        return self.execute("SELECT d.id, d.relation, d.file FROM derived d JOIN operations o "
                            "ON o.id = d.id WHERE d.source = ? ORDER BY o.created_at, d.id",
                            (op_id,)).fetchall()

    def trashed_before(self, cutoff: str) -> list[str]:
        return [r[0] for r in self.execute("SELECT id FROM operations WHERE trashed_at < ?",
                                           (cutoff,))]

    def steps_of(self, op_id: str) -> list[str]:
        return [r[0] for r in self.execute("SELECT id FROM operations WHERE parent_id = ?",
                                           (op_id,))]

    def created_before(self, cutoff: str) -> list[tuple[str, int, str]]:
        """``(id, bytes, created)`` of operations created before ``cutoff``,
        with the steps of workflows created before it (a step may end after the
        cutoff: left alone, it would be taken for a workflow lost), oldest first."""
        size = "COALESCE({r}.input_bytes, 0) + COALESCE({r}.output_bytes, 0)"
        return self.execute(
            f"SELECT id, {size.format(r='o')}, created_at FROM operations o "
            f"WHERE created_at < ? UNION "
            f"SELECT s.id, {size.format(r='s')}, s.created_at FROM operations p "
            f"JOIN operations s ON s.parent_id = p.id WHERE p.created_at < ? "
            f"ORDER BY 3", (cutoff, cutoff)).fetchall()

    def count(self, filters: Filters) -> int:
        return self.page(filters, 0)[1]

    def page(self, filters: Filters, limit: int, offset: int = 0,
             before: str | None = None) -> tuple[list[str], int, str | None]:
        """``(ids, total, next_cursor)`` for one page, newest first; ``before``
        is the id of the last row already seen (it must be indexed). One read
        transaction: the count and the page are of one snapshot."""
        with self._snapshot():
            return self._page(filters, limit, offset, before)

    def _page(self, filters: Filters, limit: int, offset: int, before: str | None):
        search = self._search(filters)
        # The rows a search may select: its dates' days', or all (no search: not needed)
        rows = (search.rows if search.rows is not None else self._rows()) if search else 0
        matches, total, search = self._quick_count(filters, search, rows // DENSE_FROM)
        if total is None:
            count_by = "member" if matches and matches > JOIN_MATCHES_UP_TO else "join"
            source, where, params = self._select(filters, count_by, search)
            total = self.execute(f"SELECT COUNT(*){source}{where}", params).fetchone()[0]
        if limit == 0:
            return [], total, None
        # Few rows to show: sort them. Many: walk the dates, the first page comes quickly,
        # unless the matches are so sparse among the rows walked (those of the dates) that
        # the walk would be the longer (a row walked costs a third of a match sorted).
        want = offset + limit + 1
        walk = (matches is not None and total > SORT_MATCHES_UP_TO
                and matches * matches * SORT_COST > rows * want)
        if walk and matches * DENSE_FROM > rows:
            found = self._walk_search(filters, search, want, before)[offset:]
        else:
            source, where, params = self._select(filters, "walk" if walk else "join", search)
            where, params = self._before(where, params, before)
            found = [r[0] for r in self.execute(
                f"SELECT id{source}{where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                params + [limit + 1, offset])]
        ids = found[:limit]
        return ids, total, ids[-1] if len(found) > limit else None

    def _search(self, filters: Filters) -> "_Search | None":
        """The full-text queries of a search (``fts_query``), or None when there
        is none. A long last word is spelled as the few words it is a prefix of
        (their list is the index's own): FTS5 reads a prefix's matches whole,
        twice a page (count, then page), where it skips through words' matches.
        Dates are the rows between two seqs when those are the rows of their
        days (``_day_seqs``); if not, the words of the days, months and years
        between them (see ``date_words``): those that cover fewer rows, wanted
        or unwanted. Either way, the rows of a day the dates cut are found by
        that day's word, to be tested."""
        if not filters.q:
            return None
        self.connect()
        if not self.has_fts:
            return None
        last = self._spelled(filters)
        if not (filters.since or filters.until):
            match = fts_query(filters, last)
            return _Search(match, match)
        years, inside, rows = [], 0, 0
        for year, n, within in self.execute(
                "SELECT substr(day, 1, 4), SUM(n), SUM(CASE WHEN day >= ? AND day <= ? THEN n "
                "ELSE 0 END) FROM summary GROUP BY 1",
                ((filters.since or "")[:10], (filters.until or "\U0010ffff")[:10])):
            years += [year] if len(year) == 4 and year.isascii() and year.isdigit() else []
            rows, inside = rows + n, inside + within
        words = date_words(filters.since, filters.until, years)
        checked = fts_query(filters, last, any_of=words["edge"] + [ODD])
        if seqs := self._day_seqs(filters.since, filters.until):
            match = fts_query(filters, last)
            return _Search(match, match, checked, inside, seqs)
        if 2 * inside <= rows:  # the days' words within, and at the ends
            counted = fts_query(filters, last, any_of=words["in"]) if words["in"] else None
            return _Search(fts_query(filters, last, any_of=words["in"] + words["edge"]
                                     + [ODD]), counted, checked, inside)
        return _Search(fts_query(filters, last, none_of=words["out"]),  # the days' words out
                       fts_query(filters, last, none_of=words["out"] + words["edge"]
                                 + [ODD]), checked, inside)

    def _day_seqs(self, since: str | None, until: str | None) -> tuple[int, int] | None:
        """The lowest and the highest seq of the rows of the days from ``since``
        to ``until``, when no row of another day lies between them: the rows
        between them are then those of these days. None when some may (rows
        written out of the order of their days, as a restored archive's), or
        when these days have none. FTS5 counts a word's rows within a range of
        rowids about twice as fast as those with (or without) the days' words."""
        low, high = (since or "")[:10], (until or "\U0010ffff")[:10]
        first, last = self.execute("SELECT MIN(low), MAX(high) FROM day_seqs WHERE day >= ? "
                                   "AND day <= ?", (low, high)).fetchone()
        if first is None or self.execute(
                "SELECT 1 FROM day_seqs WHERE (day < ? OR day > ?) AND low <= ? AND high >= ? "
                "LIMIT 1", (low, high, last, first)).fetchone():
            return None
        return first, last

    def _spelled(self, filters: Filters) -> list[str] | None:
        """The words the last word of the search starts, when it is longer than
        the indexed prefixes, ASCII, and they are few; None otherwise."""
        searched = words(filters.q)
        prefix = searched[-1].lower() if searched else ""
        if len(prefix) <= PREFIX_INDEXED or not prefix.isascii():
            return None
        found, after = [], prefix
        while len(found) <= PREFIX_WORDS_UP_TO:
            row = self.execute("SELECT term FROM terms WHERE term >= ? AND term < ? LIMIT 1",
                               (after, prefix + "\U0010ffff")).fetchone()
            if row is None:
                return found
            found.append(row[0])
            after = row[0] + "\x01"  # the next word: none holds a control character
        return None

    def _rows(self) -> int:
        return self.execute("SELECT IFNULL(SUM(n), 0) FROM summary").fetchone()[0]

    def _before(self, where: str, params: list, before: str | None) -> tuple[str, list]:
        """``where`` selecting only rows after the cursor ``before`` (an id)."""
        if not before:
            return where, params
        return _also(where, "(created_at, id) < (?, ?)"), params + [self.created_at(before), before]

    def _walk_search(self, filters: Filters, search: "_Search", want: int,
                     before: str | None) -> list[str]:
        """The first ``want`` ids of a search with many, dense matches, newest first.

        The rows that pass the other filters are read from the dates' index a
        chunk at a time, and tested against the full-text matches read newest
        seq first (``_Matches``): a seq is the order a row was written in, close
        to the order of creation (records are added as they are made, and a
        rebuild adds them day by day), so the matches read are about those of
        the rows walked. The cost follows the page, not the number of matches.
        One read transaction: chunks and matches of one snapshot.
        """
        # The trash, the steps and the facets are the matches' to say: the rows
        # walked are then read from the index alone.
        source, where, params = self._select(dataclasses.replace(
            filters, q="", trash="include", toplevel=False, starred=False,
            status=None if filters.status in STATUSES else filters.status,
            provider=None if filters.provider in PROVIDERS else filters.provider))
        found, size = [], WALK_CHUNKS[0]
        with self._snapshot() as conn:
            matches = _Matches(conn, search)
            while len(found) < want:
                chunk_where, chunk_params = self._before(where, params, before)
                rows = conn.execute(f"SELECT seq, id{source}{chunk_where} ORDER BY created_at "
                                    f"DESC, id DESC LIMIT ?", chunk_params + [size]).fetchall()
                found += [op_id for seq, op_id in rows if matches.has(seq)]
                if len(rows) < size:
                    break
                before, size = rows[-1][1], min(2 * size, WALK_CHUNKS[1])
        return found[:want]

    @contextlib.contextmanager
    def _snapshot(self):
        """This thread's connection inside one read transaction (WAL: a snapshot)."""
        conn = self.connect()
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def export_rows(self, filters: Filters):
        """A cursor over the rows (``COLUMNS``) selected, newest first."""
        source, where, params = self._select(filters)
        return self.execute(f"SELECT {', '.join(COLUMNS)}{source}{where} "
                            f"ORDER BY created_at DESC, id DESC", params)

    def _quick_count(self, filters: Filters, search: "_Search | None",
                     few: int) -> tuple[int | None, int | None, "_Search | None"]:
        """``(prompts matching the search or None, the count or None, the
        search, with its matches when they are at most ``few``)``: the
        count comes from the summary, or from the full-text index (whose columns
        know the trash, the steps and the types, and its facets the trash too,
        the status, the provider, the star and the days) when the search has no
        other filter; rows of a day the dates cut, or whose time is odd, are
        tested one by one."""
        summary = _summary_where(filters)
        if summary is not None:
            return None, self.execute(f"SELECT IFNULL(SUM(n), 0) FROM summary{summary[0]}",
                                      summary[1]).fetchone()[0], search
        if search is None:
            return None, None, None
        if search.checked is None:  # no dates: what is counted is what matches
            matches, search = self._count_matches(search, few)
            return matches, matches if fts_counts(filters) else None, search
        if not fts_counts(filters):
            return self._fts_count(search.match, search.seqs), None, search
        counted = self._fts_count(search.counted, search.seqs)
        checked = self._fts_count(search.checked, search.seqs)
        if search.seqs:  # FTS5 counts a range faster than the rows not to test
            counted -= checked
        total = counted
        if checked:
            source, where, params = self._select(filters, "join", dataclasses.replace(
                search, match=search.checked))
            total += self.execute(f"SELECT COUNT(*){source}{where}", params).fetchone()[0]
        return counted + checked, total, search

    def _count_matches(self, search: "_Search", few: int) -> tuple[int, "_Search"]:
        """How many rows ``search.match`` selects, and the search with their
        seqs (``known``) when they are at most ``few``: the page then reads
        them from that list, not from FTS5 a second time (a walk of the dates
        tested against "dragon watercolor"'s 7,586 matches: 4 ms, not 13).
        Reading ``few`` matches of a word of many costs a fifth of its count:
        the first ``PROBE`` matches tell how dense they are, and so whether
        they may be few, before."""
        if not self.has_json:
            return self._fts_count(search.match, search.seqs), search
        rows, params = _matching(search.match, search.seqs)
        probe = [r for r, in self.execute(f"SELECT rowid{rows} LIMIT ?", params + [PROBE + 1])]
        if len(probe) <= PROBE:
            return len(probe), dataclasses.replace(search, known=json.dumps(probe))
        low, high = self.execute("SELECT (SELECT MIN(seq) FROM operations), "
                                 "(SELECT MAX(seq) FROM operations)").fetchone()
        # As dense further on, they may be few (a half more: the probe only estimates)
        if 2 * PROBE * (high - low) <= 3 * few * (probe[-1] - probe[0]):
            n, known = self.execute(f"SELECT COUNT(*), '[' || group_concat(rowid) || ']' "
                                    f"FROM (SELECT rowid{rows} LIMIT ?)",
                                    params + [few + 1]).fetchone()
            if n <= few:
                return n, dataclasses.replace(search, known=known)
        return self._fts_count(search.match, search.seqs), search

    def _fts_count(self, query: str | None, seqs: tuple[int, int] | None) -> int:
        """The rows of a full-text query (whose seq is within ``seqs``); 0 for none."""
        if query is None:
            return 0
        rows, params = _matching(query, seqs)
        return self.execute(f"SELECT COUNT(*){rows}", params).fetchone()[0]

    def stats(self, filters: Filters, days: int = 30) -> dict:
        """Counts, success rate, durations, operations per day and storage."""
        since = (datetime.now(timezone.utc) - timedelta(days=days - 1)).strftime("%Y-%m-%d")
        summary = _summary_where(filters)
        source, where, params = self._select(filters)
        if summary is not None:  # from the summary: a few thousand rows
            groups = self.execute(f"SELECT NULLIF(type, ''), NULLIF(status, ''), SUM(n), "
                                  f"SUM(input_bytes), SUM(output_bytes) FROM summary{summary[0]}"
                                  f" GROUP BY type, status", summary[1])
            per_day = self.execute(f"SELECT day, SUM(n) FROM summary{_also(summary[0], 'day >= ?')}"
                                   f" GROUP BY day ORDER BY day", summary[1] + [since])
            percentiles = self._bucketed_percentiles(summary, source, where, params)
        else:
            groups = self.execute(f"SELECT type, status, COUNT(*), SUM(input_bytes), "
                                  f"SUM(output_bytes){source}{where} GROUP BY type, status", params)
            per_day = self.execute(
                f"SELECT substr(created_at, 1, 10) AS day, COUNT(*){source}"
                f"{_also(where, 'created_at >= ?')} GROUP BY day ORDER BY day", params + [since])
            percentiles = self._duration_percentiles(source, where, params)
        by_type = {}
        for op_type, status, count, in_bytes, out_bytes in groups.fetchall():
            entry = by_type.setdefault(op_type, {"count": 0, "succeeded": 0, "failed": 0,
                                                 "bytes": 0})
            entry["count"] += count
            entry[status] = entry.get(status, 0) + count
            entry["bytes"] += (in_bytes or 0) + (out_bytes or 0)
        for op_type, median, p95 in percentiles:
            by_type.setdefault(op_type, {})["durationMs"] = {"median": median, "p95": p95}
        total = sum(e["count"] for e in by_type.values())
        succeeded = sum(e["succeeded"] for e in by_type.values())
        failed = sum(e["failed"] for e in by_type.values())
        return {"total": total, "succeeded": succeeded, "failed": failed,
                "successRate": round(succeeded / total, 4) if total else None,
                "byType": by_type, "perDay": dict(per_day.fetchall()), "days": days,
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
                      for rank in _ranks(n)]
            rows.append((op_type, *values))
        return rows

    def _bucketed_percentiles(self, summary, source: str, where: str, params: list):
        """As ``_duration_percentiles``, but each rank's bucket is found in the
        ``durations`` table, so the walk through the index starts at the
        bucket's floor and is short."""
        buckets = {}
        for op_type, bucket, n in self.execute(
                f"SELECT NULLIF(type, ''), bucket, SUM(n) FROM durations{summary[0]} "
                f"GROUP BY type, bucket ORDER BY type, bucket", summary[1]):
            buckets.setdefault(op_type, []).append((bucket, n))
        rows = []
        for op_type, counts in buckets.items():
            values = []
            for rank in _ranks(sum(n for _, n in counts)):
                bucket, before = _bucket_of(counts, rank)
                condition = ("duration_ms IS NULL" if bucket < 0 else "duration_ms IS NOT NULL"
                             if bucket == 0 else "duration_ms >= ?")
                floor = [bucket_floor(bucket)] if bucket > 0 else []
                values.append(self.execute(
                    f"SELECT duration_ms{source}{_also(_also(where, 'type IS ?'), condition)} "
                    f"ORDER BY duration_ms LIMIT 1 OFFSET ?",
                    params + [op_type] + floor + [rank - 1 - before]).fetchone()[0])
            rows.append((op_type, *values))
        return rows

    def _select(self, filters: Filters, how: str = "join",
                search: "_Search | None" = None) -> tuple[str, str, list]:
        """``(" FROM ...", " WHERE ..." or "", params)`` selecting the matching rows.

        How a prompt search is joined: ``join`` starts from the full-text
        matches (CROSS JOIN keeps that order), best when they are few;
        ``member`` tests rows against the matches and lets SQLite choose the
        index (a count with other filters); ``walk`` walks the date index
        testing each row: a first page when matches are many but sparse.
        ``search``: the filters' ``_search``, when known already (its match
        is every row the SQL may select; the SQL tests the rest).
        """
        source, clauses, params = " FROM operations", [], []
        if filters.q:
            self.connect()
            search = (search or self._search(filters)) if self.has_fts else None
            if search:
                rows, params = search.source()
            if search and how in ("member", "walk"):
                # "+seq": not through the rowid, so that a walk follows the dates' index
                clauses.append(f"{'+seq' if how == 'walk' else 'seq'} IN (SELECT rowid{rows})")
            elif search:
                source = (f" FROM (SELECT rowid AS seq{rows}) AS matched"
                          " CROSS JOIN operations USING (seq)")
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
        # A full-text search's columns (or facets) say which trash and whether steps.
        searched = filters.q and self.has_fts
        if filters.trash == "exclude" and not searched:
            clauses.append("trashed_at IS NULL")
        elif filters.trash == "only" and not searched:
            clauses.append("trashed_at IS NOT NULL")
        if filters.starred:
            clauses.append("starred = 1")
        if filters.toplevel and not searched:  # "+": not through by_parent (most are top-level)
            clauses.append("+parent_id IS NULL")
        if filters.ids:
            clauses.append(f"id IN ({', '.join('?' * len(filters.ids))})")
            params += list(filters.ids)
        if filters.since:
            clauses.append("created_at >= ?")
            params.append(filters.since)
        if filters.until:
            clauses.append("created_at <= ?")
            params.append(filters.until)
        return source, (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _ranks(n: int) -> tuple[int, int]:
    """The nearest ranks of the median and the 95th percentile among ``n``."""
    return (n + 1) // 2, max(1, -(-95 * n // 100))


def bucket_floor(bucket: int) -> int:
    """The smallest duration of a bucket above 0 (see ``_BUCKET``): 101 -> 1,
    257 -> 57, 412 -> 1200."""
    digits, lead = divmod(bucket, 100)
    return lead * 10 ** max(0, digits - 2)


def _bucket_of(counts: list, rank: int) -> tuple[int, int]:
    """The bucket holding the ``rank``-th duration, and how many come before it."""
    before = 0
    for bucket, n in counts:
        if before + n >= rank:
            return bucket, before
        before += n
    raise ValueError(f"rank {rank} beyond {before} durations")


def _summary_where(filters: Filters) -> tuple[str, list] | None:
    """``(" WHERE ...", params)`` on the summary (and durations) tables for
    ``filters``; None when they select by more than the summary keeps."""
    if filters != Filters(types=filters.types, status=filters.status, trash=filters.trash,
                          toplevel=filters.toplevel):
        return None
    clauses, params = [], []
    if filters.types:
        clauses.append(f"type IN ({', '.join('?' * len(filters.types))})")
        params += list(filters.types)
    if filters.status:
        clauses.append("status = ?")
        params.append(filters.status)
    if filters.trash != "include":
        clauses.append(f"trashed = {1 if filters.trash == 'only' else 0}")
    if filters.toplevel:
        clauses.append("step = 0")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _statements(script: str) -> list[str]:
    """The SQL statements of ``script`` (triggers whole), to run one by one in
    a transaction (``executescript`` would commit first)."""
    found, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            found.append(current.strip())
            current = ""
    return [s for s in found if s and not s.startswith("--")]


def _refilled_by(conn) -> int | None:
    """The process refilling the index now (``OperationIndex.refill``), or
    None. A refill whose process died left the index without its secondary
    indexes, and with only part of its rows: that index must be rebuilt."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'refill'").fetchone()
    if row is None:
        return None
    pid, started = row[0].split()
    if not liveness.alive(int(pid), since=float(started)):
        raise sqlite3.DatabaseError("a rebuild of the index was interrupted (process "
                                    f"{pid} is gone)")
    return int(pid)


def cutoff(older_than: timedelta) -> str:
    return iso(datetime.now(timezone.utc) - older_than)


def fts_query(filters: Filters, last: list[str] | None = None, any_of: list[str] | None = None,
              none_of: list[str] = ()) -> str:
    """Every word of ``filters.q`` must appear (the last as a prefix, or as
    one of ``last``: the words it is a prefix of), in the columns of the rows
    the filters' trash, steps and types select, with the facets they ask for,
    one of the facets' expressions ``any_of`` (when given, not empty) and none
    of ``none_of`` (``date_words``).
    Only words reach FTS5, one token each, so its syntax never does."""
    searched = words(filters.q)
    terms = [f'"{w}"' for w in searched[:-1]]
    if not searched:
        terms.append('""')
    elif last is None:
        terms.append(f'"{searched[-1]}"*')
    elif not last:  # no word starts so: none matches
        terms.append(f'"{searched[-1]}"')
    else:
        spelled = " OR ".join(f'"{w}"' for w in last)
        terms.append(spelled if len(last) == 1 else f"({spelled})")
    # Columns named for the trash alone: its word costs less.
    trash_word = _fts_columns(dataclasses.replace(filters, trash="include")) is None
    columns = None if trash_word else _fts_columns(filters)
    if columns:
        query = f"{{{' '.join(columns)}}} : ({' AND '.join(terms)})"
    elif searched and not any(map(_may_be_facet, searched)):
        query = f"({' AND '.join(terms)})"  # reading which column holds a word costs a quarter
    else:
        query = f"- {{facets}} : ({' AND '.join(terms)})"
    wanted, unwanted = _facets(filters, trash_word)
    anything = [" OR ".join(any_of)] if any_of is not None else []
    query = " AND ".join([query] + [f'{{facets}} : "{f}"' for f in wanted]
                         + [f"{{facets}} : ({f})" for f in anything])
    unwanted = [f'"{f}"' for f in unwanted] + list(none_of)
    if unwanted:
        query = f"({query}) NOT {{facets}} : ({' OR '.join(unwanted)})"
    return query


def _may_be_facet(word: str) -> bool:
    """Whether ``word`` searched (as itself or as a prefix) may meet a word of
    the ``facets`` column (``statusfailed``, ``providerlocal``, ``starred``,
    ``trashed``, ``d20261102``, ``dateodd``...), as FTS5 folds it."""
    word = word.lower()
    if not word.isascii():
        return True  # FTS5 takes its accents off: it may become one
    if word[0] in "ymd" and (word[1:].isdigit() or len(word) == 1):
        return True
    return any(word.startswith(stem) or stem.startswith(word) for stem in _FACET_STEMS)


def _facets(filters: Filters, trash_word: bool = False) -> tuple[list[str], list[str]]:
    """The words of the ``facets`` column that ``filters`` want, and those they
    do not; the trash's too when ``trash_word``."""
    wanted = ([f"provider{filters.provider}"] * (filters.provider in PROVIDERS)
              + ["starred"] * filters.starred
              + ["trashed"] * (trash_word and filters.trash == "only"))
    unwanted = ["trashed"] * (trash_word and filters.trash == "exclude")
    if filters.status == _UNWORDED_STATUS:
        return wanted, unwanted + [f"status{s}" for s in (*STATUSES, "other")
                                   if s != _UNWORDED_STATUS]
    return wanted + [f"status{filters.status}"] * (filters.status in STATUSES), unwanted


def _fts_columns(filters: Filters) -> list[str] | None:
    """The full-text columns of the rows ``filters`` select by trash, step and
    type; None when that is every column."""
    trashed = {"exclude": (False,), "only": (True,)}.get(filters.trash, (False, True))
    steps = (False,) if filters.toplevel else (False, True)
    numbers = sorted({_type_number(t) for t in filters.types}) or range(_PLACES)
    if len(trashed) * len(steps) * len(numbers) == len(FTS_COLUMNS):
        return None
    return [fts_column(t, s, n) for t in trashed for s in steps for n in numbers]


def _type_number(op_type: str) -> int:
    return FTS_TYPES.index(op_type) if op_type in FTS_TYPES else len(FTS_TYPES)


def date_words(since: str | None, until: str | None, years: list[str]) -> dict[str, list[str]]:
    """The full-text expressions of the date words (see ``_DATE_WORDS``) of
    every day of ``years``, by where the day is: ``in`` the dates, at an
    ``edge`` (a day they take part of: its rows must be tested) or ``out``.
    A year's or a month's word when all its days are alike; a month the dates
    cut is its word less its other days where most of its days are, and those
    days (FTS5 reads a few words faster than thirty). Days are compared as the
    times are, as text, so that a time of any form is where the SQL finds it."""
    low, high = (since or "")[:10], (until or "")[:10]
    cut_low = since is not None and since[10:] > DAY_START
    cut_high = until is not None and until[10:] < DAY_END

    def place(day: str) -> str:
        if since and day < low or until and day > high:
            return "out"
        return "edge" if day == low and cut_low or day == high and cut_high else "in"

    def span(first: str, last: str) -> str | None:
        """The place of every day from ``first`` to ``last``; None when they differ."""
        if since and last < low or until and first > high:
            return "out"
        return "in" if place(first) == place(last) == "in" else None

    found = {"in": [], "edge": [], "out": []}
    for year in years:
        if where := span(f"{year}-01-01", f"{year}-12-31"):
            found[where].append(f'"y{year}"')
            continue
        for month in (f"{m:02d}" for m in range(1, 13)):
            if where := span(f"{year}-{month}-01", f"{year}-{month}-31"):
                found[where].append(f'"m{year}{month}"')
                continue
            places = {f"d{year}{month}{d:02d}": place(f"{year}-{month}-{d:02d}")
                      for d in range(1, 32)}
            most = max(("in", "out"), key=list(places.values()).count)
            others = [f'"{day}"' for day, where in places.items() if where != most]
            found[most].append(f'("m{year}{month}" NOT ({" OR ".join(others)}))' if others
                               else f'"m{year}{month}"')  # all out: since after until
            for day, where in places.items():
                found[where] += [f'"{day}"'] if where != most else []
    return found


def fts_counts(filters: Filters) -> bool:
    """Whether the full-text index alone counts a search with ``filters``
    (the rows of a day the dates cut aside: see ``_quick_count``)."""
    return (filters == Filters(q=filters.q, trash=filters.trash, types=filters.types,
                               toplevel=filters.toplevel, status=filters.status,
                               provider=filters.provider, starred=filters.starred,
                               since=filters.since, until=filters.until)
            and all(t in FTS_TYPES for t in filters.types)
            and filters.status in (None, *STATUSES) and filters.provider in (None, *PROVIDERS))


@dataclasses.dataclass(frozen=True)
class _Search:
    """A search's full-text queries: ``match``, every row it may select (the
    SQL tests the rest); ``counted``, rows it selects that the full-text index
    counts alone (None: none); ``checked``, rows whose time the SQL must test;
    ``rows``, how many rows the dates' days hold (None: no dates); ``seqs``,
    when given, the lowest and highest seq of the rows of all three (whose
    ``counted`` then holds the ``checked``, to be taken away); ``known``, the
    seqs ``match`` selects, read already (a JSON array)."""
    match: str
    counted: str | None
    checked: str | None = None
    rows: int | None = None
    seqs: tuple[int, int] | None = None
    known: str | None = None

    def source(self) -> tuple[str, list]:
        """``(" FROM ...", params)``: the rows ``match`` selects, as ``rowid``."""
        if self.known is not None:
            return " FROM (SELECT value AS rowid FROM json_each(?))", [self.known]
        return _matching(self.match, self.seqs)


class _Matches:
    """The full-text matches of a search, read newest seq first only as far as asked."""

    def __init__(self, conn, search: _Search):
        rows, params = search.source()
        self._cursor = conn.execute(f"SELECT rowid{rows} ORDER BY rowid DESC", params)
        self._seqs = set()
        self._floor = float("inf")  # every match at or above it has been read

    def has(self, seq: int) -> bool:
        while seq < self._floor:
            batch = self._cursor.fetchmany(MATCHES_AT_ONCE)
            if not batch:
                self._floor = float("-inf")
                break
            self._seqs.update(r for r, in batch)
            self._floor = batch[-1][0]
        return seq in self._seqs


def _matching(query: str, seqs: tuple[int, int] | None) -> tuple[str, list]:
    """``(" FROM prompts WHERE ...", params)``: the rows of a full-text query,
    those whose seq is within ``seqs`` when given."""
    if seqs is None:
        return " FROM prompts WHERE prompts MATCH ?", [query]
    return " FROM prompts WHERE prompts MATCH ? AND rowid BETWEEN ? AND ?", [query, *seqs]


def _has_json(conn) -> bool:
    """Whether this SQLite has its JSON functions (built in since 3.38)."""
    try:
        conn.execute("SELECT json_array_length('[]')")
    except sqlite3.OperationalError:
        return False
    return True


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
