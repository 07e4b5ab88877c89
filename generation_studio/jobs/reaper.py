"""Taking up operations that lost their worker, when workers start and then
every ``LEASE_SECONDS``.

- ``running`` with an expired lease (its worker stopped renewing it), or
  whose worker was a process of this machine that is gone: queued again.
  The next claim gives it to a live worker; a hosted job resumes polling
  the job it had created, a local one runs again with its recorded seed.
- ``queued`` but no longer on the queue, ``QUEUED_GRACE_SECONDS`` after it
  was put there (a worker took it off and died before claiming it, or the
  process died between writing it and queueing it): queued again. A job
  queued twice runs once: the claim decides.

Every process with workers runs this; the claim makes duplicates harmless.
"""

from datetime import datetime, timedelta, timezone

from ..history.filters import iso
from . import leases

QUEUED_GRACE_SECONDS = 10


def stale(record: dict, now: datetime, on_queue=frozenset()) -> bool:
    """Whether ``record`` has lost its worker (or is no longer on the queue)."""
    if record.get("status") == "running":
        return not leases.held(record, now)
    if record.get("status") == "queued" and record["operationId"] not in on_queue:
        since = record.get("enqueuedAt") or record.get("createdAt") or ""
        return since < iso(now - timedelta(seconds=QUEUED_GRACE_SECONDS))
    return False


def sweep(jobs) -> list[str]:
    """Queue again every operation that lost its worker; return their ids."""
    history = jobs.app.extensions["history"]
    ids = history.unfinished()
    if not ids:
        return []
    on_queue = jobs.queued_ids()
    now = datetime.now(timezone.utc)
    taken = []
    for op_id, record in history.get_many(ids).items():
        if op_id in jobs.running or not stale(record, now, on_queue):
            continue
        if history.update(op_id, lambda r: {"enqueuedAt": iso(now)}
                          if stale(r, now, on_queue) else None):
            jobs.enqueue(op_id)
            taken.append(op_id)
    if taken:
        history.log.warning("Taken up again %d operation(s) whose worker was gone: %s",
                            len(taken), ", ".join(taken[:10]))
    return taken
