"""Automatic backup of the history to S3-compatible storage (AWS S3, MinIO,
Cloudflare R2, Backblaze B2, Ceph), with verify and restore.

``BACKUP_URL=s3://bucket/prefix`` switches it on (``BACKUP_ENDPOINT_URL`` for
stores other than AWS; credentials the boto3 way). Every operation that
ends is sent in the background, files first and record last, under the
prefix with its on-disk file names; ``flask backup run|verify|status|restore|
prune`` does the rest. Without ``BACKUP_URL`` nothing here runs.
"""

import os
import sys

from flask import current_app

from .. import events
from . import cli
from .service import Backup, BackupError


def init_app(app):
    cli.init_app(app)
    app.context_processor(lambda: {"backup_status": lambda: status(app)})
    for name in ("BACKUP_URL", "BACKUP_ENDPOINT_URL"):  # also as plain variables (.env)
        if not app.config.get(name) and not app.testing and os.environ.get(name):
            app.config[name] = os.environ[name]
    if not app.config.get("BACKUP_URL"):
        app.extensions["backup"] = None
        return
    backup = Backup(app.config, app.extensions["history"], app.logger)
    app.extensions["backup"] = backup
    if app.config["BACKUP_AUTO"]:
        events.operation_saved.connect(backup.saw, sender=backup.history, weak=False)
        if not _short_command():
            backup.uploader.start()  # a restart picks up what was left pending


def _short_command() -> bool:
    """Whether this process runs a ``flask`` command other than ``run`` or
    ``worker`` (``history list``, ``backup run``...): those do not start the
    uploader, which still starts should the command save an operation."""
    argv = sys.argv
    if not (os.path.basename(argv[0]) == "flask"
            or argv[0].endswith(os.path.join("flask", "__main__.py"))):
        return False
    args = iter(argv[1:])
    for arg in args:
        if arg in ("--app", "-A", "--env-file", "-e"):
            next(args, None)  # its value
        elif not arg.startswith("-"):
            return arg not in ("run", "worker")
    return True


def current_backup() -> Backup | None:
    return current_app.extensions.get("backup")


def status(app=None) -> dict:
    """The backup's state for ``/api/health``, the admin page and ``flask backup status``."""
    backup = (app or current_app).extensions.get("backup")
    if backup is None:
        return {"enabled": False}
    try:
        return backup.status()
    except Exception as e:  # an unreadable ledger must not break /api/health or the page
        (app or current_app).logger.exception("Could not read the backup's status")
        return {"enabled": True, "state": "unknown", "target": None, "backedUp": None,
                "pending": None, "lastError": f"status unreadable: {type(e).__name__}",
                "failingSince": None, "lastSuccess": None}


__all__ = ["Backup", "BackupError", "current_backup", "init_app", "status"]
