"""Pages that change the history: run again, delete, clean-up, compress, and
the admin login (when ADMIN_TOKEN is set). Every form carries a CSRF token."""

import hmac
import io
from urllib.parse import urlsplit

from flask import (Blueprint, current_app, flash, redirect, render_template, request, session,
                   url_for)

from ..errors import human_size
from ..history import current_history, retention
from ..history.filters import FilterError
from ..jobs import Finished, current_jobs
from ..storage import archive
from ..web import admin_required, check_csrf

bp = Blueprint("admin", __name__)

# The route that runs each operation type again.
ROUTES = {
    "text_to_image": "/api/generate/text-to-image", "img_to_img": "/api/generate/img-to-img",
    "image_edit_single": "/api/edit/image", "image_edit_multiple": "/api/edit/image",
    "pose_transfer": "/api/edit/pose", "style_transfer": "/api/edit/style",
    "text_to_video": "/api/video/text-to-video",
    "image_to_video_single": "/api/video-image/animate-image",
    "image_to_video_transition": "/api/video-image/transition",
}
WORKFLOW_ROUTE = "/api/workflow/execute"



@bp.post("/history/<op_id>/rerun")
def rerun(op_id):
    """Send the same prompt, parameters and input images to the same route again."""
    check_csrf()
    history = current_history()
    record = history.get(op_id)
    if record is None:
        return redirect(url_for("pages.gallery"))
    fields = {k: str(v) for k, v in (record.get("parameters") or {}).items()}
    if record.get("prompt") is not None:
        fields["prompt"] = record["prompt"]
    files = []
    for entry in record.get("inputImages") or []:
        data, _ = history.open_file(op_id, entry["file"])
        data = data if isinstance(data, bytes) else data.read_bytes()
        files.append((io.BytesIO(data), entry.get("originalName") or entry["file"]))
    route = ROUTES.get(record.get("operationType"), WORKFLOW_ROUTE)
    # Through the real route, so the new run is validated and recorded like any other.
    answer = current_app.test_client().post(route, data={**fields, "images": files},
                                            content_type="multipart/form-data",
                                            headers={"Accept": "application/json"})
    new_id = (answer.get_json(silent=True) or {}).get("operationId")
    if new_id is None:
        flash(f"Running it again failed: {(answer.get_json(silent=True) or {}).get('error')}")
        return redirect(url_for("pages.operation", op_id=op_id))
    return redirect(url_for("pages.operation", op_id=new_id), 303)


@bp.post("/history/<op_id>/cancel")
@admin_required
def cancel(op_id):
    """The Cancel button of a queued or running operation's page."""
    try:
        current_jobs().cancel(op_id)
        flash("Canceled: a queued operation never starts; a running one stops at its next "
              "frame or step.")
    except Finished as e:
        flash(str(e))
    return redirect(url_for("pages.operation", op_id=op_id), 303)


@bp.route("/history/<op_id>/delete", methods=["GET", "POST"])
@admin_required
def delete(op_id):
    history = current_history()
    record = history.get(op_id)
    if record is None:
        return redirect(url_for("pages.gallery"))
    if request.method == "GET":
        return render_template("confirm_delete.html", op=record, ids=history.with_steps(op_id))
    ids, freed = history.delete(op_id)
    flash(f"Deleted {len(ids)} operation(s), {human_size(freed)} freed.")
    return redirect(url_for("pages.gallery"), 303)


@bp.route("/admin", methods=["GET", "POST"])
@admin_required
def admin():
    history, preview, message = current_history(), None, None
    if request.method == "POST":
        action = request.form.get("action")
        try:
            age_text = request.form.get("older_than", "")
            age = retention.parse_age(age_text)
        except FilterError as e:
            flash(e.message)
            return redirect(url_for("admin.admin"))
        if action == "preview":
            preview = history.cleanup(age, dry_run=True)
            preview["age"] = age_text
        elif action == "cleanup":
            done = history.cleanup(age)
            message = (f"Deleted {done['operations']} operation(s) older than {age_text}, "
                       f"{human_size(done['bytes'])} freed.")
        elif action == "compress":
            done = history.compress(age)
            message = (f"Compressed {done['days']} day(s) older than {age_text}: "
                       f"{human_size(done['bytesSaved'])} saved.")
        if message:
            flash(message)
            return redirect(url_for("admin.admin"), 303)
    return render_template("admin.html", preview=preview, days=archive.days(history.root),
                           health=history.health(), human_size=human_size)


@bp.route("/login", methods=["GET", "POST"])
def login():
    target = request.values.get("next") or url_for("admin.admin")
    if urlsplit(target).netloc or not target.startswith("/"):
        target = url_for("admin.admin")  # only paths of this site
    error = None
    if request.method == "POST":
        check_csrf()
        token = current_app.config.get("ADMIN_TOKEN") or ""
        if token and hmac.compare_digest(request.form.get("token", "").encode(), token.encode()):
            session["admin"] = True
            return redirect(target, 303)
        error = "That is not the admin token."
    return render_template("login.html", next=target, error=error), 401 if error else 200


@bp.post("/logout")
def logout():
    check_csrf()
    session.pop("admin", None)
    return redirect(url_for("pages.studio"), 303)
