"""History queries over the index: filters, stable pages, statistics.

Pages are ordered newest first by (createdAt, id). Besides limit/offset, a
cursor (``before=<id>``) gives pages that stay put while new operations
arrive: the next page starts strictly after the last row seen.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from . import inputs
from .catalog import OPERATION_TYPES
from .errors import ApiError
from .store import ID_PATTERN

STATUSES = ("succeeded", "failed")
PROVIDERS = ("local", "replicate", "fal")
MAX_QUERY_CHARS = 500
# A search whose page has more rows to choose from than this walks the date
# index instead of sorting them all; one with more matches than JOIN_MATCHES_UP_TO
# is counted by testing rows against the matches (see Filters.sql).
SORT_MATCHES_UP_TO = 500
JOIN_MATCHES_UP_TO = 5000


@dataclass
class Filters:
    types: list = field(default_factory=list)
    status: str | None = None
    provider: str | None = None
    q: str | None = None
    since: str | None = None  # ISO 8601 UTC, as in the records
    until: str | None = None
    parent_id: str | None = None

    def sql(self, index, search: str = "join") -> tuple[str, str, list]:
        """``(" FROM ...", " WHERE ..." or "", params)`` selecting the matching rows.

        How a prompt search is joined: ``join`` starts from the full-text
        matches (CROSS JOIN keeps that order), best when they are few;
        ``member`` tests rows against the matches and lets SQLite choose the
        index (a count with other filters); ``walk`` walks the date index
        testing each row: the way to a first page when matches are many.
        """
        source, clauses, params = " FROM operations", [], []
        if self.q:
            index.connect()
            if index.has_fts and search in ("member", "walk"):
                if search == "walk":
                    source = " FROM operations INDEXED BY by_created"
                clauses.append("seq IN (SELECT rowid FROM prompts WHERE prompts MATCH ?)")
                params.append(fts_query(self.q))
            elif index.has_fts:
                source = (" FROM (SELECT rowid AS seq FROM prompts WHERE prompts MATCH ?) AS matched"
                          " CROSS JOIN operations USING (seq)")
                params.append(fts_query(self.q))
            else:
                clauses.append("prompt LIKE ? ESCAPE '\\'")
                params.append("%" + self.q.replace("\\", "\\\\").replace("%", "\\%")
                              .replace("_", "\\_") + "%")
        if self.types:
            clauses.append(f"type IN ({', '.join('?' * len(self.types))})")
            params += list(self.types)
        for column, value in (("status", self.status), ("provider", self.provider),
                              ("parent_id", self.parent_id)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.since:
            clauses.append("created_at >= ?")
            params.append(self.since)
        if self.until:
            clauses.append("created_at <= ?")
            params.append(self.until)
        return source, (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def also(where: str, condition: str) -> str:
    """``where`` with one more condition."""
    return where + (" AND " if where else " WHERE ") + condition


def filters_from(args) -> Filters:
    """Filters from a query string (or the CLI's options); 400 naming what is allowed."""
    types = args.getlist("type")
    for name in types:
        if name not in OPERATION_TYPES:
            raise ApiError(f"type must be one of {', '.join(OPERATION_TYPES)} (got {name!r})",
                           field="type")
    q = (args.get("q") or "").strip() or None
    if q and len(q) > MAX_QUERY_CHARS:
        raise ApiError(f"q is {len(q)} characters long; the limit is {MAX_QUERY_CHARS}", field="q")
    parent = args.get("parentId") or None
    if parent and not ID_PATTERN.match(parent):
        raise ApiError(f"parentId must be an operation id such as 20261124_k3j5x2m7qa9b "
                       f"(got {parent!r})", field="parentId")
    since, until = when(args.get("since"), "since"), when(args.get("until"), "until", end=True)
    if since and until and since > until:
        raise ApiError(f"since ({args.get('since')}) is after until ({args.get('until')})",
                       field="since")
    return Filters(types=types, status=inputs.choice("status", STATUSES, source=args),
                   provider=inputs.choice("provider", PROVIDERS, source=args), q=q,
                   since=since, until=until, parent_id=parent)


def when(value: str | None, name: str, end: bool = False) -> str | None:
    """A date (``2026-11-24``, the whole day) or an ISO 8601 moment, as the
    records write it (UTC, milliseconds, ``Z``)."""
    if not value:
        return None
    try:
        if len(value) == 10:
            moment = datetime.combine(date.fromisoformat(value), time.max if end else time.min,
                                      timezone.utc)
        else:
            moment = datetime.fromisoformat(value)
            moment = moment.replace(tzinfo=moment.tzinfo or timezone.utc)
    except ValueError:
        raise ApiError(f"{name} must be a date (2026-11-24) or an ISO 8601 time "
                       f"(2026-11-24T08:30:00Z) (got {value!r})", field=name) from None
    return iso(moment)


def iso(moment: datetime) -> str:
    moment = moment.astimezone(timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fts_query(text: str) -> str:
    """Every word must appear (the last as a prefix); FTS syntax is neutralised."""
    words = [w.replace('"', '""') for w in text.split()]
    return " ".join(f'"{w}"' for w in words[:-1]) + (f' "{words[-1]}"*' if words else "")


def page(index, filters: Filters, limit: int, offset: int = 0, before_created=None,
         before_id=None) -> tuple[list[str], int, str | None]:
    """``(ids, total, next_cursor)`` for one page, newest first."""
    matches = _prompt_matches(index, filters)
    if matches is not None and filters == Filters(q=filters.q):
        total = matches  # the search is the only filter: its own count
    else:
        count_by = "member" if matches and matches > JOIN_MATCHES_UP_TO else "join"
        source, where, params = filters.sql(index, count_by)
        total = index.execute(f"SELECT COUNT(*){source}{where}", params).fetchone()[0]
    # Few rows to show: sort them. Many: walk the dates, the first page comes quickly.
    walk = matches is not None and total > SORT_MATCHES_UP_TO
    source, where, params = filters.sql(index, "walk" if walk else "join")
    if before_id:
        where = also(where, "(created_at, id) < (?, ?)")
        params = params + [before_created, before_id]
    rows = index.execute(f"SELECT id{source}{where} ORDER BY created_at DESC, id DESC "
                         f"LIMIT ? OFFSET ?", params + [limit + 1, offset]).fetchall()
    ids = [r[0] for r in rows[:limit]]
    return ids, total, ids[-1] if len(rows) > limit else None


def _prompt_matches(index, filters: Filters) -> int | None:
    """How many prompts match the search (FTS5 counts them fast), or None."""
    if not filters.q or not index.has_fts:
        return None
    return index.execute("SELECT COUNT(*) FROM prompts WHERE prompts MATCH ?",
                         (fts_query(filters.q),)).fetchone()[0]


def stats(index, filters: Filters, days: int = 30) -> dict:
    """Counts, success rate, durations, operations per day and storage, from the index."""
    source, where, params = filters.sql(index)
    by_type = {}
    for op_type, status, count, in_bytes, out_bytes in index.execute(
            f"SELECT type, status, COUNT(*), SUM(input_bytes), SUM(output_bytes)"
            f"{source}{where} GROUP BY type, status", params):
        entry = by_type.setdefault(op_type, {"count": 0, "succeeded": 0, "failed": 0,
                                             "bytes": 0})
        entry["count"] += count
        entry[status] = entry.get(status, 0) + count
        entry["bytes"] += (in_bytes or 0) + (out_bytes or 0)
    for op_type, median, p95 in _duration_percentiles(index, source, where, params):
        by_type.setdefault(op_type, {})["durationMs"] = {"median": median, "p95": p95}
    total = sum(e["count"] for e in by_type.values())
    succeeded = sum(e["succeeded"] for e in by_type.values())
    since = (datetime.now(timezone.utc) - timedelta(days=days - 1)).strftime("%Y-%m-%d")
    per_day = dict(index.execute(
        f"SELECT substr(created_at, 1, 10) AS day, COUNT(*){source}"
        f"{also(where, 'created_at >= ?')} GROUP BY day ORDER BY day", params + [since]).fetchall())
    return {"total": total, "succeeded": succeeded, "failed": total - succeeded,
            "successRate": round(succeeded / total, 4) if total else None,
            "byType": by_type, "perDay": per_day, "days": days,
            "storageBytes": sum(e["bytes"] for e in by_type.values())}


def _duration_percentiles(index, source: str, where: str, params: list):
    """(type, median, p95) of durations by nearest rank: per type, the count,
    then one row at each rank through the (type, duration_ms) index."""
    typed = also(where, "type = ?")
    rows = []
    for op_type, n in index.execute(f"SELECT type, COUNT(*){source}{where} "
                                    f"GROUP BY type", params).fetchall():
        values = [index.execute(f"SELECT duration_ms{source}{typed} "
                                f"ORDER BY duration_ms LIMIT 1 OFFSET ?",
                                params + [op_type, rank - 1]).fetchone()[0]
                  for rank in ((n + 1) // 2, max(1, -(-95 * n // 100)))]
        rows.append((op_type, *values))
    return rows
