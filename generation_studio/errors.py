"""JSON error answers: ``{"success": false, "error": "<clear message>"}``.

``ApiError`` is raised by our own code with a status and, when the fault is
in one input, the field's name. Handlers are registered on the app, so that
routing errors (404, 405) and Werkzeug's (413) answer in the same shape.
Every JSON answer is strict JSON (``StrictJSONProvider``): never ``NaN``.
"""

import math

from flask import current_app, g, jsonify, redirect, render_template, request, url_for
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from .history import ArchiveDamaged, IndexUnavailable, NotFound
from .history.filters import FilterError
from .media import ImageRefused
from .storage.atomic import CANNOT_WRITE
from .web import wants_html

_HTTP_MESSAGES = {
    404: lambda e: f"Not found: {request.path}",
    405: lambda e: (f"Method {request.method} is not allowed on {request.path}; "
                    f"allowed: {', '.join(sorted(e.valid_methods or []))}"),
    413: lambda e: ("Request body is too large: the limit is "
                    f"{human_size(current_app.config['MAX_CONTENT_LENGTH'])} (MAX_CONTENT_LENGTH)"),
}


class ApiError(Exception):
    """An error the client should see, with its HTTP status."""

    status = 400

    def __init__(self, message: str, status: int | None = None, field: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers or {}
        if status is not None:
            self.status = status


class GenerationError(ApiError):
    """A generation that ran and failed (the provider's fault, not the input's)."""

    status = 500


class ProviderError(GenerationError):
    """A hosted provider failed, or answered something we will not use."""

    status = 502


class OperationCanceled(Exception):
    """The operation was canceled while it ran (its worker stops at the next
    frame, step or poll)."""


def human_size(size: int) -> str:
    """``52428800`` -> ``50 MB``; below a megabyte, in bytes."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.4g} MB"
    return f"{size:,} bytes"


def error_body(message: str, status: int, field: str | None = None):
    """The answer for an error: JSON, naming the recorded operation if any. A
    browser's native request gets the failed operation's page, or an error page."""
    if wants_html():
        if g.get("operation_id"):
            return redirect(url_for("pages.operation", op_id=g.operation_id), 303), 303
        return render_template("error.html", message=message, status=status), status
    body = {"success": False, "error": message}
    if field:
        body["field"] = field
    if g.get("operation_id"):
        body["operationId"] = g.operation_id
    return jsonify(body), status


# Domain errors (plain exceptions of the history) and their HTTP statuses.
_DOMAIN_STATUSES = ((FilterError, 400), (ImageRefused, 400), (NotFound, 404),
                    (IndexUnavailable, 503), (ArchiveDamaged, 409))


class StrictJSONProvider(DefaultJSONProvider):
    """Answers are strict JSON: a NaN or an infinity (from an old record, say)
    goes out as null, never as the token ``NaN`` that JSON parsers refuse."""

    def dumps(self, obj, **kwargs) -> str:
        kwargs.setdefault("allow_nan", False)
        try:
            return super().dumps(obj, **kwargs)
        except ValueError:  # "Out of range float values are not JSON compliant"
            return super().dumps(finite(obj), **kwargs)


def finite(value):
    """``value`` with every NaN or infinite float, at any depth, made None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def describe(e: Exception) -> tuple[str, int]:
    """The message and status a client gets for ``e``."""
    if isinstance(e, ApiError):
        return e.message, e.status
    for kind, status in _DOMAIN_STATUSES:
        if isinstance(e, kind):
            return str(e), status
    if isinstance(e, HTTPException):
        return _HTTP_MESSAGES.get(e.code, lambda e: e.description)(e), e.code or 500
    return f"Internal error ({type(e).__name__}); see the server log", 500


def _api_error(e: ApiError):
    response, status = error_body(e.message, e.status, e.field)
    if hasattr(response, "headers"):
        response.headers.update(e.headers)
    return response, status


def _http_error(e: HTTPException):
    response, status = error_body(*describe(e))
    if e.code == 405 and e.valid_methods and hasattr(response, "headers"):
        response.headers["Allow"] = ", ".join(e.valid_methods)
    return response, status


def _domain_error(e: Exception):
    response, status = error_body(*describe(e), getattr(e, "field", None))
    if isinstance(e, IndexUnavailable) and hasattr(response, "headers"):
        response.headers["Retry-After"] = "30"
    return response, status


def _os_error(e: OSError):
    """A change the storage refused (read-only, full, not allowed): 503, one
    line in the log; any other OSError is unexpected."""
    if e.errno not in CANNOT_WRITE:
        return _unexpected_error(e)
    current_app.logger.warning("The storage refused %s %s: %s", request.method, request.path, e)
    response, status = error_body(f"The storage cannot be written ({e.strerror}): try again "
                                  "when it can", 503)
    if hasattr(response, "headers"):
        response.headers["Retry-After"] = "30"
    return response, status


def _unexpected_error(e: Exception):
    current_app.logger.exception("Unhandled error on %s %s", request.method, request.path)
    return error_body(*describe(e))


def init_app(app):
    app.json = StrictJSONProvider(app)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    for kind, _ in _DOMAIN_STATUSES:
        app.register_error_handler(kind, _domain_error)
    app.register_error_handler(OSError, _os_error)
    app.register_error_handler(Exception, _unexpected_error)
