"""The web studio's pages: the studio, the gallery, one operation, compare,
usage; and how they show records (readable names, tiles, previews)."""

import json
import math
import re
from datetime import datetime, timedelta, timezone

from flask import Blueprint, Response, abort, render_template, request
from markupsafe import Markup
from werkzeug.datastructures import MultiDict

from .. import charts, files, forms, inputs, operations, rerun, thumbnails
from ..catalog import OPERATION_TYPES, OPERATIONS
from ..forms import FORMS
from ..history import current_history, filters
from ..history.filters import Filters, FilterError

bp = Blueprint("pages", __name__)
PAGE_SIZE = 24
PREVIEW_WIDTHS = thumbnails.PREVIEW_WIDTHS
COMPARE_LIMITS = (2, 4)
# The studio's forms that take images: where "Use as input" can send one.
IMAGE_FORMS = [(f.id, f.title) for f in FORMS if any(x.kind == "files" for x in f.fields)]
TYPE_NAMES = {"image_edit_single": "Edit", "image_edit_multiple": "Edit (several images)",
              "image_to_video_single": "Image to video",
              "image_to_video_transition": "Transition"}
LABELS = {f.name: f.label for route in operations.ROUTES for f in route.fields}
WORDS = {"img": "image", "fps": "frames per second"}


@bp.app_template_filter("humanize")
def humanize(name) -> str:
    """``text_to_image`` -> ``Text to image``, ``durationSeconds`` -> ``Duration seconds``."""
    if name in TYPE_NAMES:
        return TYPE_NAMES[name]
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name)).lower().split("_")
    text = " ".join(WORDS.get(w, w) for w in words if w)
    return text[:1].upper() + text[1:]


@bp.app_template_filter("label")
def label(name) -> str:
    """A parameter's name as the studio's forms show it."""
    return LABELS.get(name) or humanize(name)


@bp.app_template_filter("seconds")
def seconds(value) -> str:
    """``2.5`` -> ``2.5 s``, ``65`` -> ``1:05``."""
    value = float(value)
    if value < 60:
        return f"{value:g} s"
    return f"{int(value // 60)}:{int(value % 60):02d}"


def is_video(entry: dict) -> bool:
    return str(entry.get("contentType", "")).startswith("video/")


def is_image(entry: dict) -> bool:
    return str(entry.get("contentType", "")).startswith("image/")


def makes_video(record: dict) -> bool:
    made = OPERATIONS.get(record.get("operationType"))
    return bool(made and made[2] == "video") or any(map(is_video, record.get("outputs") or []))


def duration_of(record: dict) -> float | None:
    """A video's length: its output's, its provider's, or what was asked."""
    output = (record.get("outputs") or [{}])[0]
    for value in (output.get("durationSeconds"), (record.get("provider") or {}).get(
            "durationSeconds"), (record.get("parameters") or {}).get("duration")):
        try:
            return float(value)
        except (TypeError, ValueError):
            continue
    return None


def tile_of(record: dict) -> dict:
    """What a gallery tile shows: ``kind`` is failed, waiting (no result yet or
    canceled), nofile (succeeded, but no file was kept: a guide's record that
    has only its result's URL), video (a ``<video>``), animation (an animated
    image) or image."""
    outputs = record.get("outputs") or []
    if record.get("status") == "failed":
        kind = "failed"
    elif record.get("status") != "succeeded":
        kind = "waiting"
    elif not outputs:
        kind = "nofile"
    elif is_video(outputs[0]):
        kind = "video"
    elif makes_video(record):
        kind = "animation"
    else:
        kind = "image"
    return {"op": record, "kind": kind, "output": outputs[0] if outputs else None,
            "steps": len(record.get("steps") or []),
            "duration": duration_of(record) if kind in ("video", "animation") else None}


def page_links(current: int, pages: int, around: int = 2) -> list:
    """Page numbers to link: the first, the last and those around ``current``;
    None where some are skipped."""
    shown = sorted({1, pages, *range(max(1, current - around), min(pages, current + around) + 1)})
    links = []
    for number in shown:
        if links and number - links[-1] > 1:
            links.append(None)
        links.append(number)
    return links


def page_number(args) -> int:
    text = args.get("page", "1")
    if not text.isdigit() or not 1 <= int(text) <= 10**6:
        raise FilterError(f"page must be a whole number from 1 (got {text[:20]!r})", "page")
    return int(text)



@bp.get("/")
def studio():
    """The studio: one form at a time (``?form=``), filled from an operation
    (``?from=``) or with a stored image (``?use=``); see ``forms.studio_view``."""
    view = forms.studio_view(request.args, current_history())
    return render_template("studio.html", view=view, groups=forms.GROUPS, by_id=forms.BY_ID,
                           type_names={t: humanize(t) for t in OPERATION_TYPES}), view.status


@bp.get("/history")
def gallery():
    """The gallery: one tile per operation (a workflow's steps inside it), by
    page number; every filter is in the URL."""
    # A form's empty fields mean "any".
    args = MultiDict([(k, v) for k, v in request.args.items(multi=True) if v])
    keep = {k: args.getlist(k) for k in args if k != "page"}
    view = {"args": args, "keep": keep, "types": OPERATION_TYPES, "statuses": filters.STATUSES,
            "tiles": [], "total": None, "number": 1, "pages": None, "links": [],
            "more": False, "error": None, "degraded": False,
            "trash_view": args.get("trash") == "only"}
    try:
        view["number"] = number = page_number(args)
        query = MultiDict(args)
        if "parentId" not in query:
            query.setdefault("toplevel", "1")
        history = current_history()
        found = history.page(history.filters_from(query), PAGE_SIZE, (number - 1) * PAGE_SIZE)
    except FilterError as e:
        return render_template("gallery.html", **{**view, "error": e.message}), 400
    pages = max(1, math.ceil(found.total / PAGE_SIZE)) if found.total is not None else None
    view.update(tiles=[tile_of(r) for r in found.operations], total=found.total, pages=pages,
                links=page_links(number, pages) if pages else [], degraded=found.degraded,
                more=number < pages if pages else len(found.operations) == PAGE_SIZE)
    return render_template("gallery.html", **view)


@bp.get("/history/<op_id>")
def operation(op_id):
    history = current_history()
    record = history.get(op_id)
    if record is None:
        abort(404)
    steps = history.get_many(record.get("steps") or [])
    sources = history.get_many([d.get("operationId") for d in record.get("derivedFrom") or []
                                if isinstance(d, dict)])
    return render_template(
        "operation.html", op=record, tile=tile_of(record), sources=sources,
        steps=[tile_of(steps[s]) for s in record.get("steps", []) if s in steps],
        used_by=history.used_by(op_id), image_forms=IMAGE_FORMS,
        parameters=parameters_of(record), curl=curl_of(record))


def parameters_of(record: dict) -> dict:
    """What the job ran with (typed, with its seed), else what was asked."""
    task = record.get("task") if isinstance(record.get("task"), dict) else {}
    return task.get("params") or record.get("parameters") or {}


def curl_of(record: dict) -> Markup:
    """The request that runs ``record`` again, for the "Copy as curl" button
    (JSON in a non-executed script block; ``<`` escaped so it cannot end it)."""
    body = json.dumps({"url": rerun.route_of(record), "fields": rerun.fields_of(record)})
    return Markup(body.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


@bp.get("/history/<op_id>/thumb")
def thumb(op_id):
    history = current_history()
    record = history.get(op_id)
    return _picture(history, thumbnails.thumbnail(history, record) if record else None)


@bp.get("/history/<op_id>/preview/<path:name>")
def preview(op_id, name):
    """A stored image downscaled to ``w`` pixels wide (a video's poster frame),
    so that pages never load the full-size originals."""
    width = request.args.get("w", type=int)
    if width not in PREVIEW_WIDTHS:
        abort(400, f"w must be one of {', '.join(map(str, PREVIEW_WIDTHS))}")
    history = current_history()
    return _picture(history, thumbnails.preview(history, op_id, name, width))


def _picture(history, made):
    """A thumbnail or preview: its cached file, or its bytes when the storage
    could not keep it (not cached by the browser either: it may be kept next time)."""
    if isinstance(made, bytes):
        return Response(made, mimetype="image/webp", headers={"Cache-Control": "no-store"})
    source = files.open_inside(history.root, made) if made else None
    if source is None:  # no picture, or a link planted in .thumbs
        abort(404)
    return files.send_stored(source, "image/webp", made.name, max_age=86400)


@bp.get("/compare")
def compare():
    """Two to four operations side by side, their parameters in one table."""
    ids = list(dict.fromkeys(request.args.getlist("ids")))
    low, high = COMPARE_LIMITS
    if not low <= len(ids) <= high:
        return render_template("error.html", status=400, message=(
            f"Compare takes {low} to {high} different operations (ids=…); {len(ids)} given. "
            "Select them in the history.")), 400
    found = current_history().get_many(ids)
    missing = [i for i in ids if i not in found]
    if missing:
        return render_template("error.html", status=404, message=(
            f"No operation {', '.join(missing)} in the history")), 404
    records = [found[i] for i in ids]
    tiles = [tile_of(r) for r in records]
    return render_template("compare.html", tiles=tiles, rows=comparison(records),
                           slider=len(tiles) == 2 and all(t["kind"] == "image" for t in tiles))


def comparison(records: list) -> list:
    """The rows of the compare table: (label, values, whether they differ)."""
    def size(r):
        out = (r.get("outputs") or [{}])[0]
        return f"{out['width']}×{out['height']}" if out.get("width") else ""

    rows = [("Type", [humanize(r.get("operationType")) for r in records]),
            ("Status", [r.get("status") for r in records]),
            ("Prompt", [r.get("prompt") or "" for r in records]),
            ("Model", [(r.get("provider") or {}).get("model") or "" for r in records]),
            ("Size", [size(r) for r in records])]
    params = [parameters_of(r) for r in records]
    for name in dict.fromkeys(k for p in params for k in p):
        rows.append((label(name), ["" if p.get(name) is None else str(p[name]) for p in params]))
    return [(name, values, len(set(map(str, values))) > 1) for name, values in rows]


@bp.get("/stats")
def stats():
    days = inputs.number("days", 1, filters.MAX_DAYS, 30, integer=True, source=request.args)
    body = current_history().stats(Filters(), days)
    by_type = sorted(body["byType"].items(), key=lambda kv: -kv[1]["count"])
    today = datetime.now(timezone.utc).date()
    every_day = [(today - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
    per_day = [(d, body["perDay"].get(d, 0)) for d in every_day]
    counts = [(humanize(t), [e.get("succeeded", 0), e.get("failed", 0)]) for t, e in by_type]
    durations = [(humanize(t), [e["durationMs"]["median"] or 0, e["durationMs"]["p95"] or 0])
                 for t, e in by_type if e.get("durationMs")]
    storage = [(humanize(t), e["bytes"] / 1024) for t, e in by_type]
    charts_shown = [
        (f"Operations per day, last {days} days", charts.columns(
            per_day, title=f"Operations per day over the last {days} days"),
         charts.table(("Day", "Operations"), [row for row in per_day if row[1]])),
        ("By type: succeeded / failed", charts.bars(
            counts, colours=charts.OUTCOME, title="Operations succeeded and failed by type"),
         charts.table(("Type", "Succeeded", "Failed"), counts)),
        ("Durations by type: median / 95th percentile", charts.bars(
            durations, unit=" ms", title="Median and 95th percentile durations by type"),
         charts.table(("Type", "Median", "95th percentile"), durations, " ms")),
        ("Storage by type", charts.bars(storage, unit=" KB", title="Storage used by type"),
         charts.table(("Type", "Storage"), storage, " KB")),
    ]
    return render_template("stats.html", s=body, days=days, charts=charts_shown)
