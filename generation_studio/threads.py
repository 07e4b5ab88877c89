"""Helper threads: small pools, made on first use, that overlap a caller's work
with its disk waits (the record step hashes and fsyncs files on them).

A forked process (gunicorn's workers, the tests' forked saves) has none of its
parent's threads, so each pool forgets its threads in the child and makes new
ones there when first asked.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor


class HelperPool:
    def __init__(self, name: str, size: int):
        self.name, self.size = name, size
        self.forget()
        os.register_at_fork(after_in_child=self.forget)

    def forget(self) -> None:
        self._lock, self._pool = threading.Lock(), None

    def start(self, fn, *args):
        """Start ``fn(*args)`` on a helper thread; return a function that waits
        for its result (or raises its exception). Runs it here when no thread
        can be had (the interpreter is exiting)."""
        try:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self.size,
                                                    thread_name_prefix=self.name)
                return self._pool.submit(fn, *args).result
        except RuntimeError:
            result = fn(*args)
            return lambda: result
