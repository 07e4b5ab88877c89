"""The history API: ``/api/history`` and the stored files, plus ``/api/health``."""

from flask import Blueprint, current_app, jsonify, request, send_file

from .. import inputs
from ..catalog import OPERATION_TYPES
from ..errors import ApiError

bp = Blueprint("history", __name__)

MAX_PAGE = 500
STATUSES = ("succeeded", "failed")


def _store():
    return current_app.extensions["operation_store"]


@bp.get("/api/health")
def health():
    store = _store()
    return jsonify(success=True, status="ok", provider=current_app.config["GENERATION_PROVIDER"],
                   storageDir=str(store.root), storageWritable=store.writable())


@bp.get("/api/history")
def operations():
    limit = inputs.number("limit", 1, MAX_PAGE, 50, integer=True, source=request.args)
    offset = inputs.number("offset", 0, 10**9, 0, integer=True, source=request.args)
    status = inputs.choice("status", STATUSES, source=request.args)
    types = request.args.getlist("type")
    for name in types:
        if name not in OPERATION_TYPES:
            raise ApiError(f"type must be one of {', '.join(OPERATION_TYPES)} (got {name!r})",
                           field="type")
    page, total = _store().query(limit=limit, offset=offset, types=types, status=status)
    return jsonify(success=True, operations=page, total=total, limit=limit, offset=offset)


@bp.get("/api/history/<op_id>")
def operation(op_id):
    record = _store().get(op_id)
    if record is None:
        raise ApiError(f"No operation {op_id!r}", status=404)
    return jsonify(success=True, operation=record)


@bp.get("/api/history/<op_id>/files/<path:name>")
def operation_file(op_id, name):
    found = _store().find_file(op_id, name)
    if found is None:
        raise ApiError(f"Operation {op_id!r} has no file {name!r}", status=404)
    path, entry = found
    return send_file(path, mimetype=entry["contentType"], max_age=3600)
