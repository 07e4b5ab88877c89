"""Running an operation again: exactly as it ran, or with some fields changed.

An operation's record keeps what its job ran (``task``: typed parameters,
the seed drawn at acceptance, a workflow's plan, its route) and its input
files. Run again, it goes through its own route with those fields and its
stored inputs referenced (``op:<id>/<file>``), so it is checked and recorded
like any request, and the local engine makes the same bytes. Its record says
where it comes from: ``derivedFrom: [{"operationId", "relation": "rerun"}]``.
"""

from flask import current_app, g

from . import inputs, operations
from .catalog import WORKFLOWS
from .errors import ApiError

WORKFLOW_ROUTE = "/api/workflow/execute"
RANDOM = "random"


def answer(record: dict, overrides: dict):
    """Run ``record`` again through its own route's view, in this request:
    answered as that route answers (waiting, 202, or 303 for a browser)."""
    endpoint, _ = current_app.url_map.bind("").match(route_of(record), method="POST")
    g.read_request = lambda: request_data(record, overrides)
    if plan := same_plan(record, overrides):
        g.workflow_plan = plan
    return current_app.view_functions[endpoint]()


def fields_of(record: dict) -> dict:
    """The fields of the request that runs ``record`` again: prompt, parameters
    (with its seed), a workflow's type and its inputs as references."""
    task = record.get("task") or {}
    fields = dict(task.get("params") or record.get("parameters") or {})
    if isinstance(record.get("prompt"), str):
        fields["prompt"] = record["prompt"]
    if record.get("operationType") in WORKFLOWS:
        fields["workflow"] = record["operationType"]
    fields["images"] = [f"{inputs.REFERENCE_PREFIX}{record['operationId']}/{entry['file']}"
                        for entry in record.get("inputImages") or []]
    return fields


def route_of(record: dict) -> str:
    """The path of the route that made ``record``."""
    route = (record.get("task") or {}).get("route")
    if isinstance(route, str) and route.startswith("/api/"):
        return route
    op_type = record.get("operationType")
    for entry in operations.ROUTES:
        if op_type in entry.types:
            return entry.path
    return WORKFLOW_ROUTE


def request_data(record: dict, overrides: dict) -> inputs.RequestData:
    """The request that runs ``record`` again, with ``overrides`` applied
    (``{"seed": "random"}`` draws a new seed)."""
    fields = fields_of(record)
    for name, value in overrides.items():
        if name in inputs.IMAGE_FIELDS:
            fields["images"] = value if isinstance(value, list) else [value]
        elif name == "seed" and value == RANDOM:
            fields.pop("seed", None)
        else:
            fields[name] = value
    images = fields.pop("images")
    uploads = [inputs.from_text("images", i, item) for i, item in enumerate(images)]
    return inputs.RequestData(fields, uploads, route=route_of(record), derived_from=[
        {"operationId": record["operationId"], "file": None, "relation": "rerun"}])


def overrides_of(body) -> dict:
    """The JSON body of a rerun: nothing, or an object of fields to change."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError("The body of a rerun is a JSON object of the fields to change, such as "
                       "{\"prompt\": \"a cat\", \"seed\": \"random\"}, or nothing")
    return body


def same_plan(record: dict, overrides: dict) -> dict | None:
    """A workflow's recorded plan, when the rerun changes nothing it was made from."""
    if set(overrides) & {"prompt", "workflow", *inputs.IMAGE_FIELDS}:
        return None
    return (record.get("task") or {}).get("plan")
