"""Removing old backups, only when asked (``flask backup prune``).

Deleting an operation on disk never deletes its backup; this does, for the
operations (and day archives) older than a number of days that are no
longer on disk — a backup of what is still here would only be sent again.
Records go first, so the bucket never holds a record without its files.
Multipart uploads left unfinished by a killed process (invisible, but
billed) are aborted too.
"""

from datetime import datetime, timedelta, timezone

from ..storage import archive, layout


def old_objects(history, listing: dict, days: int) -> list[str]:
    """Names to delete: records first, then files, then archives."""
    cutoff = (datetime.now(timezone.utc) - timedelta(days=days)).strftime("%Y%m%d")
    here = set(history.locations())
    archived_days = set(archive.days(history.root))
    chosen = []
    for name in listing:
        op_id = layout.owner(name)
        if op_id and "/" not in name:
            if layout.day_of(op_id) < cutoff and op_id not in here:
                chosen.append(name)
        elif name.startswith(f"{layout.ARCHIVES}/") and name.endswith(".zip"):
            day = name[len(layout.ARCHIVES) + 1:-4]
            if day < cutoff and day not in archived_days:
                chosen.append(name)
    return sorted(chosen, key=lambda n: (layout.record_id(n) is None, n))


def prune(history, target, ledger, days: int, dry_run: bool = False) -> tuple[list[str], int]:
    """Delete (or with ``dry_run`` only list) the old objects: ``(names, bytes)``."""
    listing = target.listing()
    names = old_objects(history, listing, days)
    size = sum(listing[n]["size"] for n in names)
    if not dry_run:
        target.delete(names)
        ledger.forget(names)
        target.abort_stale_uploads(timedelta(days=1))
    return names, size
