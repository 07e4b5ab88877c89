"""The studio's blueprints: one per route family, the generation views built
from the catalogue (``operations.ROUTES``), each wrapped by
``records_operation``; then the workflow, the history API and the pages."""

from flask import Blueprint

from .. import operations
from ..recording import records_operation
from . import admin, docs, history, pages, webhooks, workflow


def generation_blueprints() -> list[Blueprint]:
    """One blueprint per family; each view checks its request into a Task."""
    blueprints = {}
    for route in operations.ROUTES:
        bp = blueprints.setdefault(route.family, Blueprint(route.family, __name__))
        kind = route.types[0] if len(route.types) == 1 else route.type_for
        view = records_operation(kind, default=route.types[0])(_view(route))
        bp.add_url_rule(route.path, route.endpoint, view, methods=["POST"])
    return list(blueprints.values())


def _view(route: operations.Route):
    def view():
        return route.task()
    view.__name__, view.__doc__ = route.endpoint, route.description or route.title
    return view


def init_app(app):
    for blueprint in (*generation_blueprints(), workflow.bp, history.bp, pages.bp, admin.bp,
                      webhooks.bp, docs.bp):
        app.register_blueprint(blueprint)
