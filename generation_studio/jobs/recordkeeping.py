"""What an operation's record says, from acceptance to its outcome.

``accepted`` is the record written when a request is accepted (``queued``):
the type, the prompt, the request's parameters as sent (secrets dropped),
the task as it will run (typed parameters, the seed drawn now, a workflow's
plan) and the provider. ``succeeded`` and ``failed`` are the fields the
outcome adds. Workflow steps are built the same way.
"""

from .. import errors, redaction
from ..history.filters import iso


def accepted(op_type: str, created, fields: dict, task: dict, provider: str,
             derived_from=()) -> dict:
    prompt = fields.get("prompt")
    record = {
        "operationType": op_type,
        "status": "queued",
        "createdAt": iso(created),
        "startedAt": None,
        "completedAt": None,
        "durationMs": None,
        "progress": None,
        "prompt": redaction.redact(prompt) if isinstance(prompt, str) else None,
        "parameters": redaction.parameters(fields),
        "task": task,
        "resultUrl": None,
        "resultUrls": [],
        "workflowAnalysis": task.get("plan"),
        "error": None,
        "errorType": None,
        "provider": {"name": provider, "model": None},
    }
    if derived_from:
        record["derivedFrom"] = list(derived_from)
    return record


def succeeded(result) -> dict:
    fields = {"status": "succeeded", "progress": 1.0,
              "resultUrl": result.urls[0] if result.urls else None,
              "resultUrls": list(result.urls), "error": None, "errorType": None}
    if result.analysis is not None:
        fields["workflowAnalysis"] = result.analysis
    if getattr(result, "warnings", None):
        fields["warnings"] = list(result.warnings)
    fields["provider"] = {"model": result.model, **result.details}
    return fields


def failed(exc: Exception) -> dict:
    message, status = errors.describe(exc)
    detail = str(exc) if status >= 500 and str(exc) else message
    fields = {"status": "failed", "error": redaction.redact(detail),
              "errorType": type(exc).__name__, "httpStatus": status}
    if detail != message:  # an internal error's text stays in the record, not the answer
        fields["errorAnswer"] = message
    if getattr(exc, "field", None):
        fields["errorField"] = exc.field
    retry_after = (getattr(exc, "headers", None) or {}).get("Retry-After")
    if retry_after:
        fields["retryAfter"] = retry_after
    if getattr(exc, "analysis", None) is not None:
        fields["workflowAnalysis"] = exc.analysis
    if getattr(exc, "details", None):
        fields["provider"] = dict(exc.details)
    if getattr(exc, "warnings", None):
        fields["warnings"] = list(exc.warnings)
    return fields


def merged(record: dict, fields: dict) -> dict:
    """``fields`` over ``record``, the provider's details added to what it had."""
    provider = {**(record.get("provider") or {}), **(fields.get("provider") or {})}
    return {**fields, "provider": provider}
