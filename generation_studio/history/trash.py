"""The trash: operations deleted from the studio are first moved here (their
record gets ``trashedAt``) and can be restored, until the trash is emptied
of what has lain in it longer than ``TRASH_DAYS``. A workflow goes to the
trash, and comes back, with its steps. Hidden from pages by default
(``filters.parse``), trashed operations still count in the storage figures.
"""

from datetime import datetime, timedelta, timezone

from .filters import iso
from .index import cutoff


def trash(history, op_id: str) -> list[str]:
    """Move ``op_id`` (and a workflow's steps) to the trash; the ids moved."""
    when = iso(datetime.now(timezone.utc))
    return _set(history, op_id, lambda r: None if r.get("trashedAt") else {"trashedAt": when})


def untrash(history, op_id: str) -> list[str]:
    """Take ``op_id`` (and a workflow's steps) out of the trash; the ids restored."""
    return _set(history, op_id, lambda r: {"trashedAt": None} if r.get("trashedAt") else None)


def _set(history, op_id: str, change) -> list[str]:
    history.require(op_id)
    changed = []
    for step_or_self in history.with_steps(op_id):
        if history.update(step_or_self, change) is not None:
            changed.append(step_or_self)
    return changed


def empty(history, older_than: timedelta) -> dict:
    """Delete for good what was trashed before now - ``older_than``."""
    ids = history.keeper.query(lambda ix: ix.trashed_before(cutoff(older_than)),
                               history.unavailable)
    freed, deleted = history.delete_many(ids) if ids else (0, 0)
    return {"operations": deleted, "bytes": freed, "ids": ids}
