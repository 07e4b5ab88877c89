"""Jobs: accepting an operation, queueing it, waiting for it, canceling it.

``submit`` writes the operation's record (``queued``, with its prompt,
parameters and input files) and puts its id on the queue. Workers take ids
off the queue and run them (``runner``). ``wait`` follows a record until it
ends, woken at once when the job ran in this process, polling the record
otherwise. Workers run as threads of the web process unless
``QUEUE_IN_PROCESS`` is false (then ``flask worker`` runs them).
"""

import contextlib
import logging
import threading
import time
from datetime import datetime, timezone

from flask import current_app

from .. import events
from ..history import records
from ..history.filters import iso
from . import queue, reaper, runner

logger = logging.getLogger(__name__)
IDLE_POLL_SECONDS = (0.002, 0.25)  # a worker's wait for work grows from the first to the second
QUEUE_RETRY_SECONDS = 5  # a worker's wait before trying again to open a queue that failed


def current_jobs() -> "Jobs":
    return current_app.extensions["jobs"]


class Jobs:
    def __init__(self, app):
        self.app = app
        self._huey = None
        self._task = None
        self._lock = threading.Lock()
        self._workers = []
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._finished = {}  # op id -> Event, set when its record reaches a final status
        self.running = {}  # op id -> runner.Reporter of the jobs this process runs
        self.unsaved = {}  # op id -> (Result, created) that ran but could not be written
        self._no_queue = False  # the queue could not be opened (said once)

    # The queue ---------------------------------------------------------------------
    @property
    def huey(self):
        with self._lock:
            if self._huey is None:
                self._huey = queue.make_queue(self.app.config)
                self._task = self._huey.task(name="generation_studio.run_operation")(self._run)
            return self._huey

    def _run(self, op_id: str) -> None:
        with self.app.app_context():
            runner.run(self, op_id)

    def enqueue(self, op_id: str) -> None:
        self.huey  # noqa: B018 (made on first use)
        self._task(op_id)
        self._kick.set()
        if self.app.config["QUEUE_IN_PROCESS"]:
            self.start_workers()

    def queued_ids(self) -> set[str]:
        """The operation ids waiting on the queue now."""
        return {task.args[0] for task in self.huey.pending() if task.args}

    # Accepting --------------------------------------------------------------------
    def submit(self, record: dict, inputs) -> dict:
        """Write the operation's record as ``queued`` with its inputs, then
        queue it. Raises OSError when the record cannot be written."""
        history = self.app.extensions["history"]
        record = history.save({**record, "status": "queued", "progress": None}, inputs)
        try:
            self.enqueue(record["operationId"])
        except Exception as e:  # no queue (its folder is full, say): run it here and now
            logger.warning("Could not queue operation %s (%s); it runs in the request",
                           record["operationId"], e)
            try:
                runner.run(self, record["operationId"])
            except OSError:  # not even its status can be written: keep nothing, run inline
                with contextlib.suppress(Exception):
                    history.delete(record["operationId"])
                raise
            if record["operationId"] in self.unsaved:
                # It ran, but its result could not be written (the storage filled
                # up): the request answers it inline, as not saved. Its accepted
                # record must not stay behind to be run a second time later.
                with contextlib.suppress(Exception):
                    history.delete(record["operationId"])
        return record

    # Following --------------------------------------------------------------------
    def wait(self, op_id: str, seconds: float) -> dict | None:
        """The record once final, or the record as it is after ``seconds``."""
        history = self.app.extensions["history"]
        event = self._finished.setdefault(op_id, threading.Event())
        deadline = time.monotonic() + seconds
        poll = 0.02
        try:
            while True:
                record = history.get(op_id)
                if record is None or records.is_final(record) or op_id in self.unsaved:
                    return record
                left = deadline - time.monotonic()
                if left <= 0:
                    return record
                event.wait(min(poll, left))
                poll = min(poll * 1.5, 0.5)
        finally:
            self._finished.pop(op_id, None)

    def keep_unsaved(self, op_id: str, result, created) -> None:
        """A result that could not be written, for the request waiting for it."""
        self.unsaved[op_id] = (result, created)
        event = self._finished.get(op_id)
        if event is not None:
            event.set()

    def saw(self, sender, record: dict) -> None:
        """A record was written in this process: wake who waits for it."""
        if records.is_final(record):
            event = self._finished.get(record.get("operationId"))
            if event is not None:
                event.set()

    # Canceling --------------------------------------------------------------------
    def cancel(self, op_id: str) -> dict:
        """Cancel a queued or running operation; ``Finished`` if it has ended."""
        history = self.app.extensions["history"]

        def change(record):
            if records.is_final(record):
                raise Finished(f"Operation {op_id} has already {record['status']}: "
                               "there is nothing to cancel")
            if record["status"] == "queued":
                return {"status": "canceled", "cancelRequested": True,
                        "completedAt": iso_now(), "lease": None}
            return {"cancelRequested": True}

        record = history.update(op_id, change)
        reporter = self.running.get(op_id)
        if reporter is not None:
            reporter.canceled = True
        arrivals = getattr(self.app.extensions["generation_provider"], "arrivals", None)
        if arrivals is not None and not records.is_final(record):
            arrivals.wake(op_id)  # a hosted job's poll hears it now, here or in its worker
        return record

    # Workers ----------------------------------------------------------------------
    def start_workers(self, count: int | None = None) -> None:
        """Run jobs in threads of this process (once)."""
        with self._lock:
            if self._workers:
                return
            count = count or self.app.config["QUEUE_THREADS"]
            self._stop.clear()
            for n in range(count):
                thread = threading.Thread(target=self._work, daemon=True, name=f"job-worker-{n}")
                self._workers.append(thread)
            self._workers.append(threading.Thread(target=self._reap, daemon=True, name="reaper"))
            for thread in self._workers:
                thread.start()

    def stop_workers(self, timeout: float = 5) -> None:
        self._stop.set()
        self._kick.set()
        for thread in self._workers:
            thread.join(timeout)
        self._workers = []

    def _reap(self) -> None:
        """Take up what dead workers left: now, then every half lease. A fault
        that lasts (a full disk) is said once, not at every turn."""
        failing = None
        while True:
            try:
                with self.app.app_context():
                    reaper.sweep(self)
                if failing is not None:
                    logger.info("Looking for operations that lost their worker again")
                failing = None
            except Exception as e:
                if failing is None:
                    logger.exception("Could not look for operations that lost their worker; "
                                     "tried again every %g s", self.app.config["LEASE_SECONDS"] / 2)
                failing = e
            if self._stop.wait(self.app.config["LEASE_SECONDS"] / 2):
                return

    def _open_queue(self):
        """The queue, waited for while it cannot be opened (its folder
        read-only, say; said once): None when the workers stop."""
        while not self._stop.is_set():
            try:
                huey = self.huey
            except Exception as e:
                with self._lock:
                    said, self._no_queue = self._no_queue, True
                if not said:
                    logger.error("No job queue (%s): operations run in their requests until it "
                                 "can be opened (tried every %g s)", e, QUEUE_RETRY_SECONDS)
                self._stop.wait(QUEUE_RETRY_SECONDS)
                continue
            with self._lock:
                said, self._no_queue = self._no_queue, False
            if said:
                logger.info("The job queue is open")
            return huey
        return None

    def _work(self) -> None:
        huey, delay = self._open_queue(), IDLE_POLL_SECONDS[0]
        while huey is not None and not self._stop.is_set():
            try:
                task = huey.dequeue()
            except Exception:
                logger.exception("Could not read the job queue")
                task = None
            if task is not None:
                delay = IDLE_POLL_SECONDS[0]
                try:
                    huey.execute(task)
                except Exception:
                    logger.exception("A job failed outside its operation")
                continue
            if not huey.storage.blocking:
                self._kick.wait(delay)
                self._kick.clear()
                delay = min(delay * 2, IDLE_POLL_SECONDS[1])


class Finished(Exception):
    """The operation has ended already (409)."""


def iso_now() -> str:
    return iso(datetime.now(timezone.utc))


def init_app(app):
    jobs = Jobs(app)
    app.extensions["jobs"] = jobs
    events.operation_saved.connect(jobs.saw, sender=app.extensions["history"])
    if app.config["QUEUE_IN_PROCESS"] and not app.testing:
        # A restarted server takes up its queue (and what dead workers left)
        # from its first request on, without waiting for a new operation.
        app.before_request(lambda: None if jobs._workers else jobs.start_workers())
