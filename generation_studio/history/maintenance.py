"""What the server does by itself, in the background, after a request:
recovery every ``RECOVERY_INTERVAL_SECONDS`` (default 5 minutes), then a
check of the index against the records (what another program put into the
folder or took out of it); and, at most once an hour, the clean-up:
emptying the trash of what has lain in it ``TRASH_DAYS`` and, with
``RETENTION_DAYS`` set, deleting older operations. Both are shared by all
server processes through the index, so one of them runs each: the recovery
lists the whole folder (20 s at 1,000,000 operations), and every web process
and the job worker would otherwise each do it. Every process still recovers
and checks at its own start."""

import threading
import time
from datetime import timedelta

from flask import current_app

from .service import IndexUnavailable

CLEANUP_INTERVAL_SECONDS = 3600


def init_app(app):
    app.extensions["maintenance"] = {"recovery": time.monotonic()}  # start-up recovers
    app.after_request(_after_request)


def _after_request(response):
    app = current_app._get_current_object()
    due = app.extensions["maintenance"]
    now = time.monotonic()
    interval = app.config["RECOVERY_INTERVAL_SECONDS"]
    if now - due["recovery"] >= interval and not _running(app, "recovery"):
        due["recovery"] = now
        # The index failing, each process recovers: it needs only the folder.
        if _won(app, "last_recovery", interval, unsure=True):
            _start(app, "recovery", _recover)
    if ((app.config.get("RETENTION_DAYS") or app.config.get("TRASH_DAYS"))
            and now - due.get("cleanup", -1e9) >= 60 and not _running(app, "retention")):
        due["cleanup"] = now  # asks the index at most once a minute
        if _won(app, "last_cleanup", CLEANUP_INTERVAL_SECONDS, unsure=False):
            _start(app, "retention", _cleanup)
    return response


def _won(app, key: str, seconds: float, unsure: bool) -> bool:
    """True for the one process that takes this turn of the work whose last
    start the index's ``key`` holds, ``seconds`` apart; ``unsure`` when the
    index cannot say."""
    history = app.extensions["history"]
    if history.keeper.problem is not None:  # logged once, when it broke
        return unsure
    now = time.time()
    try:
        last = history.index.get_meta(key)
        if last is not None and now - float(last) < seconds:
            return False
        return history.index.swap_meta(key, last, str(now))
    except Exception as e:
        app.logger.warning("Could not check when the %s last ran (%s)",
                           key.removeprefix("last_"), e)
        return unsure


def _recover(history):
    if not history.root.is_dir():
        return  # said at start, and in /api/health
    history.recover()
    history.check_index()


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


def _running(app, name) -> bool:
    """Whether this process's last ``name`` is still at work (at 1,000,000
    operations a turn can outlast the interval: it waits for the next)."""
    thread = app.extensions.get(f"{name}_thread")
    return thread is not None and thread.is_alive()


def _start(app, name, work):
    def run():
        with app.app_context():
            try:
                work(app.extensions["history"])
            except IndexUnavailable as e:  # being rebuilt: the next turn does it
                app.logger.info("The background %s waits for the index: %s", name, e)
            except Exception:
                app.logger.exception("The background %s failed; it will run again later", name)

    thread = threading.Thread(target=run, daemon=True, name=name)
    app.extensions[f"{name}_thread"] = thread
    thread.start()
