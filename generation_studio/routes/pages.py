"""The web studio's pages: the studio, the gallery, one operation, usage."""

from datetime import datetime, timedelta, timezone

from flask import Blueprint, abort, render_template, request, send_file
from werkzeug.datastructures import MultiDict

from .. import charts, inputs, queries, thumbnails
from ..catalog import OPERATION_TYPES
from ..errors import ApiError
from ..store import current_store
from ..forms import FORMS

bp = Blueprint("pages", __name__)
PAGE_SIZE = 24



@bp.get("/")
def studio():
    return render_template("studio.html", forms=FORMS)


@bp.get("/history")
def gallery():
    store = current_store()
    # A form's empty fields mean "any".
    args = MultiDict([(k, v) for k, v in request.args.items(multi=True) if v])
    page = {"args": args, "types": OPERATION_TYPES, "operations": [], "total": 0,
            "next_cursor": None, "error": None,
            "keep": {k: v for k, v in args.items() if k != "before"}}
    try:
        filters = queries.filters_from(args)
    except ApiError as e:
        return render_template("gallery.html", **{**page, "error": e.message}), 400
    before = args.get("before")
    created = store.index.created_at(before) if before else None
    ids, page["total"], page["next_cursor"] = queries.page(
        store.index, filters, PAGE_SIZE, 0, created, before if created else None)
    records = store.get_many(ids)
    page["operations"] = [records[i] for i in ids if i in records]
    return render_template("gallery.html", **page)


@bp.get("/history/<op_id>")
def operation(op_id):
    store = current_store()
    record = store.get(op_id)
    if record is None:
        abort(404)
    steps = store.get_many(record.get("steps") or [])
    return render_template("operation.html", op=record, steps=[steps[s] for s in record.get("steps", [])
                                                               if s in steps])


@bp.get("/history/<op_id>/thumb")
def thumb(op_id):
    store = current_store()
    record = store.get(op_id)
    path = thumbnails.thumbnail(store, record) if record else None
    if path is None:
        abort(404)
    return send_file(path, mimetype="image/webp", max_age=86400)


@bp.get("/stats")
def stats():
    days = inputs.number("days", 1, 365, 30, integer=True, source=request.args)
    body = queries.stats(current_store().index, queries.Filters(), days)
    by_type = sorted(body["byType"].items(), key=lambda kv: -kv[1]["count"])
    today = datetime.now(timezone.utc).date()
    every_day = [(today - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
    return render_template(
        "stats.html", s=body, days=days,
        per_day=charts.columns([(d, body["perDay"].get(d, 0)) for d in every_day]),
        counts=charts.bars([(t, [e.get("succeeded", 0), e.get("failed", 0)]) for t, e in by_type],
                           colours=charts.OUTCOME),
        durations=charts.bars([(t, [e["durationMs"]["median"] or 0, e["durationMs"]["p95"] or 0])
                               for t, e in by_type if e.get("durationMs")], unit=" ms"),
        storage=charts.bars([(t, e["bytes"] / 1024) for t, e in by_type], unit=" KB"))
