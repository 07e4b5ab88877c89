"""Reading a record file, whoever wrote it.

The studio writes ``schemaVersion`` 1. Records in the integration guide's
shape (no version, ``timestamp`` instead of ``createdAt``, input images as
plain file names) and records of a newer studio are read too: the fields
the history needs are taken where they are, the rest is kept as it is. A
file that is not a JSON object, or whose fields cannot be trusted (no
operation type, a time that is not one), is refused with the reason, which
the history reports (``skipped``) instead of hiding it.
"""

import json
import mimetypes
from datetime import datetime, timezone

from ..storage import layout
from .filters import iso

SCHEMA_VERSION = 1
FINAL_STATUSES = ("succeeded", "failed", "canceled")
UNFINISHED = ("queued", "running")
_TIME_FIELDS = ("createdAt", "timestamp", "created_at", "date")
_NUMBERS = ("bytes", "width", "height", "frames")


class InvalidRecord(ValueError):
    """A record file that cannot be read; the message says why."""


def decode(op_id: str, data: bytes) -> dict:
    """The record of ``op_id`` from its file's bytes, normalised."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidRecord(f"invalid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise InvalidRecord(f"not a JSON object (a {type(raw).__name__})")
    return normalize(op_id, raw)


def normalize(op_id: str, raw: dict) -> dict:
    """``raw`` with the fields the history relies on, whatever wrote it.
    ``InvalidRecord`` when it cannot be trusted: no operation type, a time
    that is not one, a name whose date is not a day, a prompt or a list of
    files of the wrong kind. Fields the history only shows are dropped when
    they are of the wrong kind (a size that is not a number, say)."""
    record = {"operationId": op_id, **raw}
    record["operationId"] = op_id  # the file's name is the truth
    _require(isinstance(raw.get("operationType"), str) and raw["operationType"],
             "operationType", raw.get("operationType"), "a name")
    _require(raw.get("prompt") is None or isinstance(raw["prompt"], str),
             "prompt", raw.get("prompt"), "text")
    _require(raw.get("parentId") is None or layout.is_id(raw["parentId"]),
             "parentId", raw.get("parentId"), "an operation id")
    record["createdAt"] = _created(op_id, raw)
    if record.get("status") not in (*FINAL_STATUSES, *UNFINISHED):
        record["status"] = "failed" if raw.get("error") else "succeeded"
    provider = record.get("provider")
    if not isinstance(provider, dict):
        provider = record["provider"] = {"name": provider, "model": None}
    if not (_text_or_none(provider.get("name")) and _text_or_none(provider.get("model"))):
        record["provider"] = {**provider, "name": _text(provider.get("name")),
                              "model": _text(provider.get("model"))}
    for key in ("completedAt", "resultFile", "trashedAt"):
        if key in record and not isinstance(record[key], str):
            del record[key]
    for key in ("inputImages", "outputs"):
        files = record.get(key) or []
        _require(isinstance(files, list), key, files, "a list")
        record[key] = [e for e in map(_file_entry, files) if e]
    if not record["outputs"] and isinstance(record.get("resultFile"), str):
        record["outputs"] = [_file_entry(record["resultFile"])]
    if record["outputs"] and not record.get("resultFile"):
        record["resultFile"] = record["outputs"][0]["file"]
    record.setdefault("schemaVersion", 0)
    return record


def _require(ok, field: str, value, kind: str) -> None:
    if not ok:
        shown = repr(value) if isinstance(value, (str, int, float)) else f"a {type(value).__name__}"
        raise InvalidRecord(f"{field} is not {kind} ({shown[:60]})"
                            if value is not None else f"no {field}")


def _created(op_id: str, raw: dict) -> str:
    """When the operation was created, as the studio writes times (UTC,
    milliseconds, ``Z``): the record's own time, else its name's day."""
    field = next((k for k in _TIME_FIELDS if isinstance(raw.get(k), str)), None)
    try:
        if field:
            moment = datetime.fromisoformat(raw[field])
            if len(raw[field]) == 24 and raw[field][10] == "T" and raw[field][-1] == "Z":
                return raw[field]  # already so
            return iso(moment.replace(tzinfo=moment.tzinfo or timezone.utc))
        day = layout.day_of(op_id)
        return iso(datetime(int(day[:4]), int(day[4:6]), int(day[6:]), tzinfo=timezone.utc))
    except (ValueError, OverflowError):
        if field:
            raise InvalidRecord(f"{field} is not an ISO 8601 time ({raw[field][:60]!r})") from None
        raise InvalidRecord(f"its name's date {layout.day_of(op_id)} is not a day") from None


def _text(value):
    return value if isinstance(value, str) else None


def _text_or_none(value) -> bool:
    return value is None or isinstance(value, str)


def _file_entry(entry):
    """A file entry as ``{"file", "contentType", ...}``; a bare name becomes
    one. Sizes and dimensions that are not whole numbers are left out."""
    if isinstance(entry, str):
        entry = {"file": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        return None
    wrong = [k for k in _NUMBERS if k in entry and not _whole(entry[k])]
    if wrong or not isinstance(entry.get("contentType"), str):
        entry = {k: v for k, v in entry.items() if k not in wrong}
        if not isinstance(entry.get("contentType"), str):
            entry["contentType"] = (mimetypes.guess_type(entry["file"])[0]
                                    or "application/octet-stream")
    return entry


def _whole(value) -> bool:
    return type(value) is int and value >= 0  # a bool is not one


def is_final(record: dict) -> bool:
    return record.get("status") in FINAL_STATUSES
