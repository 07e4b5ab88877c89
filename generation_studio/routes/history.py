"""The history API: ``/api/history`` (pages, one record, its files, stats,
CSV export, delete) and ``/api/health``."""

import hmac
import io

from flask import Blueprint, Response, current_app, jsonify, request, send_file

from .. import export, inputs, queries
from ..errors import ApiError
from ..store import current_store

bp = Blueprint("history", __name__)

MAX_PAGE = 500



@bp.get("/api/health")
def health():
    store = current_store()
    return jsonify(success=True, status="ok", provider=current_app.config["GENERATION_PROVIDER"],
                   storageDir=str(store.root), storageWritable=store.writable())


@bp.get("/api/history")
def operations():
    """A page of records, newest first, filtered; ``before=<id>`` for a stable next page."""
    store, args = current_store(), request.args
    filters = queries.filters_from(args)
    limit = inputs.number("limit", 1, MAX_PAGE, 50, integer=True, source=args)
    offset = inputs.number("offset", 0, 10**9, 0, integer=True, source=args)
    before = args.get("before")
    created = store.index.created_at(before) if before else None
    if before and created is None:
        raise ApiError(f"before={before!r} is not an operation in the history (it may have "
                       "been deleted): start again from the first page", field="before")
    ids, total, next_cursor = queries.page(store.index, filters, limit, offset, created, before)
    records = store.get_many(ids)
    return jsonify(success=True, operations=[records[i] for i in ids if i in records],
                   total=total, limit=limit, offset=offset, nextCursor=next_cursor)


@bp.get("/api/history/stats")
def stats():
    days = inputs.number("days", 1, 3660, 30, integer=True, source=request.args)
    body = queries.stats(current_store().index, queries.filters_from(request.args), days)
    return jsonify(success=True, **body)


@bp.get("/api/history/export.csv")
def export_csv():
    filters = queries.filters_from(request.args)
    index = current_store().index
    return Response(export.chunks(index, filters), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="operations.csv"'})


@bp.get("/api/history/<op_id>")
def operation(op_id):
    record = current_store().get(op_id)
    if record is None:
        raise ApiError(f"No operation {op_id!r}", status=404)
    return jsonify(success=True, operation=record)


@bp.delete("/api/history/<op_id>")
def delete(op_id):
    """Delete an operation with its files (and a workflow's steps)."""
    _require_admin()
    store = current_store()
    if store.get(op_id) is None:
        raise ApiError(f"No operation {op_id!r}", status=404)
    ids = store.with_steps(op_id)
    freed = store.delete_many(ids)
    current_app.logger.info("Deleted %s (%d bytes freed)", ", ".join(ids), freed)
    return jsonify(success=True, deleted=ids, freedBytes=freed)


def _require_admin():
    token = current_app.config.get("ADMIN_TOKEN")
    if not token:
        return
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise ApiError("Deleting needs the admin token: send Authorization: Bearer <ADMIN_TOKEN>",
                       status=401, headers={"WWW-Authenticate": "Bearer"})


@bp.get("/api/history/<op_id>/files/<path:name>")
def operation_file(op_id, name):
    found = current_store().open_file(op_id, name)
    if found is None:
        raise ApiError(f"Operation {op_id!r} has no file {name!r}", status=404)
    data, entry = found
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    return send_file(source, mimetype=entry["contentType"], max_age=3600, download_name=name)
