"""Reading a record file, whoever wrote it.

The studio writes ``schemaVersion`` 1. Records in the integration guide's
shape (no version, ``timestamp`` instead of ``createdAt``, input images as
plain file names) and records of a newer studio are read too: the fields
the history needs are taken where they are, the rest is kept as it is. A
file that is not a JSON object is refused with the reason, which the
history reports (``skipped``) instead of hiding it.
"""

import json
import mimetypes

from ..storage import layout

SCHEMA_VERSION = 1
FINAL_STATUSES = ("succeeded", "failed", "canceled")
UNFINISHED = ("queued", "running")
_TIME_FIELDS = ("createdAt", "timestamp", "created_at", "date")


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
    """``raw`` with the fields the history relies on, whatever wrote it."""
    record = {"operationId": op_id, **raw}
    record["operationId"] = op_id  # the file's name is the truth
    if not isinstance(record.get("createdAt"), str):
        found = next((raw[k] for k in _TIME_FIELDS if isinstance(raw.get(k), str)), None)
        day = layout.day_of(op_id)
        record["createdAt"] = found or f"{day[:4]}-{day[4:6]}-{day[6:]}T00:00:00.000Z"
    if record.get("status") not in (*FINAL_STATUSES, *UNFINISHED):
        record["status"] = "failed" if raw.get("error") else "succeeded"
    if not isinstance(record.get("provider"), dict):
        name = record.get("provider")
        record["provider"] = {"name": name if isinstance(name, str) else None, "model": None}
    for key in ("inputImages", "outputs"):
        record[key] = [_file_entry(e) for e in record.get(key) or [] if _file_entry(e)]
    if not record["outputs"] and isinstance(record.get("resultFile"), str):
        record["outputs"] = [_file_entry(record["resultFile"])]
    if record["outputs"] and not record.get("resultFile"):
        record["resultFile"] = record["outputs"][0]["file"]
    record.setdefault("schemaVersion", 0)
    return record


def _file_entry(entry):
    """A file entry as ``{"file", "contentType", ...}``; a bare name becomes one."""
    if isinstance(entry, str):
        entry = {"file": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        return None
    if not isinstance(entry.get("contentType"), str):
        entry = {**entry, "contentType": mimetypes.guess_type(entry["file"])[0]
                 or "application/octet-stream"}
    return entry


def is_final(record: dict) -> bool:
    return record.get("status") in FINAL_STATUSES
