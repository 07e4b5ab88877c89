"""The OpenAPI 3.1 description of the studio's HTTP API, made from the code.

The generation routes come from the catalogue (``operations.ROUTES``: each
field's type, range, choices and default, the prompt, the images), the
workflow route from ``routes.workflow.FIELDS``, the history API's queries
from ``history.filters``; so the document cannot drift from what the routes
check. ``document()`` is served at ``/api/openapi.json`` and shown at
``/api/docs``; the tests fuzz the live server from it.
"""

import base64
import io

from PIL import Image

from . import inputs, operations, workflow
from .catalog import OPERATION_TYPES, WORKFLOWS
from .history import filters
from .routes import history as history_routes
from .routes import workflow as workflow_route
from .storage import layout

JSON = "application/json"
ERROR_REF = {"$ref": "#/components/schemas/Error"}
IMAGE_TEXT = {"type": "string", "pattern": r"^(data:[\w.+/-]*(;[\w=.+-]+)*;base64,|op:)",
              "description": "A data URL (data:image/png;base64,...) or a stored file "
                             "(op:<operation id>/<file name>)"}
ERRORS = {
    400: "Bad input: the field named in `field` and its limit",
    401: "The admin token is needed (Authorization: Bearer <ADMIN_TOKEN>)",
    403: "A browser request from another site, or without the CSRF token",
    404: "No such operation or file",
    409: "The operation's state does not allow it (already ended, say)",
    413: "The body is over MAX_CONTENT_LENGTH",
    415: "The body is not JSON, a urlencoded form or multipart",
    429: "Too many requests; see Retry-After",
    500: "The generation itself failed",
    502: "The hosted provider failed or answered something unusable (its words, cut short)",
    503: "The history's index is being rebuilt, or the provider is throttling; see Retry-After",
    504: "The operation's deadline passed",
}
GENERATION_ERRORS = (400, 409, 413, 415, 429, 500, 502, 503, 504)
MUTATION_ERRORS = (400, 401, 403, 404, 409, 413, 415)


def document() -> dict:
    """The whole OpenAPI document."""
    paths = {route.path: {"post": _generation(route)} for route in operations.ROUTES}
    paths["/api/workflow/execute"] = {"post": _workflow()}
    paths.update(_history_paths())
    paths.update(_webhook_paths())
    paths.update(_docs_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Generation Studio API", "version": "1",
                 "description": "Every generation route takes its fields as JSON, as a "
                                "urlencoded form or as multipart, and records the operation. "
                                "Errors are JSON: {\"success\": false, \"error\", \"field\", "
                                "\"operationId\"}."},
        "paths": paths,
        "components": {"schemas": _schemas(),
                       "responses": {str(code): _error(text) for code, text in ERRORS.items()},
                       "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}}},
    }


# Fields ---------------------------------------------------------------------------
def field_schema(spec: operations.Field) -> dict:
    """A catalogue field as a JSON schema: type, range, choices, default."""
    if spec.kind == "choice":
        schema = {"type": "string", "enum": [*spec.choices, *spec.aliases]}
    else:
        schema = {"type": "number" if spec.kind == "number" else "integer",
                  "minimum": spec.low, "maximum": spec.high}
    if spec.default is not None:
        schema["default"] = spec.default
    text = spec.help or ("A random one when absent (recorded in provider.seed)"
                         if spec.kind == "seed" else "")
    return {"title": spec.label, **schema, **({"description": text} if text else {})}


def _count(low: int, high: int) -> str:
    return f"{low} image{'s' if low > 1 else ''}" if low == high else f"{low} to {high} images"


def _prompt(required: bool) -> dict:
    schema = {"type": "string", "maxLength": inputs.PROMPT_MAX_CHARS,
              "description": "What to make" + ("" if required else " (optional)")}
    if required:
        schema.update(minLength=1, pattern=r"\S")
    return schema


def example_image() -> str:
    """A small picture as a data URL, for the examples of image fields."""
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((16, 16)).convert("RGB").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _body(fields, prompt: str, images: tuple[int, int], extra: dict | None = None) -> dict:
    """The request body of a route, as JSON and as multipart."""
    low, high = images
    properties = {"prompt": _prompt(prompt == "required"), **(extra or {}),
                  **{f.name: field_schema(f) for f in fields}}
    required = ["prompt"] if prompt == "required" else []
    count = f"{_count(low, high)} in all, image and images together, in order"
    example = {"prompt": "a red boat on a calm lake",
               **({"images": [example_image()] * low} if low else {})}
    as_json = {"type": "object", "properties": dict(properties), "required": required,
               "examples": [example]}
    multipart = {"type": "object", "properties": dict(properties), "required": required}
    if high:
        as_json["properties"].update(
            images={"type": "array", "items": IMAGE_TEXT, "maxItems": high, "description": count},
            image=IMAGE_TEXT)
        binary = {"type": "string", "format": "binary", "contentMediaType": "image/*"}
        multipart["properties"].update(
            images={"type": "array", "items": binary, "maxItems": high, "description": count},
            image=binary)
    return {"required": True, "content": {
        JSON: {"schema": as_json},
        "multipart/form-data": {"schema": multipart},
        "application/x-www-form-urlencoded": {"schema": {**multipart, "properties": {
            k: v for k, v in multipart["properties"].items() if k not in ("image", "images")}}},
    }}


def _run_responses() -> dict:
    """What a generation route answers: its result, or 202 while it runs."""
    return {
        "200": {"description": "The operation succeeded (the request waited for its job)",
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/Result"}}}},
        "202": {"description": "Accepted and running (Prefer: respond-async, or the wait ran "
                               "out); follow Location",
                "headers": {"Location": {"schema": {"type": "string"},
                                         "description": "/api/history/<operation id>"}},
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
        "303": {"description": "A browser's native form post: to the operation's page"},
        **_refs(GENERATION_ERRORS),
    }


def _generation(route: operations.Route) -> dict:
    low, high = route.images
    images = f" Takes {_count(low, high)}. {route.image_help}" if high else ""
    return {"operationId": route.endpoint, "tags": [route.family],
            "summary": route.title,
            "description": f"Records operations of type {', '.join(route.types)}."
                           f"{images} {route.description}".strip(),
            "requestBody": _body(route.fields, route.prompt, route.images),
            "responses": _run_responses()}


def _workflow() -> dict:
    choose = {"type": "string", "enum": list(WORKFLOWS),
              "description": "Force this workflow (detected from the prompt and images when "
                             "absent)"}
    return {"operationId": "workflow_execute", "tags": ["workflow"],
            "summary": "Run a workflow of several steps",
            "description": "The request is analysed into a plan (its type, its steps); each "
                           "step is recorded as its own operation under the workflow.",
            "requestBody": _body(workflow_route.FIELDS, "required", (0, workflow.MAX_IMAGES),
                                 {"workflow": choose}),
            "responses": _run_responses()}


# The history API --------------------------------------------------------------------
def _query(name: str, schema: dict, text: str = "", array: int = 0) -> dict:
    """A query parameter; ``array``: repeated, at most that many times."""
    param = {"name": name, "in": "query", "required": False,
             "schema": {"type": "array", "items": schema, "maxItems": array} if array
             else schema}
    if array:
        param.update(style="form", explode=True)
    return {**param, **({"description": text} if text else {})}


def filter_parameters() -> list[dict]:
    """The history's filters (``history.filters.parse``) as query parameters."""
    flag = {"type": "string", "enum": ["0", "1", "true", "false"]}
    moment = {"type": "string", "maxLength": 40,
              "description": "A date (2026-11-24, the whole day) or an ISO 8601 time"}
    return [
        _query("type", {"type": "string", "enum": list(OPERATION_TYPES)}, "Operation types",
               array=len(OPERATION_TYPES)),
        _query("status", {"type": "string", "enum": list(filters.STATUSES)}),
        _query("provider", {"type": "string", "enum": list(filters.PROVIDERS)}),
        _query("q", {"type": "string", "maxLength": filters.MAX_QUERY_CHARS},
               "Words of the prompt (the last one as a prefix)"),
        _query("since", moment), _query("until", moment),
        _query("parentId", _id_schema(), "A workflow's steps"),
        _query("trash", {"type": "string", "enum": list(filters.TRASH), "default": "exclude"},
               "Trashed operations: left out (exclude), only, or both (include)"),
        _query("starred", flag, "Only starred operations"),
        _query("toplevel", flag, "Leave out workflows' steps"),
        _query("ids", _id_schema(), "These operations only", array=filters.MAX_IDS),
    ]


def _id_schema() -> dict:
    return {"type": "string", "pattern": layout.ID_PATTERN.pattern,
            "examples": ["20261124_k3j5x2m7qa9b"]}


def _path_id() -> dict:
    return {"name": "op_id", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "An operation id, such as 20261124_k3j5x2m7qa9b"}


def _ok(schema: dict, text: str = "OK") -> dict:
    return {"description": text, "content": {JSON: {"schema": schema}}}


def _answer(**properties) -> dict:
    """A success body: ``{"success": true, ...}``."""
    return {"type": "object", "required": ["success", *properties],
            "properties": {"success": {"const": True}, **properties}}


def _history_paths() -> dict:
    operation = {"$ref": "#/components/schemas/Operation"}
    ids = {"type": "array", "items": {"type": "string"}}
    page = [_query("limit", {"type": "integer", "minimum": 1,
                             "maximum": history_routes.MAX_PAGE, "default": 50}),
            _query("offset", {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}),
            _query("before", {"type": "string"},
                   "An operation id: the page after it (nextCursor), stable while new ones come")]
    admin = [{"adminToken": []}, {}]
    star_body = {"required": False, "content": {JSON: {"schema": {
        "type": "object", "properties": {"starred": {"type": "boolean", "default": True}},
        "required": ["starred"]}}}}
    rerun_body = {"required": False, "content": {JSON: {"schema": {
        "type": "object", "description": "Fields to change, e.g. {\"prompt\": \"...\", \"seed\": 12} "
                                         "or {\"seed\": \"random\"}"}}}}
    one = {"parameters": [_path_id()]}
    return {
        "/api/health": {"get": _get("health", "The studio's state: storage, index, backup",
                                    _ok(_answer(status={"enum": ["ok", "degraded"]})), ())},
        "/api/history": {"get": _get(
            "history_list", "A page of operations, newest first, filtered",
            _ok(_answer(operations={"type": "array", "items": operation},
                        total={"type": ["integer", "null"]})), (400, 503),
            page + filter_parameters())},
        "/api/history/stats": {"get": _get(
            "history_stats", "Counts, durations and sizes, by type and by day",
            _ok(_answer(total={"type": "integer"})), (400, 503),
            [_query("days", {"type": "integer", "minimum": 1, "maximum": filters.MAX_DAYS,
                             "default": 30}),
             *filter_parameters()])},
        "/api/history/export.csv": {"get": _get(
            "history_export", "The selected operations as CSV",
            {"description": "CSV, one operation a line",
             "content": {"text/csv": {"schema": {"type": "string"}}}}, (400, 503),
            filter_parameters())},
        "/api/history/{op_id}": {
            **one,
            "get": _get("history_get", "One operation's record, and what was made from it",
                        _ok(_answer(operation=operation, usedBy={"type": "array"})), (404,)),
            "delete": _mutation("history_delete", "Delete an operation with its files",
                                _ok(_answer(deleted=ids, freedBytes={"type": "integer"})),
                                admin)},
        "/api/history/{op_id}/cancel": {**one, "post": _mutation(
            "history_cancel", "Cancel a queued or running operation (409 once it has ended)",
            _ok(_answer(operation=operation)), admin)},
        "/api/history/{op_id}/trash": {**one, "post": _mutation(
            "history_trash", "Move an operation to the trash",
            _ok(_answer(trashed=ids, operation=operation)), admin)},
        "/api/history/{op_id}/restore": {**one, "post": _mutation(
            "history_restore", "Take an operation out of the trash",
            _ok(_answer(restored=ids, operation=operation)), admin)},
        "/api/history/{op_id}/star": {**one, "post": _mutation(
            "history_star", "Star or unstar an operation",
            _ok(_answer(operation=operation)), admin, star_body)},
        "/api/history/{op_id}/rerun": {**one, "post": {
            "operationId": "history_rerun", "tags": ["history"],
            "summary": "Run an operation again through its own route, with fields changed "
                       "or not; answered as that route answers",
            "requestBody": rerun_body,
            "responses": {**_run_responses(), **_refs((404,))}}},
        "/api/history/{op_id}/events": {**one, "get": _get(
            "history_events", "The operation's status and progress as Server-Sent Events",
            {"description": "status events, then an end event with the record",
             "content": {"text/event-stream": {"schema": {
                 "type": "object", "description": "One event",
                 "properties": {"event": {"enum": ["status", "end", "gone"]},
                                "data": {"type": "string"}}}}}}, (404,))},
        "/api/history/{op_id}/files/{name}": {"get": _get(
            "history_file", "A stored input or output file",
            {"description": "The file, with its content type",
             "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}, (404,),
            [_path_id(), {"name": "name", "in": "path", "required": True,
                          "schema": {"type": "string"}}])},
    }


def _webhook_paths() -> dict:
    provider = {"name": "provider", "in": "path", "required": True,
                "schema": {"type": "string", "enum": list(filters.PROVIDERS)}}
    body = {"required": False, "content": {JSON: {"schema": {
        "type": "object", "description": "The provider's own event, signed in its headers"}}}}
    return {"/api/webhooks/{provider}/{op_id}": {"post": {
        "operationId": "webhook", "tags": ["providers"],
        "summary": "A hosted provider says that an operation's job has ended (signed; "
                   "only when PUBLIC_URL is set)",
        "parameters": [provider, _path_id()], "requestBody": body,
        "responses": {"200": _ok(_answer(operationId={"type": "string"},
                                         status={"enum": list(filters.STATUSES)})),
                      **_refs((400, 401, 404, 409, 413, 415))}}}}


def _docs_paths() -> dict:
    return {
        "/api/openapi.json": {"get": _get("openapi", "This document",
                                          _ok({"type": "object"}), ())},
        "/api/docs": {"get": _get("docs", "This document as a page", {
            "description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
            ())},
    }


def _get(name: str, summary: str, ok: dict, errors, parameters=()) -> dict:
    operation = {"operationId": name, "tags": ["history" if "history" in name else "studio"],
                 "summary": summary, "responses": {"200": ok, **_refs(errors)}}
    if parameters:
        operation["parameters"] = list(parameters)
    return operation


def _mutation(name: str, summary: str, ok: dict, security, body=None) -> dict:
    operation = {"operationId": name, "tags": ["history"], "summary": summary,
                 "security": security, "responses": {"200": ok, **_refs(MUTATION_ERRORS)}}
    if body:
        operation["requestBody"] = body
    return operation


# Shared shapes ----------------------------------------------------------------------
def _refs(codes) -> dict:
    return {str(code): {"$ref": f"#/components/responses/{code}"} for code in codes}


def _error(text: str) -> dict:
    return {"description": text, "content": {JSON: {"schema": ERROR_REF}}}


def _schemas() -> dict:
    text, nullable = {"type": "string"}, {"type": ["string", "null"]}
    return {
        "Error": {"type": "object", "required": ["success", "error"], "properties": {
            "success": {"const": False}, "error": text,
            "field": {**text, "description": "The input at fault"},
            "operationId": {**text, "description": "The failed operation's record"}}},
        "Operation": {"type": "object", "required": ["operationId", "operationType", "status"],
                      "properties": {"operationId": text, "operationType": text,
                                     "status": {"enum": list(filters.STATUSES)},
                                     "createdAt": nullable, "prompt": nullable,
                                     "error": nullable}},
        "Result": {"type": "object", "required": ["success", "operationId", "status"],
                   "properties": {"success": {"const": True},
                                  "operationId": nullable, "operationType": text,
                                  "status": {"const": "succeeded"}, "saved": {"type": "boolean"},
                                  "fileUrl": nullable, "resultUrl": nullable,
                                  "resultUrls": {"type": "array", "items": text},
                                  "contentType": nullable}},
        "Accepted": {"type": "object",
                     "required": ["success", "operationId", "status", "statusUrl"],
                     "properties": {"success": {"const": True}, "operationId": text,
                                    "status": {"enum": ["queued", "running"]},
                                    "statusUrl": text, "eventsUrl": text, "cancelUrl": text}},
    }


# The readable page ------------------------------------------------------------------
def page_rows(document: dict):
    """Each operation of ``document`` for the page: method, path, summary,
    description, its inputs as (name, where, what it takes) and its statuses."""
    for path, item in document["paths"].items():
        shared = item.get("parameters", [])
        for method, operation in item.items():
            if method == "parameters":
                continue
            rows = [(p["name"], p["in"], limits(p["schema"]) + _text(p))
                    for p in shared + operation.get("parameters", [])]
            content = (operation.get("requestBody") or {}).get("content", {})
            body = content.get(JSON) or next(iter(content.values()), {})
            schema = body.get("schema", {})
            rows += [(name, "body" + (", required" if name in schema.get("required", []) else ""),
                      limits(spec) + _text(spec))
                     for name, spec in schema.get("properties", {}).items()]
            yield {"method": method.upper(), "path": path, "summary": operation.get("summary"),
                   "description": operation.get("description", ""), "inputs": rows,
                   "bodyTypes": list(content), "statuses": list(operation["responses"])}


def limits(schema: dict) -> str:
    """What a schema takes, in words: ``number from 0 to 1, default 0.5``."""
    if schema.get("type") == "array":
        most = f", at most {schema['maxItems']}" if "maxItems" in schema else ""
        return f"list of ({limits(schema.get('items', {}))}){most}"
    if "enum" in schema:
        words = "one of " + ", ".join(str(v) for v in schema["enum"])
    else:
        words = str(schema.get("format") or schema.get("type") or "any")
        if "minimum" in schema:
            words += f" from {schema['minimum']:,} to {schema['maximum']:,}"
        if "maxLength" in schema:
            words += f", up to {schema['maxLength']:,} characters"
    return words + (f", default {schema['default']}" if "default" in schema else "")


def _text(spec: dict) -> str:
    text = spec.get("description") or (spec.get("schema") or {}).get("description")
    return f" — {text}" if text else ""
