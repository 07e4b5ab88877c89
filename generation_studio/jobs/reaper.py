"""Taking up operations that lost their worker, when workers start and then
every ``LEASE_SECONDS``.

- ``running`` with an expired lease (its worker stopped renewing it), or
  whose worker was a process of this machine that is gone: queued again.
  The next claim gives it to a live worker; a hosted job resumes polling
  the job it had created, a local one runs again with its recorded seed.
- ``queued`` but put on the queue more than ``REQUEUE_AFTER_SECONDS`` ago
  (the process died between writing it and queueing it, or the queue was
  lost): queued again. A job queued twice runs once: the claim decides.

Every process with workers runs this; the claim makes duplicates harmless.
"""

from datetime import datetime, timedelta, timezone

from ..history.filters import iso
from . import leases

REQUEUE_AFTER_SECONDS = 300


def stale(record: dict, now: datetime) -> bool:
    """Whether ``record`` has lost its worker (or never reached the queue)."""
    if record.get("status") == "running":
        return not leases.held(record, now)
    if record.get("status") == "queued":
        since = record.get("enqueuedAt") or record.get("createdAt") or ""
        return since < iso(now - timedelta(seconds=REQUEUE_AFTER_SECONDS))
    return False


def sweep(jobs) -> list[str]:
    """Queue again every operation that lost its worker; return their ids."""
    history = jobs.app.extensions["history"]
    ids = history.unfinished()
    now = datetime.now(timezone.utc)
    taken = []
    for op_id, record in history.get_many(ids).items():
        if op_id in jobs.running or not stale(record, now):
            continue
        if history.update(op_id, lambda r: {"enqueuedAt": iso(now)} if stale(r, now) else None):
            jobs.enqueue(op_id)
            taken.append(op_id)
    if taken:
        history.log.warning("Taken up again %d operation(s) whose worker was gone: %s",
                            len(taken), ", ".join(taken[:10]))
    return taken
