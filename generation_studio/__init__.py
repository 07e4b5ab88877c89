"""Generation Studio: a Flask backend for image and video generation that
records every operation (prompt, parameters, inputs, result, error) on disk."""

import os
import secrets
import tempfile

from dotenv import find_dotenv, load_dotenv
from flask import Flask

from . import backup, cli, errors, jobs, providers, routes, web
from .config import DEFAULTS
from .history import HistoryService, maintenance


def create_app(test_config=None):
    """Build the app: settings, store, provider, blueprints, CLI."""
    app = Flask(__name__, instance_relative_config=True)
    # "files//etc/passwd" should be a 404, not a redirect to a merged path.
    app.url_map.merge_slashes = False
    app.config.from_mapping(DEFAULTS)
    if test_config is None:
        # Later layers win: instance/config.py, then .env, then FLASK_* variables.
        app.config.from_pyfile("config.py", silent=True)
        load_dotenv(find_dotenv(usecwd=True))
        app.config.from_prefixed_env()
    else:
        app.config.from_mapping(test_config)
    app.config["STORAGE_DIR"] = app.config["STORAGE_DIR"] or os.path.join(
        app.instance_path, "data", "operations")
    app.config["INDEX_PATH"] = app.config["INDEX_PATH"] or os.path.join(
        app.config["STORAGE_DIR"], ".index", "history.sqlite3")
    # Flask 3.1 caps non-file form fields at 500 kB; data URLs in forms need more.
    app.config["MAX_FORM_MEMORY_SIZE"] = app.config["MAX_CONTENT_LENGTH"]
    app.logger.setLevel(app.config["LOG_LEVEL"])
    os.makedirs(app.instance_path, exist_ok=True)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(app.instance_path)

    # The history answers at once; the index check and recovery run behind it.
    history = HistoryService(app.config["STORAGE_DIR"], app.config["INDEX_PATH"], app.logger)
    app.extensions["history"] = history
    history.start(wait=app.config["HISTORY_CHECK_WAITS"])
    providers.init_app(app)
    jobs.init_app(app)
    errors.init_app(app)
    routes.init_app(app)
    cli.init_app(app)
    maintenance.init_app(app)
    backup.init_app(app)  # after the history: it listens for saved operations
    web.init_app(app)
    return app


def _instance_secret(folder: str) -> str:
    """A secret key made once and kept in the instance folder, so that every
    web process (gunicorn's workers) and every restart signs sessions alike."""
    path = os.path.join(folder, "secret_key")
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".secret_key.")
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key)
        try:
            os.link(tmp, path)  # whole, and only if no other process made one first
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return key  # a read-only instance folder: sessions last as long as the process
