"""History filters: what a page, the statistics or an export select, read
from a query string or the CLI's options, and tested against a record when
the history must answer from the folder (see ``HistoryService``).

Bad values raise ``FilterError`` naming the field and what is allowed; the
web layer answers them 400 and the CLI as a usage error.
"""

import re
import sqlite3
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone

from ..catalog import OPERATION_TYPES
from ..storage import layout

# The index's full-text facets have a word for each: changing either changes the
# index (bump index.SCHEMA_VERSION, so that existing indexes are rebuilt).
STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
PROVIDERS = ("local", "replicate", "fal")
MAX_QUERY_CHARS = 500
MAX_TYPE_CHARS = 100
TRASH = ("exclude", "only", "include")
MAX_IDS = 500
MAX_DAYS = 3660  # the statistics' operations per day, at most ten years back


class FilterError(ValueError):
    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message, self.field = message, field


@dataclass
class Filters:
    types: list = field(default_factory=list)
    status: str | None = None
    provider: str | None = None
    q: str | None = None
    since: str | None = None  # ISO 8601 UTC, as in the records
    until: str | None = None
    parent_id: str | None = None
    trash: str = "include"  # a query string's default is "exclude" (see ``parse``)
    starred: bool = False
    toplevel: bool = False  # workflows' steps left out
    ids: list = field(default_factory=list)

    def matches(self, record: dict) -> bool:
        """Whether ``record`` is selected (the index's rules, in Python)."""
        provider = (record.get("provider") or {}).get("name")
        created = record.get("createdAt")  # none: neither before nor after a time
        dated = isinstance(created, str)
        prompt = record.get("prompt") if isinstance(record.get("prompt"), str) else ""
        return ((not self.types or record.get("operationType") in self.types)
                and self.status in (None, record.get("status"))
                and self.provider in (None, provider)
                and self.parent_id in (None, record.get("parentId"))
                and (self.trash == "include"
                     or (self.trash == "only") == isinstance(record.get("trashedAt"), str))
                and (not self.starred or record.get("starred") is True)
                and (not self.toplevel or not record.get("parentId"))
                and (not self.ids or record.get("operationId") in self.ids)
                and (not self.since or dated and created >= self.since)
                and (not self.until or dated and created <= self.until)
                and _words_match(self.q, prompt))


def _words_match(q: str | None, prompt: str) -> bool:
    """The index's search rule: every word of ``q`` is a word of the prompt,
    the last one as a prefix; words as FTS5 cuts and folds them (case and
    accents aside). A search of no such word (``_``) finds nothing."""
    if not q:
        return True
    found, query = {_folded(w) for w in words(prompt)}, [_folded(w) for w in words(q)]
    return bool(query) and all(any(p == w or (i == len(query) - 1 and p.startswith(w))
                                   for p in found) for i, w in enumerate(query))


def _folded(word: str) -> str:
    """``word`` as FTS5's tokenizer (unicode61) keeps it: lower case, accents removed."""
    return "".join(c for c in unicodedata.normalize("NFD", word.lower())
                   if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    """The words FTS5 makes of ``text``, in the order they come. A quoted word
    it would cut in two is a phrase, which a table without positions
    (``detail=column``) refuses: the words are cut where its tokenizer cuts them."""
    found = []
    for word in re.findall(r"\w+", text):
        token = ""
        for char in word:
            if _separates(char):
                found += [token] if token else []
                token = ""
            else:
                token += char
        found += [token] if token else []
    return found


_SEPARATES = {}  # non-ASCII word characters -> whether FTS5's tokenizer cuts words there


def _separates(char: str) -> bool:
    """Whether FTS5 cuts words at ``char``, a word character to Python: ``_``,
    and a few letters newer than its Unicode tables (SQLite is asked, once each)."""
    if char.isascii():
        return char == "_"
    if char not in _SEPARATES:
        probe = sqlite3.connect(":memory:")
        try:
            probe.execute("CREATE VIRTUAL TABLE t USING fts5(x, detail=column)")
            probe.execute("SELECT * FROM t WHERE t MATCH ?", (f'"a{char}b"',)).fetchall()
            _SEPARATES[char] = False
        except sqlite3.OperationalError:  # two tokens: a phrase, refused
            _SEPARATES[char] = True
        finally:
            probe.close()
    return _SEPARATES[char]


def parse(args, trash: str = "exclude", recorded=None) -> Filters:
    """Filters from a query string (a MultiDict); ``FilterError`` naming what is allowed.
    Trashed operations are left out unless ``trash`` (or the query's ``trash``) says.
    A type outside the catalogue is one ``recorded()`` names (the types the history
    holds: records of other writers have their own; None when it cannot say)."""
    types = args.getlist("type")
    unknown = [name for name in types if name not in OPERATION_TYPES]
    held = recorded() if unknown and recorded else []
    for name in unknown:
        if held is not None and name not in held or len(name) > MAX_TYPE_CHARS:
            allowed = [*OPERATION_TYPES, *(t for t in held or () if t not in OPERATION_TYPES)]
            raise FilterError(f"type must be one of {', '.join(allowed)} (got {name[:100]!r})",
                              "type")
    q = args.get("q") or ""
    if len(q) > MAX_QUERY_CHARS:
        raise FilterError(f"q is {len(q)} characters long; the limit is {MAX_QUERY_CHARS}", "q")
    if any(ord(c) < 32 for c in q):
        raise FilterError(f"q must not contain control characters such as NUL (got {q[:50]!r})",
                          "q")
    # Only words are searched (as the folder's rule does): punctuation, NUL or
    # quotes never reach the full-text syntax.
    q = " ".join(re.findall(r"\w+", q)) or None
    parent = args.get("parentId") or None
    if parent and not layout.is_id(parent):
        raise FilterError(f"parentId must be an operation id such as 20261124_k3j5x2m7qa9b "
                          f"(got {parent!r})", "parentId")
    since, until = when(args.get("since"), "since"), when(args.get("until"), "until", end=True)
    if since and until and since > until:
        raise FilterError(f"since ({args.get('since')}) is after until ({args.get('until')})",
                          "since")
    ids = args.getlist("ids")
    if len(ids) > MAX_IDS:
        raise FilterError(f"ids: {len(ids)} given; the limit is {MAX_IDS}", "ids")
    for op_id in ids:
        if not layout.is_id(op_id):
            raise FilterError(f"ids must be operation ids such as 20261124_k3j5x2m7qa9b "
                              f"(got {op_id[:100]!r})", "ids")
    return Filters(types=types, status=_choice(args, "status", STATUSES),
                   provider=_choice(args, "provider", PROVIDERS), q=q, since=since, until=until,
                   parent_id=parent, trash=_choice(args, "trash", TRASH) or trash,
                   starred=_flag(args, "starred"), toplevel=_flag(args, "toplevel"), ids=ids)


def _flag(args, name: str) -> bool:
    value = (args.get(name) or "").lower()
    if value not in ("", "0", "1", "true", "false"):
        raise FilterError(f"{name} must be 1 or 0 (got {value[:50]!r})", name)
    return value in ("1", "true")


def _choice(args, name: str, allowed) -> str | None:
    value = args.get(name) or None
    if value is not None and value not in allowed:
        raise FilterError(f"{name} must be one of {', '.join(allowed)} (got {value!r})", name)
    return value


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
        return iso(moment)
    except (ValueError, OverflowError):
        raise FilterError(f"{name} must be a date (2026-11-24) or an ISO 8601 time "
                          f"(2026-11-24T08:30:00Z) (got {value!r})", name) from None


def iso(moment: datetime) -> str:
    moment = moment.astimezone(timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
