"""Retention: deleting old operations whole, by command or by the server itself.

``cleanup`` first finishes what an interrupted run left (files whose record is
gone, index rows with no record), then deletes every operation created before
the cutoff: its record first (it leaves the history at once), then its files,
then its index row. With ``RETENTION_DAYS`` set, the server runs it after a
request at most once an hour, in the background; the hour is shared by all
processes through the index.
"""

import re
import threading
import time
from datetime import datetime, timedelta, timezone

from flask import current_app

from . import archive
from .errors import ApiError
from .queries import iso

INTERVAL_SECONDS = 3600
UNITS = {"d": "days", "h": "hours", "w": "weeks", "m": "minutes"}


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w`` or ``90m`` as a timedelta."""
    match = re.fullmatch(r"\s*(\d+)\s*([dhwm])\s*", text or "")
    if not match:
        raise ApiError(f"an age is a number and a unit: 30d, 12h, 2w or 90m (got {text!r})")
    return timedelta(**{UNITS[match[2]]: int(match[1])})


def old_operations(index, older_than: timedelta) -> list[tuple[str, int]]:
    """``(id, bytes)`` of operations created before now - ``older_than``."""
    cutoff = iso(datetime.now(timezone.utc) - older_than)
    return index.execute("SELECT id, COALESCE(input_bytes, 0) + COALESCE(output_bytes, 0) "
                         "FROM operations WHERE created_at < ? ORDER BY created_at",
                         (cutoff,)).fetchall()


def cleanup(store, older_than: timedelta, dry_run: bool = False, progress=None) -> dict:
    """Delete (or with ``dry_run`` list) operations older than ``older_than``."""
    resumed = 0 if dry_run else store.remove_orphans()
    if not dry_run:
        store.index.catch_up(store)
    old = old_operations(store.index, older_than)
    if dry_run:
        return {"operations": len(old), "bytes": sum(size for _, size in old),
                "ids": [op_id for op_id, _ in old], "resumed": 0, "dryRun": True}
    freed = store.delete_many([op_id for op_id, _ in old], progress=progress)
    return {"operations": len(old), "bytes": freed, "ids": [op_id for op_id, _ in old],
            "resumed": resumed, "dryRun": False}


def compress(store, older_than: timedelta, progress=None) -> dict:
    """Pack every day older than ``older_than`` into its archive."""
    cutoff = (datetime.now(timezone.utc) - older_than).strftime("%Y%m%d")
    days = {}
    for op_id, names in store.loose_files().items():
        if op_id[:8] < cutoff and f"{op_id}.json" in names:
            days.setdefault(op_id[:8], []).extend(names)
    before = after = 0
    for day, names in sorted(days.items()):
        loose, grown = archive.pack(store.root, day, names)
        before, after = before + loose, after + grown
        if progress:
            progress(1)
    return {"days": len(days), "bytesBefore": before, "bytesAfter": after,
            "bytesSaved": before - after}


def init_app(app):
    if app.config.get("RETENTION_DAYS"):
        app.after_request(_maybe_run)


def _maybe_run(response):
    """After a request: start the clean-up if no process ran it this hour."""
    app = current_app._get_current_object()
    store = app.extensions["operation_store"]
    now = time.time()
    try:
        last = store.index.get_meta("last_cleanup")
        if last is not None and now - float(last) < INTERVAL_SECONDS:
            return response
        if not store.index.swap_meta("last_cleanup", last, str(now)):
            return response  # another process or thread won this hour
    except Exception:
        app.logger.exception("Could not check when the clean-up last ran")
        return response
    thread = threading.Thread(target=_run, args=(app,), daemon=True, name="retention")
    app.extensions["retention_thread"] = thread
    thread.start()
    return response


def _run(app):
    with app.app_context():
        days = app.config["RETENTION_DAYS"]
        try:
            summary = cleanup(app.extensions["operation_store"], timedelta(days=days))
        except Exception:
            app.logger.exception("The automatic clean-up failed; it will be tried next hour")
            return
        if summary["operations"] or summary["resumed"]:
            app.logger.info("Clean-up: deleted %d operation(s) older than %d days, freed %d "
                            "bytes", summary["operations"], days, summary["bytes"])
