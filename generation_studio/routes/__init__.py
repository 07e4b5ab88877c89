"""The studio's blueprints, one per route family."""

from . import generate, history


def init_app(app):
    app.register_blueprint(generate.bp)
    app.register_blueprint(history.bp)
