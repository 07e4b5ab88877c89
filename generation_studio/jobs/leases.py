"""Leases: which worker runs an operation, and until when.

A running record names its worker (``host:pid:thread``) and the time its
lease ends; the worker renews it every third of ``LEASE_SECONDS``. A lease
no longer holds once that time has passed, or at once when its worker was a
process of this machine that is gone (a ``kill -9``): then another worker
may claim the operation.
"""

import os
import socket
import threading
from datetime import datetime

from .. import liveness
from ..history.filters import iso


def me() -> str:
    """This worker thread's name in a lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def held(record: dict, now: datetime, by_other_than: str | None = None) -> bool:
    """Whether a live worker (other than ``by_other_than``) holds ``record``."""
    lease = record.get("lease") or {}
    if record.get("status") != "running" or not lease:
        return False
    if lease.get("owner") == by_other_than:
        return False
    return lease.get("until", "") > iso(now) and not _owner_gone(lease.get("owner", ""))


def _owner_gone(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False  # this very process: a live thread of ours holds it
    return not liveness.alive(int(pid))
