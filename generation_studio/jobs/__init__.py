"""Durable operations: every accepted operation is a record on disk first,
then a job on a real queue (Huey), run by workers that may be threads of the
web process or ``flask worker`` processes, and taken up again after any
restart. ``submit`` accepts, ``wait`` follows, ``cancel`` stops."""

from .service import Finished, Jobs, current_jobs, init_app

__all__ = ["Finished", "Jobs", "current_jobs", "init_app"]
