"""Generation Studio: a Flask backend for image and video generation that
records every operation (prompt, parameters, inputs, result, error) on disk."""

import os
import secrets

from dotenv import find_dotenv, load_dotenv
from flask import Flask

from . import cli, errors, providers, routes, web
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
    if not app.config.get("SECRET_KEY"):
        # Sessions (admin login, CSRF) then last as long as this process.
        app.config["SECRET_KEY"] = secrets.token_hex(32)
    os.makedirs(app.instance_path, exist_ok=True)

    # The history answers at once; the index check and recovery run behind it.
    history = HistoryService(app.config["STORAGE_DIR"], app.config["INDEX_PATH"], app.logger)
    app.extensions["history"] = history
    history.start(wait=app.config["HISTORY_CHECK_WAITS"])
    providers.init_app(app)
    errors.init_app(app)
    routes.init_app(app)
    cli.init_app(app)
    maintenance.init_app(app)
    web.init_app(app)
    return app
