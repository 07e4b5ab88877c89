"""Retention: deleting old operations whole, packing old days into archives,
and unpacking them again, one day at a time under that day's lock.

``cleanup`` first finishes what an interrupted run left (files whose record
is gone), then deletes every operation created before the cutoff: its record
first (it leaves the history at once), then its files, then its index row.
``compress`` packs each old day into ``archives/YYYYMMDD.zip``; only
operations that have finished are packed. ``decompress`` puts them back.
"""

import re
from datetime import datetime, timedelta, timezone

from ..storage import archive, layout
from ..storage.atomic import fsync_dir
from . import recovery
from .filters import FilterError
from .index import cutoff

UNITS = {"d": "days", "h": "hours", "w": "weeks", "m": "minutes"}


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w`` or ``90m`` as a timedelta."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*([dhwm])\s*", text or "")
    if not match:
        raise FilterError(f"an age is a number and a unit: 30d, 12h, 2w or 90m (got {text!r})",
                          "older_than")
    return timedelta(**{UNITS[match[2]]: int(match[1])})


def old_operations(history, older_than: timedelta) -> list[tuple[str, int]]:
    """``(id, bytes)`` of operations created before now - ``older_than``."""
    rows = history.keeper.query(lambda ix: ix.created_before(cutoff(older_than)),
                                history.unavailable)
    return [(op_id, size) for op_id, size, _ in rows]


def cleanup(history, older_than: timedelta, dry_run: bool = False, progress=None) -> dict:
    """Delete (or with ``dry_run`` list) operations older than ``older_than``."""
    resumed = 0 if dry_run else recovery.remove_orphans(history)
    old = old_operations(history, older_than)
    ids = [op_id for op_id, _ in old]
    if dry_run:
        return {"operations": len(old), "bytes": sum(size for _, size in old), "ids": ids,
                "resumed": 0, "dryRun": True}
    freed, deleted = history.delete_many(ids, progress=progress)
    return {"operations": deleted, "bytes": freed, "ids": ids, "resumed": resumed,
            "dryRun": False}


def compress(history, older_than: timedelta, progress=None) -> dict:
    """Pack every finished operation of the days older than ``older_than``."""
    last_day = (datetime.now(timezone.utc) - older_than).strftime("%Y%m%d")
    listing = history.folder.scan()
    unfinished = set(history.unfinished())
    days = {}
    for op_id in listing.records - unfinished:
        if layout.day_of(op_id) < last_day:
            days.setdefault(layout.day_of(op_id), []).append(op_id)
    before = after = 0
    for day, ids in sorted(days.items()):
        with history.locks.exclusive([day]):
            # Under the lock, only what is still there (a delete may have come first).
            loose = [n for op_id in ids
                     if history.folder.regular_file(layout.record_name(op_id))
                     for n in listing.files[op_id] if history.folder.regular_file(n)]
            if loose:
                try:
                    size, grown = archive.pack(history.root, day, loose)
                except archive.Unreadable as e:
                    history.log.warning("%s: %s; the day's operations are left loose",
                                        e.name, e)
                else:
                    history.folder.remove(loose)
                    fsync_dir(history.root)
                    before, after = before + size, after + grown
        if progress:
            progress(1)
    return {"days": len(days), "bytesBefore": before, "bytesAfter": after,
            "bytesSaved": before - after}


def decompress(history, progress=None) -> dict:
    """Put every archived operation back as loose files (records last)."""
    days, files = archive.days(history.root), 0
    for day in days:
        with history.locks.exclusive([day]):
            loose = {i for i in history.folder.scan().records if layout.day_of(i) == day}
            try:
                files += len(archive.unpack(history.root, day, skip=loose))
            except archive.Unreadable as e:
                history.log.warning("%s: %s; left as it is", e.name, e)
            fsync_dir(history.root)
        if progress:
            progress(1)
    return {"days": len(days), "files": files}
