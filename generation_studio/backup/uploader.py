"""The automatic backup: a background thread of each studio process that
sends the pending operations, retrying with backoff while the store is
down or refuses, and that compares the history with the bucket when it
starts and every ``BACKUP_RESCAN_SECONDS`` (operations made while backup was
off or whose mark was lost, the day archives of ``flask history compress``).
A request never waits for it: ``wake`` only sets an event.
"""

import threading
import time

from .sync import Remote, Skipped, plan, send
from .target import BackupError


class Uploader:
    def __init__(self, backup):
        self.backup = backup
        self.config = backup.config
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()
        self._failing = None  # the last error logged, so a long outage logs once

    def start(self) -> None:
        with self._lock:
            if self.backup.target is None or (self._thread and self._thread.is_alive()):
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, daemon=True, name="backup")
            self._thread.start()

    def stop(self, timeout: float = 2) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.backup.ledger.close()

    def wake(self) -> None:
        self._wake.set()
        if self._thread is None:
            self.start()

    def _run(self) -> None:
        backup, delay = self.backup, None  # delay: the backoff while failing
        next_scan = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    self.drain()  # what ended lately first, then the long comparison
                    if time.monotonic() >= next_scan:
                        self.compare()
                        next_scan = time.monotonic() + self.config["BACKUP_RESCAN_SECONDS"]
                        self.drain()
                    delay = None
                except BackupError as e:
                    delay = self._failed(str(e), delay)
                except Exception as e:  # a bug must not end the backup for good
                    backup.log.exception("The backup failed unexpectedly; it will try again")
                    delay = self._failed(f"{type(e).__name__}: {e}", delay)
                # While failing, new operations do not cut the backoff short.
                (self._stop if delay else self._wake).wait(delay or
                                                           self.config["BACKUP_POLL_SECONDS"])
                self._wake.clear()
        finally:
            backup.ledger.close()

    def compare(self) -> None:
        """Mark what the bucket lacks, and send the day archives it lacks."""
        backup = self.backup
        target = backup.require_target()
        remote = Remote(target, backup.ledger, target.listing())
        lacking, archives = plan(backup.history, backup.ledger, remote)
        for op_id in lacking:
            backup.pending.add(op_id)
        send(target, backup.ledger, remote, archives)
        self._worked()

    def drain(self) -> None:
        """Send every pending operation; a store failure stops the pass (and is raised).
        What a dead process (a killed web worker, say) had taken is put back first."""
        backup = self.backup
        backup.pending.recover()
        for op_id in backup.pending.ids():
            if self._stop.is_set():
                return
            try:
                if backup.send_claimed(op_id) is not None:
                    self._worked()
            except Skipped as e:
                backup.log.info("Backup skipped %s", e)

    def _worked(self) -> None:
        self.backup.ledger.succeeded()
        if self._failing:
            self.backup.log.info("Backup works again: %s", self.backup.target.url)
            self._failing = None

    def _failed(self, message: str, delay: float | None) -> float:
        """Note the failure (logged once per new message); return the next backoff."""
        backup = self.backup
        message = backup.target.mask(message) if backup.target else message
        backup.ledger.failed(message)
        if message != self._failing:
            backup.log.warning("Backup failing, will retry: %s", message)
            self._failing = message
        if delay is None:
            return self.config["BACKUP_RETRY_SECONDS"]
        return min(delay * 2, self.config["BACKUP_RETRY_MAX_SECONDS"])
