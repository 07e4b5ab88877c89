"""Recovery: what dead writers and interrupted runs leave behind, found at
start-up and every few minutes after (see ``maintenance``).

- Temporary files (``*.tmp``) of a writer that is gone: its process id is in
  the name, so they go at once when that process has died, and after
  ``TEMP_GRACE_SECONDS`` whatever happened.
- Files without a record: an interrupted save or delete. Saves hold their
  day's lock (shared) until the record is written, so under that day's
  exclusive lock a data file without a record belongs to no save in
  progress: it goes.
- Workflow steps whose workflow record is missing (recording now writes the
  workflow first; older folders may have them): the workflow is written as
  a failed operation listing its steps, so they are reattached.
"""

import os
import re
import time
from datetime import datetime, timedelta, timezone

from .. import liveness
from ..storage import layout
from ..storage.atomic import TMP_SUFFIX
from .filters import iso

TEMP_GRACE_SECONDS = 15 * 60
DANGLING_SECONDS = 60
_PID = re.compile(r"\.pid(\d+)-")


def recover(history) -> dict:
    """Run every step; return what each did."""
    done = {"tempFiles": remove_temp_files(history), "orphanFiles": remove_orphans(history),
            "reattached": reattach_steps(history)}
    if any(done.values()):
        history.log.warning("Recovery: removed %d temporary file(s) of dead writers and %d "
                            "file(s) without a record; reattached %d workflow(s)",
                            done["tempFiles"], done["orphanFiles"], len(done["reattached"]))
    return done


def remove_temp_files(history) -> int:
    removed = 0
    now = time.time()
    for folder in (history.root, history.root / layout.ARCHIVES, history.root / layout.THUMBS):
        try:
            entries = [e for e in os.scandir(folder) if e.name.endswith(TMP_SUFFIX)]
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            match = _PID.search(entry.name)
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime
                if now - mtime > TEMP_GRACE_SECONDS or (
                        match and not liveness.alive(int(match[1]), since=mtime)):
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # its writer finished meanwhile
    return removed


def remove_orphans(history) -> int:
    """Remove loose files whose operation has no record anywhere (the folder
    streamed: only the orphans are held)."""
    orphans = {}
    for kind, name, op_id in history.folder.walk():
        if kind == "file" and not history.folder.is_regular(layout.record_name(op_id)):
            orphans.setdefault(op_id, []).append(name)
    if not orphans:
        return 0
    removed = 0
    for op_id, names in orphans.items():
        with history.locks.exclusive([layout.day_of(op_id)]):
            if history.folder.regular_file(layout.record_name(op_id)):
                continue  # its save finished meanwhile
            doomed = [n for n in names if history.folder.regular_file(n)]
            removed += len(doomed)
            history.folder.remove(doomed)
    return removed


def reattach_steps(history) -> list[str]:
    """Write a failed workflow record for steps whose workflow is missing."""
    cutoff = iso(datetime.now(timezone.utc) - timedelta(seconds=DANGLING_SECONDS))
    rows = history.keeper.query(lambda ix: ix.execute(
        "SELECT parent_id, id, created_at, prompt FROM operations o WHERE parent_id IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM operations p WHERE p.id = o.parent_id)"
        " AND created_at < ? ORDER BY created_at", (cutoff,)).fetchall(), lambda: [])
    parents = {}
    for parent, step, created, prompt in rows:
        parents.setdefault(parent, []).append((step, created, prompt))
    done = []
    for parent, steps in parents.items():
        if not layout.is_id(parent) or history.get(parent) is not None:
            continue
        history.save({
            "operationId": parent, "operationType": "workflow", "status": "failed",
            "createdAt": steps[0][1], "completedAt": steps[-1][1], "durationMs": None,
            "prompt": steps[0][2], "parameters": {}, "resultUrl": None, "resultUrls": [],
            "workflowAnalysis": None, "errorType": "Interrupted", "provider": {},
            "error": "This workflow's record was lost (the server stopped while saving it); "
                     "its steps were found and attached to it again.",
            "steps": [s[0] for s in steps]})
        done.append(parent)
    return done
