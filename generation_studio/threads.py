"""Helper threads: small pools, made on first use, that overlap CPU work with a
caller's disk waits (the record step hashes files and writes index rows on them).

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

    def submit(self, fn, *args):
        """Start ``fn(*args)`` on a helper thread; return a function that waits
        for its result (or raises its exception). Raises RuntimeError when no
        thread can be had (the interpreter is exiting)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.size,
                                                thread_name_prefix=self.name)
            return self._pool.submit(fn, *args).result

    def start(self, fn, *args):
        """``submit``, or ``fn(*args)`` run here when no thread can be had."""
        try:
            return self.submit(fn, *args)
        except RuntimeError:
            result = fn(*args)
            return lambda: result
