"""What a generation route answers, from its operation's record.

- Waiting (the default, up to ``SYNC_WAIT_SECONDS``, or the client's
  ``Prefer: wait=N``): 200 with the result once the job has succeeded, or
  the error with its status once it has failed.
- ``Prefer: respond-async``, or a wait that runs out: ``202 Accepted`` with
  ``Location: /api/history/<id>`` and where to follow and cancel it.
- A browser's native form post: at once, 303 to the operation's page, which
  follows the job live.
- Nothing kept (the storage could not be written): 200 with the result
  inline as ``data:`` URLs.
"""

import re
from datetime import datetime, timezone

from flask import current_app, jsonify, redirect, request, url_for

from . import media
from .errors import error_body
from .jobs import current_jobs, runner
from .web import wants_html

_WAIT = re.compile(r"(?:^|[,;\s])wait=(\d+)")


def wait_seconds() -> float:
    """How long this request waits for its job (RFC 7240 ``Prefer``)."""
    prefer = request.headers.get("Prefer", "")
    if "respond-async" in prefer:
        return 0
    limit = current_app.config["SYNC_WAIT_SECONDS"]
    asked = _WAIT.search(prefer)
    return min(int(asked[1]), current_app.config["MAX_SYNC_WAIT_SECONDS"]) if asked else limit


def for_operation(record: dict, wait: float):
    op_id = record["operationId"]
    if wants_html():
        return redirect(url_for("pages.operation", op_id=op_id), 303)
    jobs = current_jobs()
    if wait > 0:
        record = jobs.wait(op_id, wait) or record
    unsaved = jobs.unsaved.pop(op_id, None)
    if unsaved is not None:  # it ran, but its result could not be written
        result, created = unsaved
        return inline(record["operationType"], result, created)
    if record["status"] == "succeeded":
        return jsonify(success_body(record))
    if record["status"] == "failed":
        response, status = error_body(record.get("errorAnswer") or record.get("error")
                                      or "failed", record.get("httpStatus") or 500,
                                      record.get("errorField"))
        if record.get("retryAfter") and hasattr(response, "headers"):
            response.headers["Retry-After"] = str(record["retryAfter"])
        return response, status
    if record["status"] == "canceled":
        return error_body(f"Operation {op_id} was canceled", 409)
    return accepted(record)


def accepted(record: dict):
    op_id = record["operationId"]
    status_url = url_for("history.operation", op_id=op_id)
    body = {"success": True, "operationId": op_id, "operationType": record["operationType"],
            "status": record["status"], "progress": record.get("progress"),
            "statusUrl": status_url,
            "eventsUrl": url_for("history.operation_events", op_id=op_id),
            "cancelUrl": url_for("history.cancel", op_id=op_id)}
    response = jsonify(body)
    response.status_code = 202
    response.headers["Location"] = status_url
    response.headers["Retry-After"] = "1"
    return response


def success_body(record: dict) -> dict:
    op_id = record["operationId"]
    files = [url_for("history.operation_file", op_id=op_id, name=f["file"])
             for f in record.get("outputs") or []]
    urls = record.get("resultUrls") or files
    body = {"success": True, "operationId": op_id, "operationType": record["operationType"],
            "status": record["status"], "saved": True, "durationMs": record.get("durationMs"),
            "provider": {k: v for k, v in (record.get("provider") or {}).items()
                         if k != "lease"},
            "recordUrl": url_for("history.operation", op_id=op_id),
            "fileUrl": files[0] if files else None, "fileUrls": files,
            "contentType": record["outputs"][0]["contentType"] if files else None,
            "resultUrl": urls[0] if urls else None, "resultUrls": urls}
    for key in ("workflowAnalysis", "steps", "warnings"):
        if record.get(key):
            body[key] = record[key]
    return body


def inline(op_type: str, result, created) -> dict:
    """The answer when nothing keeps the result: it comes back as data URLs."""
    try:
        urls = result.urls or [media.data_url(media.load(data)) for data in result.files]
        elapsed = (datetime.now(timezone.utc) - created).total_seconds()
        body = {"success": True, "operationId": None, "operationType": op_type,
                "status": "succeeded", "saved": False, "durationMs": round(elapsed * 1000, 1),
                "provider": {"name": current_app.extensions["generation_provider"].name,
                             "model": result.model, **result.details},
                "resultUrl": urls[0] if urls else None, "resultUrls": urls}
        if result.analysis is not None:
            body["workflowAnalysis"] = result.analysis
        if getattr(result, "warnings", None):
            body["warnings"] = list(result.warnings)
        return jsonify(body)
    finally:
        runner.remove_downloads(result)
