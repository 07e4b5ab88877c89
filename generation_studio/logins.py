"""Admin logins: the sessions the server knows, and the failed attempts it counts.

A login adds a random session id to a small SQLite file (shared by every web
process); the signed cookie carries the id, and a cookie whose id is not in
the file is not an admin's. Logout deletes the id, so a copied cookie stops
working at once. Only a hash of each id is kept: the file gives no cookie away.

Failed attempts are counted per client address in memory, per process: with
several web processes a client gets that many tries in each.
"""

import hashlib
import math
import secrets
import sqlite3
import threading
import time
from collections import deque
from contextlib import closing


class SessionStore:
    """The live admin sessions, in ``path`` (SQLite)."""

    def __init__(self, path):
        self.path = str(path)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        db.execute("CREATE TABLE IF NOT EXISTS sessions (digest TEXT PRIMARY KEY, expires REAL)")
        return db

    def add(self, lifetime: float) -> str:
        """A new session id, valid for ``lifetime`` seconds; expired ones are dropped."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        with closing(self._connect()) as db:
            db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            db.execute("INSERT INTO sessions VALUES (?, ?)", (_digest(session_id), now + lifetime))
        return session_id

    def valid(self, session_id: str) -> bool:
        with closing(self._connect()) as db:
            row = db.execute("SELECT expires FROM sessions WHERE digest = ?",
                             (_digest(session_id),)).fetchone()
        return row is not None and row[0] > time.time()

    def remove(self, session_id: str) -> None:
        with closing(self._connect()) as db:
            db.execute("DELETE FROM sessions WHERE digest = ?", (_digest(session_id),))


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class LoginLimiter:
    """At most ``max_failures`` failed logins per client in ``window`` seconds."""

    def __init__(self):
        self._failures: dict[str, deque] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str, max_failures: int, window: float) -> int:
        """Seconds before ``client`` may try again; 0 when it may now."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(client, now, window)
            if len(times) < max_failures:
                return 0
            return max(1, math.ceil(times[0] + window - now))

    def failed(self, client: str, window: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(client, now, window).append(now)
            if len(self._failures) > 10_000:  # many addresses: forget the quiet ones
                for quiet in [c for c, t in self._failures.items() if not t]:
                    del self._failures[quiet]

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client: str, now: float, window: float) -> deque:
        times = self._failures.setdefault(client, deque())
        while times and times[0] <= now - window:
            times.popleft()
        return times
