"""``records_operation(type)``: the decorator that records every operation.

It wraps a generation view (under the route decorator). The view reads and
checks its inputs through ``inputs`` and returns the ``Task`` to run; the
decorator then, in this order:

1. writes the operation's record at once — ``queued``, with its prompt,
   parameters and input images — and puts it on the job queue (``jobs``);
2. answers: by default it waits for the job and answers with its result, as
   the integration guide expects; ``Prefer: respond-async`` (or a wait that
   runs out) gets ``202 Accepted`` and the operation's address (``answers``).

A request the view refuses is recorded as failed, then answered 4xx. The
guide's rule holds: when the record cannot be written (storage full,
read-only, recording off), the generation still runs, in the request, and
its result comes back inline — never a failed response because of a save.
"""

import functools
from datetime import datetime, timezone

from flask import current_app, g, request

from . import answers, inputs, media, workflow
from .history import current_history
from .history.filters import iso
from .jobs import current_jobs, recordkeeping
from .providers import current_provider


def records_operation(operation_type, *, default=None):
    """Record each call of the view as an operation of ``operation_type``.

    ``operation_type`` is a string, or a callable of the request's
    ``inputs.RequestData`` for routes whose type depends on the input; then
    ``default`` names the type used when the request cannot be read at all.
    """
    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            created = datetime.now(timezone.utc)
            op_type = operation_type if isinstance(operation_type, str) else default
            try:
                data = inputs.current()
                if callable(operation_type):
                    op_type = operation_type(data)
                task = current_app.ensure_sync(view)(*args, **kwargs)
            except Exception as exc:
                _record_refusal(op_type, created, exc)
                raise
            record = _accept(op_type, created, data, task)
            if record is None:
                return answers.inline(op_type, _run_inline(task), created)
            return answers.for_operation(record, wait=answers.wait_seconds())

        wrapper.unrecorded = view
        return wrapper

    return decorator


def _accept(op_type, created, data, task) -> dict | None:
    """Write the queued record and queue it; None when it cannot be kept."""
    if not current_app.config["RECORDING_ENABLED"]:
        return None
    history = current_history()
    spec = {"operation": task.operation, "params": task.params,
            "route": data.route or request.path}
    if task.plan:
        spec["plan"] = task.plan
    record = recordkeeping.accepted(op_type, created, data.fields, spec, current_provider().name,
                                    data.sources())
    record["operationId"] = history.new_id(created)
    if task.plan:  # the steps' ids, known before they run
        record["steps"] = [history.new_id(created) for _ in task.plan["steps"]]
    try:
        record = current_jobs().submit(record, [(u.data, u.filename) for u in data.uploads])
    except OSError as e:  # storage full, read-only, refused: one clear line
        current_app.logger.error("Could not save operation %s (%s): %s; it runs in the request "
                                 "and its result is sent inline", record["operationId"],
                                 op_type, e)
        return None
    g.operation_id = record["operationId"]
    current_app.logger.info("Operation accepted: %s (%s)", record["operationId"], op_type)
    return record


def _record_refusal(op_type, created, exc) -> None:
    """Record a request the view refused (bad input) as failed; log, never raise.

    The uploads the image gate refuses (not an image, over a limit) are not
    kept: the record lists them in ``refusedInputs`` (name, size, claimed type,
    sha256, reason). ``g.operation_id`` is set only once the record is written.
    """
    if not current_app.config["RECORDING_ENABLED"]:
        return
    try:
        try:
            data = inputs.current()
        except Exception:  # the body itself was unreadable: record what we know
            data = inputs.RequestData()
        kept = [u for u in data.uploads if inputs.refusal(u) is None]
        refused = [inputs.refused_entry(u) for u in data.uploads if u.refusal is not None]
        history = current_history()
        ended = datetime.now(timezone.utc)
        record = {**recordkeeping.accepted(op_type, created, data.fields, {},
                                           current_provider().name, data.sources()),
                  **recordkeeping.failed(exc), "completedAt": iso(ended),
                  "durationMs": round((ended - created).total_seconds() * 1000, 1)}
        if refused:
            record["refusedInputs"] = refused
        record["operationId"] = history.new_id(created)
        history.save(record, [(u.data, u.filename) for u in kept])
    except Exception as e:
        current_app.logger.error("Could not record the refused %s request: %s (%s)", op_type,
                                 e, type(e).__name__)
        return
    g.operation_id = record["operationId"]
    current_app.logger.info("Operation saved: %s (%s, failed)", record["operationId"], op_type)


def _run_inline(task):
    """Run the task in the request, with nothing kept (the fallback)."""
    provider = current_provider()
    if task.plan:
        uploads = [(data, None) for data in task.sources]
        return workflow.run(task.plan, uploads, task.params, provider, history=None,
                            parent=None)
    task.images = [media.decode_rgb(data) for data in task.sources]
    return provider.run(task)

