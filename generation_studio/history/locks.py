"""Locks that work across processes: one lock file per day of operations.

Everything that changes a day's operations takes that day's lock: recording
and reindexing share it (``shared``), delete, clean-up, compress and restore
hold it alone (``exclusive``). Web workers, the CLI and the in-server sweep
thus never rewrite one day at once, while today's recordings never wait for a
clean-up of last month. The locks are ``flock`` locks on
``.locks/YYYYMMDD.lock`` in the storage folder: the kernel drops them when a
process dies, so a ``kill -9`` never leaves a day locked.
"""

import contextlib
import fcntl
import os
from pathlib import Path

from ..storage import layout
from ..storage.atomic import CANNOT_WRITE



class DayLocks:
    def __init__(self, root: Path):
        self.folder = Path(root) / layout.LOCK_FOLDER

    @contextlib.contextmanager
    def shared(self, days):
        with self._hold(days, fcntl.LOCK_SH):
            yield

    @contextlib.contextmanager
    def exclusive(self, days):
        with self._hold(days, fcntl.LOCK_EX):
            yield

    @contextlib.contextmanager
    def _hold(self, days, how):
        # Always in the same order, so that two holders of several days never deadlock.
        fds = []
        try:
            for day in sorted(set(days)):
                fd = self._open(day, how)
                if fd is not None:
                    fds.append(fd)
                    fcntl.flock(fd, how)
            yield
        finally:
            for fd in reversed(fds):
                os.close(fd)  # closing releases the lock

    def _open(self, day: str, how) -> int | None:
        """The day's lock file, made if need be. A storage that cannot be
        written (read-only, refused, full) still gives a shared lock, so that
        the history can be read and reindexed: through the file if it is
        there, else none (this process could not make the file; neither can
        it change the day's operations)."""
        path = self.folder / f"{day}.lock"
        try:
            try:
                return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except FileNotFoundError:
                self.folder.mkdir(parents=True, exist_ok=True)
                return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            if how != fcntl.LOCK_SH or e.errno not in CANNOT_WRITE:
                raise
        try:
            return os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
