"""Running one operation from its record: what a worker does with an id.

1. Claim it: under the record's lock, ``queued`` (or ``running`` with an
   expired lease: its worker died) becomes ``running`` with a lease naming
   this worker. A final record, or one another live worker holds, is left
   alone, so a job never runs twice at once.
2. Rebuild the task from the record alone: the stored input files, the typed
   parameters and the seed chosen when the request was accepted. A local
   job run again gives the same result.
3. Run it. A ``Reporter`` renews the lease, writes progress (at most twice a
   second) and a hosted job's id as soon as the provider gives it, and
   raises ``OperationCanceled`` at the next frame or poll once a cancel is
   asked.
4. Write the outcome: outputs and ``succeeded``, or ``failed`` with the
   error, or ``canceled`` with no output — only while this worker still
   holds the lease.
"""

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .. import media, workflow
from ..errors import OperationCanceled
from ..history import NotFound, records
from ..history.filters import iso
from ..providers import Task
from . import leases, recordkeeping

PROGRESS_EVERY_SECONDS = 0.5


def now_iso() -> str:
    return iso(datetime.now(timezone.utc))


def run(jobs, op_id: str) -> None:
    app = jobs.app
    history = app.extensions["history"]
    owner = leases.me()
    try:
        record = claim(history, op_id, owner, app.config["LEASE_SECONDS"])
    except NotFound:
        return  # deleted before it ran
    if record is None:
        return
    reporter = Reporter(history, op_id, owner, app.config["LEASE_SECONDS"])
    jobs.running[op_id] = reporter
    reporter.start()
    result = None
    try:
        result = execute(app, history, record, reporter)
    except OperationCanceled as exc:
        outcome = {"status": "canceled", "provider": dict(getattr(exc, "details", None) or {})}
    except Exception as exc:
        outcome = recordkeeping.failed(exc)
        if outcome["httpStatus"] >= 500 and outcome.get("errorAnswer"):
            history.log.exception("Operation %s failed", op_id)
    else:
        outcome = recordkeeping.succeeded(result)
    try:
        finish(history, op_id, owner, outcome, result.files if result else ())
    except NotFound:
        pass  # deleted while it ran: nothing to keep
    except OSError as e:  # storage full or read-only: the waiting request gets it inline
        history.log.error("Could not save operation %s (%s): %s; the result is sent inline",
                          op_id, record["operationType"], e)
        if result is not None:
            jobs.keep_unsaved(op_id, result, created_at(record))
            result = None  # the request removes its downloads once it has answered
    finally:
        reporter.stop()
        jobs.running.pop(op_id, None)
        remove_downloads(result)


def created_at(record: dict) -> datetime:
    return datetime.fromisoformat(record["createdAt"].replace("Z", "+00:00"))


def claim(history, op_id: str, owner: str, lease_seconds: float) -> dict | None:
    now = datetime.now(timezone.utc)

    def change(record):
        if records.is_final(record):
            return None
        if leases.held(record, now, by_other_than=owner):
            return None  # a live worker has it
        if record.get("cancelRequested"):
            return {"status": "canceled", "completedAt": iso(now), "lease": None}
        return {"status": "running", "startedAt": record.get("startedAt") or iso(now),
                "attempts": record.get("attempts", 0) + 1,
                "lease": {"owner": owner, "until": iso(now + timedelta(seconds=lease_seconds))}}

    # Not durable: lost in a power cut, the record is queued again, and taken up again.
    record = history.update(op_id, change, durable=False)
    return record if record is not None and record["status"] == "running" else None


def finish(history, op_id: str, owner: str, fields: dict, outputs=()) -> None:
    """Write the outcome, if this worker still holds the operation."""
    def change(record):
        if (record.get("lease") or {}).get("owner") != owner or records.is_final(record):
            return None  # taken over (our lease expired) or ended meanwhile
        completed = datetime.now(timezone.utc)
        return {**recordkeeping.merged(record, fields), "completedAt": iso(completed),
                "lease": None,
                "durationMs": round((completed - created_at(record)).total_seconds() * 1000, 1)}
    history.update(op_id, change, outputs if fields["status"] == "succeeded" else ())


class Reporter:
    """Renews the lease, writes progress and job ids, and notices a cancel."""

    def __init__(self, history, op_id, owner, lease_seconds):
        self.history, self.op_id, self.owner = history, op_id, owner
        self.lease_seconds = lease_seconds
        self.canceled = False
        self._pending = {}
        self._last_write = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"lease-{op_id}")

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()

    def progress(self, state: dict) -> None:
        """What a provider reports (``{"progress": 0.4}``, a queue position...)."""
        self._pending.update({k: v for k, v in state.items() if k == "progress"})
        if "progress" not in state:
            self._pending["providerState"] = state
        if time.monotonic() - self._last_write >= PROGRESS_EVERY_SECONDS:
            self.write()
        if self.canceled:
            raise OperationCanceled()

    def job(self, details: dict) -> None:
        """A hosted provider's job: kept at once, before any polling, so that
        a worker taking the operation up again resumes it (never a second one)."""
        self._pending["providerJob"] = dict(details)
        self.write()

    def write(self) -> None:
        pending, self._pending = self._pending, {}
        until = iso(datetime.now(timezone.utc) + timedelta(seconds=self.lease_seconds))

        def change(record):
            self.canceled = self.canceled or bool(record.get("cancelRequested"))
            if (record.get("lease") or {}).get("owner") != self.owner:
                self.canceled = True  # another worker took it over: stop here
                return None
            fields = {"lease": {"owner": self.owner, "until": until}}
            if "providerJob" in pending:
                fields["providerJob"] = pending["providerJob"]
                fields["provider"] = {**(record.get("provider") or {}), **pending["providerJob"]}
            if "progress" in pending:
                fields["progress"] = round(min(max(float(pending["progress"]), 0.0), 1.0), 3)
            if "providerState" in pending:
                fields["providerState"] = pending["providerState"]
            return fields

        self._last_write = time.monotonic()
        try:
            self.history.update(self.op_id, change, durable="providerJob" in pending)
        except NotFound:
            self.canceled = True  # deleted while it ran
        except OSError as e:
            self.history.log.error("Could not write the progress of %s: %s", self.op_id, e)

    def _beat(self):
        while not self._stop.wait(self.lease_seconds / 3):
            self.write()


# Rebuilding and running the task -------------------------------------------------
def execute(app, history, record: dict, reporter: Reporter):
    provider = app.extensions["generation_provider"]
    spec = record.get("task") or {}
    sources = [history.folder.read(e["file"]) or history.read_file(record["operationId"], e["file"])
               for e in record.get("inputImages") or []]
    names = [e.get("originalName") for e in record.get("inputImages") or []]
    params = dict(spec.get("params") or {})
    if spec.get("plan"):
        return workflow.run(spec["plan"], list(zip(sources, names)), params, provider, history,
                            record, on_job=reporter.job, on_progress=reporter.progress)
    task = Task(spec.get("operation") or record["operationType"], record.get("prompt") or "",
                params, [media.decode_rgb(data) for data in sources], sources,
                on_job=reporter.job, on_progress=reporter.progress,
                operation_id=record["operationId"])
    if record.get("providerJob"):  # created before a restart: follow it, never pay twice
        return provider.resume(task, record["providerJob"])
    return provider.run(task)


def remove_downloads(result) -> None:
    """Delete downloaded temp files the history did not move in."""
    if result is None:
        return
    for item in result.files:
        if isinstance(item, Path):
            item.unlink(missing_ok=True)
