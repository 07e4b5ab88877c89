"""History filters: what a page, the statistics or an export select, read
from a query string or the CLI's options, and tested against a record when
the history must answer from the folder (see ``HistoryService``).

Bad values raise ``FilterError`` naming the field and what is allowed; the
web layer answers them 400 and the CLI as a usage error.
"""

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone

from ..catalog import OPERATION_TYPES
from ..storage import layout

STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
PROVIDERS = ("local", "replicate", "fal")
MAX_QUERY_CHARS = 500


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

    def matches(self, record: dict) -> bool:
        """Whether ``record`` is selected (the index's rules, in Python)."""
        provider = (record.get("provider") or {}).get("name")
        created = record.get("createdAt") or ""
        prompt = record.get("prompt") if isinstance(record.get("prompt"), str) else ""
        return ((not self.types or record.get("operationType") in self.types)
                and self.status in (None, record.get("status"))
                and self.provider in (None, provider)
                and self.parent_id in (None, record.get("parentId"))
                and (not self.since or created >= self.since)
                and (not self.until or created <= self.until)
                and _words_match(self.q, prompt))


def _words_match(q: str | None, prompt: str) -> bool:
    """The index's search rule: every word of ``q`` is a word of the prompt,
    the last one as a prefix."""
    words, query = re.findall(r"\w+", prompt.lower()), re.findall(r"\w+", (q or "").lower())
    return all(any(p == w or (i == len(query) - 1 and p.startswith(w)) for p in words)
               for i, w in enumerate(query))


def parse(args) -> Filters:
    """Filters from a query string (a MultiDict); ``FilterError`` naming what is allowed."""
    types = args.getlist("type")
    for name in types:
        if name not in OPERATION_TYPES:
            raise FilterError(f"type must be one of {', '.join(OPERATION_TYPES)} (got {name!r})",
                              "type")
    q = (args.get("q") or "").strip() or None
    if q and len(q) > MAX_QUERY_CHARS:
        raise FilterError(f"q is {len(q)} characters long; the limit is {MAX_QUERY_CHARS}", "q")
    parent = args.get("parentId") or None
    if parent and not layout.is_id(parent):
        raise FilterError(f"parentId must be an operation id such as 20261124_k3j5x2m7qa9b "
                          f"(got {parent!r})", "parentId")
    since, until = when(args.get("since"), "since"), when(args.get("until"), "until", end=True)
    if since and until and since > until:
        raise FilterError(f"since ({args.get('since')}) is after until ({args.get('until')})",
                          "since")
    return Filters(types=types, status=_choice(args, "status", STATUSES),
                   provider=_choice(args, "provider", PROVIDERS), q=q, since=since, until=until,
                   parent_id=parent)


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
