"""What the server does by itself, in the background, after a request:
recovery every ``RECOVERY_INTERVAL_SECONDS`` (default 5 minutes) and, at
most once an hour, the clean-up: emptying the trash of what has lain in it
``TRASH_DAYS`` and, with ``RETENTION_DAYS`` set, deleting older operations —
shared by all server processes through the index, so one of them runs it."""

import threading
import time
from datetime import timedelta

from flask import current_app

CLEANUP_INTERVAL_SECONDS = 3600


def init_app(app):
    app.extensions["maintenance"] = {"recovery": time.monotonic()}  # start-up recovers
    app.after_request(_after_request)


def _after_request(response):
    app = current_app._get_current_object()
    due = app.extensions["maintenance"]
    now = time.monotonic()
    if now - due["recovery"] >= app.config["RECOVERY_INTERVAL_SECONDS"]:
        due["recovery"] = now
        _start(app, "recovery", lambda history: history.recover())
    if ((app.config.get("RETENTION_DAYS") or app.config.get("TRASH_DAYS"))
            and now - due.get("cleanup", -1e9) >= 60):
        due["cleanup"] = now  # asks the index at most once a minute
        if _won_the_hour(app):
            _start(app, "retention", _cleanup)
    return response


def _won_the_hour(app) -> bool:
    """True for the one process that takes this hour's clean-up."""
    history = app.extensions["history"]
    now = time.time()
    try:
        last = history.index.get_meta("last_cleanup")
        if last is not None and now - float(last) < CLEANUP_INTERVAL_SECONDS:
            return False
        return history.index.swap_meta("last_cleanup", last, str(now))
    except Exception:
        app.logger.exception("Could not check when the clean-up last ran")
        return False


def _cleanup(history):
    if trash_days := current_app.config.get("TRASH_DAYS"):
        emptied = history.empty_trash(timedelta(days=trash_days))
        if emptied["operations"]:
            current_app.logger.info("Trash: deleted %d operation(s) trashed over %d days ago, "
                                    "freed %d bytes", emptied["operations"], trash_days,
                                    emptied["bytes"])
    days = current_app.config.get("RETENTION_DAYS")
    if not days:
        return
    summary = history.cleanup(timedelta(days=days))
    if summary["operations"] or summary["resumed"]:
        current_app.logger.info("Clean-up: deleted %d operation(s) older than %d days, freed "
                                "%d bytes", summary["operations"], days, summary["bytes"])


def _start(app, name, work):
    def run():
        with app.app_context():
            try:
                work(app.extensions["history"])
            except Exception:
                app.logger.exception("The background %s failed; it will run again later", name)

    thread = threading.Thread(target=run, daemon=True, name=name)
    app.extensions[f"{name}_thread"] = thread
    thread.start()
