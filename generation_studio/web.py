"""What the web pages share: content negotiation, security headers, CSRF
tokens and same-origin checks, the admin session."""

import functools
import hmac
import os
import secrets
from urllib.parse import urlsplit

from flask import abort, current_app, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from . import redaction
from .logins import LoginLimiter, SessionStore
from .thumbnails import has_picture

# Every response's. No inline script or style anywhere: JS and CSS come from
# /static. data: media is the inline result of an operation that could not be saved.
SECURITY_HEADERS = {
    "Content-Security-Policy": "; ".join([
        "default-src 'self'", "script-src 'self'", "style-src 'self'",
        "img-src 'self' data: blob:", "media-src 'self' data: blob:", "object-src 'none'",
        "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self'"]),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CSRF_HEADER = "X-CSRF-Token"


def wants_html() -> bool:
    """True for a browser's native form post or page load (not fetch, not curl)."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and request.accept_mimetypes[best] > request.accept_mimetypes[
        "application/json"]


# CSRF -------------------------------------------------------------------------------
def csrf_token() -> str:
    """This session's token, put in every state-changing form (and the pages' meta tag)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _is_csrf_token(sent: str) -> bool:
    return bool(sent) and hmac.compare_digest(sent.encode(), session.get("csrf", "").encode())


def check_csrf() -> None:
    if not _is_csrf_token(request.form.get("csrf_token", "")):
        abort(400, "The form expired or did not come from this studio (CSRF check); "
                   "reload the page and try again")


def request_origin() -> str | None:
    """The site a browser says this request comes from (``Origin``, else
    ``Referer``), as ``scheme://host``; None when it says nothing."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin:
        return None
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else origin


def cross_site_problem() -> str | None:
    """Why a mutation a browser may have sent with its cookies is refused;
    None when it is fine: it comes from this studio's own pages (same host,
    or this session's ``X-CSRF-Token``), or from a client that names no site
    and holds no admin cookie (curl, scripts)."""
    if _is_csrf_token(request.headers.get(CSRF_HEADER, "")):
        return None
    origin = request_origin()
    if origin is None:
        if admin_token() is not None and session.get("admin"):
            return (f"A request authenticated by the admin session cookie needs the "
                    f"{CSRF_HEADER} header (the page's csrf-token) or an Origin header")
        return None
    if urlsplit(origin).netloc.lower() == request.host.lower():
        return None
    return (f"Cross-origin request refused: it comes from {origin}, not from this studio "
            f"({request.host}); API clients send Authorization: Bearer <ADMIN_TOKEN> "
            "and no Origin")


def local_path(target) -> str | None:
    """``target`` if it is a path of this site (``/history?q=x``), else None:
    never ``//host``, ``/\\host``, ``https://...`` or ``javascript:``."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return None  # browsers read "/\host" and "/\t/host" as "//host"
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target


# The admin --------------------------------------------------------------------------
def admin_token() -> str | None:
    """The admin token as text (a numeric FLASK_ADMIN_TOKEN arrives as a
    number); None when none is set and the studio is open."""
    token = current_app.config.get("ADMIN_TOKEN")
    return None if token in (None, "") else str(token)


def bearer_is_admin() -> bool:
    """Whether the request carries ``Authorization: Bearer <ADMIN_TOKEN>``."""
    token, given = admin_token(), request.headers.get("Authorization", "")
    return token is not None and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def _sessions() -> SessionStore:
    return current_app.extensions["admin_sessions"]


def is_admin() -> bool:
    if admin_token() is None:
        return True
    session_id = session.get("admin")
    return isinstance(session_id, str) and _sessions().valid(session_id)


def _client() -> str:
    return request.remote_addr or "?"


def login_wait() -> int:
    """Seconds before this client may try to log in again (0: now)."""
    config = current_app.config
    return current_app.extensions["login_limiter"].retry_after(
        _client(), config["LOGIN_MAX_FAILURES"], config["LOGIN_WINDOW_SECONDS"])


def attempt_login(given: str) -> bool:
    """Log in if ``given`` is the admin token: a fresh session (new CSRF
    token) holding a new server-side session id. A failure counts against
    this client's address."""
    limiter, token = current_app.extensions["login_limiter"], admin_token()
    if token is None or not hmac.compare_digest(given.encode(), token.encode()):
        limiter.failed(_client(), current_app.config["LOGIN_WINDOW_SECONDS"])
        return False
    limiter.succeeded(_client())
    session.clear()
    session["admin"] = _sessions().add(current_app.config["ADMIN_SESSION_HOURS"] * 3600)
    return True


def log_out() -> None:
    """End the session here and on the server: a copy of its cookie stops working."""
    session_id = session.get("admin")
    if isinstance(session_id, str):
        _sessions().remove(session_id)
    session.clear()


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


# Every response ---------------------------------------------------------------------
class SessionCookies(SecureCookieSessionInterface):
    """The session cookie is ``Secure`` when the request came over HTTPS, or
    always with ``SESSION_COOKIE_SECURE`` (behind a proxy that ends TLS)."""

    def get_cookie_secure(self, app) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def _secure_response(response):
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.status_code >= 400 and not response.is_streamed and response.mimetype in (
            "application/json", "text/html"):
        text = response.get_data(as_text=True)
        clean = redaction.redact(text)
        if clean != text:  # an error message never hands a configured secret back
            response.set_data(clean)
    return response


def init_app(app):
    app.jinja_env.globals.update(csrf_token=csrf_token, has_picture=has_picture)
    app.session_interface = SessionCookies()
    app.extensions["admin_sessions"] = SessionStore(
        app.config.get("ADMIN_SESSIONS_PATH")
        or os.path.join(app.instance_path, "admin_sessions.sqlite3"))
    app.extensions["login_limiter"] = LoginLimiter()
    app.after_request(_secure_response)
    redaction.install_log_filter(app)
