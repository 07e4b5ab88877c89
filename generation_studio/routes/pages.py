"""The web studio's pages: the studio, the gallery, one operation, usage."""

from datetime import datetime, timedelta, timezone

from flask import Blueprint, abort, render_template, request, send_file
from werkzeug.datastructures import MultiDict

from .. import charts, inputs, thumbnails
from ..catalog import OPERATION_TYPES
from ..forms import FORMS
from ..history import current_history, filters
from ..history.filters import Filters, FilterError

bp = Blueprint("pages", __name__)
PAGE_SIZE = 24



@bp.get("/")
def studio():
    return render_template("studio.html", forms=FORMS)


@bp.get("/history")
def gallery():
    history = current_history()
    # A form's empty fields mean "any".
    args = MultiDict([(k, v) for k, v in request.args.items(multi=True) if v])
    page = {"args": args, "types": OPERATION_TYPES, "statuses": filters.STATUSES,
            "operations": [], "total": 0,
            "next_cursor": None, "error": None, "degraded": False,
            "keep": {k: v for k, v in args.items() if k != "before"}}
    try:
        found = history.page(filters.parse(args), PAGE_SIZE, 0, args.get("before"))
    except FilterError as e:
        return render_template("gallery.html", **{**page, "error": e.message}), 400
    page.update(operations=found.operations, total=found.total, next_cursor=found.next_cursor,
                degraded=found.degraded)
    return render_template("gallery.html", **page)


@bp.get("/history/<op_id>")
def operation(op_id):
    history = current_history()
    record = history.get(op_id)
    if record is None:
        abort(404)
    steps = history.get_many(record.get("steps") or [])
    return render_template("operation.html", op=record,
                           steps=[steps[s] for s in record.get("steps", []) if s in steps])


@bp.get("/history/<op_id>/thumb")
def thumb(op_id):
    history = current_history()
    record = history.get(op_id)
    path = thumbnails.thumbnail(history, record) if record else None
    if path is None:
        abort(404)
    return send_file(path, mimetype="image/webp", max_age=86400)


@bp.get("/stats")
def stats():
    days = inputs.number("days", 1, 365, 30, integer=True, source=request.args)
    body = current_history().stats(Filters(), days)
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
