"""Providers' webhooks: ``POST /api/webhooks/<provider>/<operation id>``.

A hosted job created while ``PUBLIC_URL`` is set gives its provider this
address (``providers.webhooks``). A call must carry the provider's valid
signature (401 otherwise, checked before anything is looked up, and nothing
changes) and name the job recorded for that operation (404 for an unknown
operation, 409 for another job, or before the job's id is recorded). It
then only wakes the job's polling loop, which fetches the job from the
provider's API and writes the outcome as a poll would: the first of the
webhook and the poll wins, the other finds the record final, so a job is
never finished twice. A webhook for a finished operation changes nothing.
"""

from flask import Blueprint, jsonify, request

from ..errors import ApiError
from ..history import current_history, records
from ..providers import current_provider
from ..providers.hosted import HostedProvider
from ..providers.webhooks import WebhookError

bp = Blueprint("webhooks", __name__)


@bp.post("/api/webhooks/<provider>/<op_id>")
def receive(provider: str, op_id: str):
    """A provider says that the job of operation ``op_id`` has ended."""
    hosted = current_provider()
    if not isinstance(hosted, HostedProvider) or provider != hosted.name:
        raise ApiError(f"This studio runs no {provider} jobs: no webhook is expected", 404)
    try:
        job_id = hosted.verify_webhook(request.headers, request.get_data())
    except WebhookError as e:
        raise ApiError(f"Webhook refused: {e}", e.status) from None
    record = current_history().get(op_id)
    if record is None:
        raise ApiError(f"No operation {op_id!r}", 404)
    recorded = (record.get("providerJob") or {}).get(hosted.job_key)
    if recorded != job_id:
        follows = f"follows job {recorded}" if recorded else "has no job recorded yet"
        raise ApiError(f"Operation {op_id} {follows}, not {hosted.label} job {job_id}", 409)
    if not records.is_final(record):
        hosted.arrivals.wake(op_id)
    return jsonify(success=True, operationId=op_id, status=record["status"])
