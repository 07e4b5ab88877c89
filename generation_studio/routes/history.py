"""The history API: ``/api/history`` (pages, one record with what was made
from it, its files, stats, CSV export, rerun, trash and restore, star, delete)
and ``/api/health``. Every answer comes from the one history service, as the
pages' and the CLI's do."""

import time

from flask import Blueprint, Response, current_app, jsonify, request

from .. import backup, files, inputs, rerun, web
from ..errors import ApiError
from ..history import current_history, export, filters, records
from ..jobs import Finished, current_jobs

EVENTS_POLL_SECONDS = 0.25
EVENTS_HEARTBEAT_SECONDS = 15

bp = Blueprint("history", __name__)

MAX_PAGE = 500


@bp.get("/api/health")
def health():
    history = current_history()
    state = history.health()
    degraded = state["index"] != "ok" or not state["writable"]
    return jsonify(success=True, status="degraded" if degraded else "ok",
                   provider=current_app.config["GENERATION_PROVIDER"],
                   storageDir=str(history.root), storageWritable=state.pop("writable"),
                   history=state, backup=backup.status())


@bp.get("/api/history")
def operations():
    """A page of records, newest first, filtered; ``before=<id>`` for a stable next page."""
    args = request.args
    limit = inputs.number("limit", 1, MAX_PAGE, 50, integer=True, source=args)
    offset = inputs.number("offset", 0, 10**9, 0, integer=True, source=args)
    history = current_history()
    page = history.page(history.filters_from(args), limit, offset, args.get("before"))
    body = {"success": True, "operations": page.operations, "total": page.total,
            "limit": limit, "offset": offset, "nextCursor": page.next_cursor}
    if page.degraded:
        body["degraded"] = ("the index is being rebuilt: this page was read from the records, "
                            "in order of their day; totals and searches come back when it is done")
    return jsonify(body)


@bp.get("/api/history/stats")
def stats():
    days = inputs.number("days", 1, filters.MAX_DAYS, 30, integer=True, source=request.args)
    # Trashed operations still take their room until the trash is emptied.
    history = current_history()
    body = history.stats(history.filters_from(request.args, trash="include"), days)
    return jsonify(success=True, **body)


@bp.get("/api/history/export.csv")
def export_csv():
    history = current_history()
    chunks = export.chunks(history, history.filters_from(request.args))
    return Response(chunks, mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="operations.csv"'})


@bp.get("/api/history/<op_id>")
def operation(op_id):
    history = current_history()
    return jsonify(success=True, operation=history.require(op_id), usedBy=history.used_by(op_id))


@bp.post("/api/history/<op_id>/rerun")
def rerun_operation(op_id):
    """Run an operation again through its own route, exactly or with the JSON
    body's fields changed; answered as that route answers."""
    record = current_history().require(op_id)
    return rerun.answer(record, rerun.overrides_of(_json_body()))


@bp.post("/api/history/<op_id>/trash")
def trash(op_id):
    """Move an operation (and a workflow's steps) to the trash, where it can be restored."""
    _require_admin()
    ids = current_history().trash(op_id)
    return jsonify(success=True, trashed=ids, operation=current_history().require(op_id))


@bp.post("/api/history/<op_id>/restore")
def restore(op_id):
    """Take an operation (and a workflow's steps) out of the trash."""
    _require_admin()
    ids = current_history().untrash(op_id)
    return jsonify(success=True, restored=ids, operation=current_history().require(op_id))


@bp.post("/api/history/<op_id>/star")
def star(op_id):
    """Star or unstar an operation: ``{"starred": true | false}`` (true when empty)."""
    _require_admin()
    body = _json_body()
    starred = True if body is None else body.get("starred") if isinstance(body, dict) else None
    if not isinstance(starred, bool):
        raise ApiError("starred must be true or false, as in {\"starred\": true}",
                       field="starred")
    return jsonify(success=True, operation=current_history().star(op_id, starred))


def _json_body():
    """The request's JSON body, None when it has none; 400 when it is not JSON."""
    if not request.get_data(cache=True):
        return None
    return inputs.strict_json(request.get_data(cache=True))


@bp.delete("/api/history/<op_id>")
def delete(op_id):
    """Delete an operation with its files (and a workflow's steps)."""
    _require_admin()
    ids, freed = current_history().delete(op_id)
    current_app.logger.info("Deleted %s (%d bytes freed)", ", ".join(ids), freed)
    return jsonify(success=True, deleted=ids, freedBytes=freed)


@bp.post("/api/history/<op_id>/cancel")
def cancel(op_id):
    """Cancel a queued or running operation (409 once it has ended)."""
    _require_admin()
    try:
        record = current_jobs().cancel(op_id)
    except Finished as e:
        raise ApiError(str(e), status=409) from None
    if record["status"] == "running":  # its worker stops at the next frame, step or poll
        record = current_jobs().wait(op_id, current_app.config["CANCEL_WAIT_SECONDS"]) or record
    return jsonify(success=True, operation=record)


@bp.get("/api/history/<op_id>/events")
def operation_events(op_id):
    """The operation's status and progress as Server-Sent Events, until it ends."""
    history = current_history()
    history.require(op_id)
    longest = current_app.config["EVENTS_MAX_SECONDS"]
    dumps = current_app.json.dumps  # the app's: no NaN ever leaves it

    def stream():
        last, beat, ends = None, time.monotonic(), time.monotonic() + longest
        yield "retry: 2000\n\n"
        while time.monotonic() < ends:
            record = history.get(op_id)
            if record is None:
                yield "event: gone\ndata: {}\n\n"
                return
            state = {k: record.get(k) for k in ("operationId", "status", "progress",
                                                 "providerState", "startedAt")}
            if state != last:
                last, beat = state, time.monotonic()
                yield f"event: status\ndata: {dumps(state)}\n\n"
            if records.is_final(record):
                yield f"event: end\ndata: {dumps({'operation': record})}\n\n"
                return
            if time.monotonic() - beat >= EVENTS_HEARTBEAT_SECONDS:
                beat = time.monotonic()
                yield ": heartbeat\n\n"
            time.sleep(EVENTS_POLL_SECONDS)

    return Response(stream(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _require_admin():
    """A mutation: the bearer token (API clients), or the admin session's
    cookie on a request from the studio's own pages (same origin, or the
    X-CSRF-Token header). A browser's request from another site is refused
    even when no ADMIN_TOKEN is set."""
    if web.bearer_is_admin():
        return
    problem = web.cross_site_problem()
    if problem:
        raise ApiError(problem, status=403)
    if not web.is_admin():
        raise ApiError("This needs the admin token: send Authorization: Bearer <ADMIN_TOKEN> "
                       "(or log in at /login)", status=401,
                       headers={"WWW-Authenticate": "Bearer"})


@bp.get("/api/history/<op_id>/files/<path:name>")
def operation_file(op_id, name):
    found = current_history().open_file(op_id, name)
    if found is None:
        raise ApiError(f"Operation {op_id!r} has no file {name!r}", status=404)
    data, entry = found
    source = data if isinstance(data, bytes) else files.open_inside(current_history().root, data)
    if source is None:  # replaced by a link, or removed, since the record was read
        raise ApiError(f"Operation {op_id!r} has no file {name!r}", status=404)
    return files.send_stored(source, entry.get("contentType"), name, max_age=3600,
                             etag=entry.get("sha256"))
