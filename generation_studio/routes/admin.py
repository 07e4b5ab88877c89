"""Pages that change the history: run again, delete, clean-up, compress, and
the admin login (when ADMIN_TOKEN is set). Every form carries a CSRF token."""

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from .. import rerun
from ..errors import human_size
from ..history import NotFound, current_history, export, filters, retention
from ..history.filters import FilterError
from ..jobs import Finished, current_jobs
from ..storage import archive, layout
from ..web import admin_required, attempt_login, check_csrf, local_path, log_out, login_wait

bp = Blueprint("admin", __name__)


@bp.post("/history/<op_id>/rerun", endpoint="rerun")
def rerun_page(op_id):
    """Run again, exactly: the same parameters, seed and stored inputs (``rerun``);
    the browser then follows the new operation on its page."""
    check_csrf()
    record = current_history().get(op_id)
    if record is None:
        return redirect(url_for("pages.gallery"))
    return rerun.answer(record, {})


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


@bp.post("/history/<op_id>/trash")
@admin_required
def trash(op_id):
    """Move to the trash, with an Undo right after (see ``_trashed``)."""
    return _apply("trash", [op_id])


@bp.post("/history/<op_id>/restore")
@admin_required
def restore(op_id):
    return _apply("restore", [op_id])


@bp.post("/history/bulk")
@admin_required
def bulk():
    """What the gallery's selection bar does to the operations ticked."""
    ids = [i for i in request.form.getlist("ids") if layout.is_id(i)][:filters.MAX_IDS]
    action = request.form.get("action")
    if action == "export" and ids:
        chosen = filters.Filters(ids=ids, trash="include")
        return Response(export.chunks(current_history(), chosen), mimetype="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="operations.csv"'})
    return _apply(action, ids)


# action: (history call, what the message says was done)
_ACTIONS = {"trash": ("trash", "moved to the trash"), "restore": ("untrash", "restored"),
            "star": ("star", "starred"), "unstar": ("star", "unstarred"),
            "delete": ("delete", "deleted for good")}


def _apply(action: str, ids: list):
    back = local_path(request.form.get("next")) or url_for("pages.gallery")
    if action not in _ACTIONS or not ids:
        flash("Choose an action and at least one operation." if ids or action in _ACTIONS
              else f"Unknown action {action!r}.")
        return redirect(back, 303)
    history, (call, done) = current_history(), _ACTIONS[action]
    changed = []
    for op_id in ids:
        try:
            if call == "star":
                history.star(op_id, action == "star")
                changed.append(op_id)
            else:
                result = getattr(history, call)(op_id)
                changed += result[0] if call == "delete" else result
        except NotFound:
            continue
    count = len(ids) if call == "star" else len(changed)
    flash(f"{count} operation{'s' if count != 1 else ''} {done}.")
    if action == "trash" and changed:
        flash(" ".join(changed), "undo")  # the page shows an Undo button restoring these
    return redirect(back, 303)


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
    target = local_path(request.values.get("next")) or url_for("admin.admin")
    if request.method == "GET":
        return render_template("login.html", next=target, error=None)
    wait = login_wait()
    if wait:
        error = f"Too many failed logins from your address: try again in {wait} s."
        return render_template("login.html", next=target, error=error), 429, {
            "Retry-After": str(wait)}
    check_csrf()
    if attempt_login(request.form.get("token", "")):
        return redirect(target, 303)
    return render_template("login.html", next=target, error="That is not the admin token."), 401


@bp.post("/logout")
def logout():
    check_csrf()
    log_out()
    return redirect(url_for("pages.studio"), 303)
