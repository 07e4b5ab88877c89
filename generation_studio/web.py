"""What the web pages share: content negotiation, CSRF tokens, the admin session."""

import functools
import hmac
import secrets

from flask import abort, current_app, redirect, request, session, url_for

from .thumbnails import has_picture


def wants_html() -> bool:
    """True for a browser's native form post or page load (not fetch, not curl)."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and request.accept_mimetypes[best] > request.accept_mimetypes[
        "application/json"]


def csrf_token() -> str:
    """This session's token, put in every state-changing form."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
        abort(400, "The form expired or did not come from this studio (CSRF check); "
                   "reload the page and try again")


def is_admin() -> bool:
    return not current_app.config.get("ADMIN_TOKEN") or session.get("admin") is True


def admin_required(view):
    """Pages that change the history: the admin session (when ADMIN_TOKEN is set), and CSRF on POST."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not is_admin():
            return redirect(url_for("admin.login", next=request.full_path))
        if request.method == "POST":
            check_csrf()
        return view(*args, **kwargs)
    return wrapper


def init_app(app):
    app.jinja_env.globals.update(csrf_token=csrf_token, has_picture=has_picture)
