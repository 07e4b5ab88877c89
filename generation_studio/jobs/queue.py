"""The job queue: Huey, the small, well-kept task queue with an embedded
SQLite storage and a Redis one.

``SqliteHuey`` is the default, in ``<STORAGE_DIR>/.queue/`` (the instance
folder unless ``STORAGE_DIR`` says otherwise): nothing to install or start.
``QUEUE_URL=redis://host:port/db`` switches to ``RedisHuey`` so several web
servers and workers, on one machine or several, share one queue. The queue
only carries operation ids: the records on disk stay the truth, so a job
lost with a queue (a dead worker took it) is found again from its record.
"""

import os
from urllib.parse import urlsplit

from huey import RedisHuey, SqliteHuey

QUEUE_SCHEMES = ("redis", "rediss", "unix")


class QueueConfigError(ValueError):
    pass


def make_queue(config):
    """The configured Huey, without results (the records hold them)."""
    name = config.get("QUEUE_NAME") or "generation-studio"
    url = config.get("QUEUE_URL")
    if url:
        if urlsplit(url).scheme not in QUEUE_SCHEMES:
            raise QueueConfigError(f"QUEUE_URL must be redis://host:port/db (got {url!r})")
        return RedisHuey(name, url=url, results=False)
    path = config.get("QUEUE_PATH") or os.path.join(config["STORAGE_DIR"], ".queue",
                                                    "huey.sqlite3")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # No fsync per queue write: the record, written durably before the id is
    # queued, is the truth; an id a power cut takes off the queue is queued
    # again from its record by the reaper (``reaper.QUEUED_GRACE_SECONDS``).
    return SqliteHuey(name, filename=path, results=False, fsync=False)


def describe(config) -> str:
    """Where the queue is, for logs and health (a Redis password is hidden)."""
    url = config.get("QUEUE_URL")
    if not url:
        return "sqlite"
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}{parts.path}"
