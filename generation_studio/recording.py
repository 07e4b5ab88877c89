"""``records_operation(type)``: the decorator that records every operation.

It wraps a generation view (under the route decorator). The view reads its
inputs through ``inputs`` and returns a provider ``Result``; the decorator
keeps the request's prompt, parameters and uploaded images, then the result
or the exception, and hands them to the store. The rules of the integration
guide hold: a failed save is logged and never changes the response; a failed
generation is recorded with its error, then answered as an error.
"""

import functools
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from flask import current_app, g, jsonify, redirect, url_for

from . import errors, inputs, media
from .providers import Result, current_provider
from .history import current_history
from .history.filters import iso
from .web import wants_html

SECRET_SETTINGS = ("REPLICATE_API_TOKEN", "FAL_KEY", "ADMIN_TOKEN", "SECRET_KEY")


def records_operation(operation_type, *, default=None):
    """Record each call of the view as an operation of ``operation_type``.

    ``operation_type`` is a string, or a callable of the request's
    ``inputs.RequestData`` for routes whose type depends on the input; then
    ``default`` names the type used when the request cannot be read at all.
    """
    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            started = time.time()
            op_type = operation_type if isinstance(operation_type, str) else default
            try:
                data = inputs.current()
                if callable(operation_type):
                    op_type = operation_type(data)
                result = current_app.ensure_sync(view)(*args, **kwargs)
            except Exception as exc:
                steps = getattr(exc, "steps", ())
                try:
                    _record(op_type, started, error=exc, steps=steps)
                finally:
                    _remove_downloads([s.result for s in steps if s.result])
                raise
            try:
                record = _record(op_type, started, result=result, steps=result.steps)
                if record and wants_html():
                    return redirect(url_for("pages.operation", op_id=record["operationId"]), 303)
                return jsonify(_success_body(op_type, result, record, time.time() - started))
            finally:
                _remove_downloads([result] + [s.result for s in result.steps if s.result])

        wrapper.unrecorded = view
        return wrapper

    return decorator


def _record(op_type, started, result: Result | None = None, error=None, steps=()):
    """Save the operation and its steps; on failure log it and return None."""
    if not current_app.config["RECORDING_ENABLED"]:
        return None
    store = current_history()
    op_id = store.new_id(datetime.fromtimestamp(started, timezone.utc))
    g.operation_id = op_id
    try:
        data = inputs.current()
    except Exception:  # the body itself was unreadable: record what we know
        data = inputs.RequestData()
    record = _base_record(op_type, started, time.time(), data.fields, result, error)
    record["operationId"] = op_id
    step_ids = [store.new_id(datetime.fromtimestamp(s.started, timezone.utc)) for s in steps]
    if steps:
        record["steps"] = step_ids
    try:
        # The workflow first, then its steps: a step never points at a missing workflow.
        record = store.save(record, [(u.data, u.filename) for u in data.uploads],
                            result.files if result else [])
    except OSError as e:  # storage full, read-only, refused: one clear line
        current_app.logger.error("Could not save operation %s (%s): %s; the response is sent "
                                 "all the same, with the result inline", op_id, op_type, e)
        g.operation_id = None
        return None
    except Exception:
        current_app.logger.exception("Could not save operation %s (%s); the response "
                                     "is sent all the same", op_id, op_type)
        g.operation_id = None
        return None
    for step, step_id in zip(steps, step_ids):
        _save_step(store, step, op_id, step_id)
    current_app.logger.info("Operation saved: %s (%s, %s, %d ms)", op_id, op_type,
                            record["status"], record["durationMs"])
    return record


def _save_step(store, step, parent_id, step_id) -> None:
    record = _base_record(step.operation, step.started, step.ended,
                          {"prompt": step.prompt, **step.params}, step.result, step.error)
    record.update(operationId=step_id, parentId=parent_id)
    try:
        store.save(record, step.inputs, step.result.files if step.result else [])
    except Exception as e:
        current_app.logger.error("Could not save step %s of workflow %s: %s", step_id,
                                 parent_id, e)


def _secrets() -> list:
    """The configured secret values (settings, or environment variables)."""
    return [current_app.config.get(name) or os.environ.get(name) for name in SECRET_SETTINGS]


def _base_record(op_type, started, ended, fields, result, error) -> dict:
    secrets = _secrets()
    prompt = fields.get("prompt")
    record = {
        "operationType": op_type,
        "status": "failed" if error is not None else "succeeded",
        "createdAt": iso(datetime.fromtimestamp(started, timezone.utc)),
        "completedAt": iso(datetime.fromtimestamp(ended, timezone.utc)),
        "durationMs": round((ended - started) * 1000, 1),
        "prompt": prompt if isinstance(prompt, str) else None,
        "parameters": inputs.parameters(inputs.RequestData(fields), secrets),
        "resultUrl": None,
        "resultUrls": [],
        "workflowAnalysis": None,
        "error": None,
        "errorType": None,
        "provider": {"name": current_provider().name, "model": None},
    }
    if result is not None:
        record["resultUrl"] = result.urls[0] if result.urls else None
        record["resultUrls"] = list(result.urls)
        record["workflowAnalysis"] = result.analysis
        record["provider"].update(model=result.model, **result.details)
    record["provider"].update(getattr(error, "details", None) or {})
    warnings = list(getattr(result, "warnings", None) or getattr(error, "warnings", None) or [])
    if warnings:
        record["warnings"] = warnings
    if error is not None:
        message, status = errors.describe(error)
        detail = str(error) if status >= 500 and str(error) else message
        record.update(error=_redact(detail, secrets), errorType=type(error).__name__,
                      httpStatus=status)
        record["workflowAnalysis"] = getattr(error, "analysis", None)
    return record


def _remove_downloads(results) -> None:
    """Delete downloaded temp files the store did not move in (save failed,
    recording off, or a step output the workflow passed on)."""
    for result in results:
        for item in result.files:
            if isinstance(item, Path):
                item.unlink(missing_ok=True)


def _redact(text: str, secrets) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def _success_body(op_type, result: Result, record, elapsed) -> dict:
    body = {
        "success": True,
        "operationId": record["operationId"] if record else None,
        "operationType": op_type,
        "saved": record is not None,
        "durationMs": round(elapsed * 1000, 1),
        "provider": record["provider"] if record else {"name": current_provider().name,
                                                      "model": result.model},
    }
    if record:
        files = [url_for("history.operation_file", op_id=record["operationId"], name=f["file"])
                 for f in record["outputs"]]
        body.update(recordUrl=url_for("history.operation", op_id=record["operationId"]),
                    fileUrl=files[0] if files else None, fileUrls=files,
                    contentType=record["outputs"][0]["contentType"] if files else None)
        urls = result.urls or files
    else:  # nothing keeps the result: hand it over inline rather than lose it
        urls = result.urls or [media.data_url(media.load(data)) for data in result.files]
    body.update(resultUrl=urls[0] if urls else None, resultUrls=urls)
    if result.analysis is not None:
        body["workflowAnalysis"] = result.analysis
    if getattr(result, "warnings", None):
        body["warnings"] = list(result.warnings)
    if record and record.get("steps"):
        body["steps"] = record["steps"]
    return body
