"""The OpenAPI document: valid 3.1, made from the catalogue, covering every
``/api/`` route, each route answering as it says (a valid and an invalid
request each); and the page that shows it."""

import base64
import re

import jsonschema
import pytest
import schemathesis
from openapi_spec_validator import validate

from generation_studio import inputs, openapi, operations
from generation_studio.routes import docs

from .conftest import png_bytes

PNG_URL = "data:image/png;base64," + base64.b64encode(png_bytes(pattern=True)).decode()


@pytest.fixture
def api(app):
    """The app with the API description's blueprint (registered here until the
    app registers it itself)."""
    if "docs" not in app.blueprints:
        app.register_blueprint(docs.bp)
    return app


@pytest.fixture
def client(api):
    return api.test_client()


@pytest.fixture
def document(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def documented(document) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items()
            for method in item if method != "parameters"}


def test_the_document_is_valid_openapi_3_1_that_schemathesis_loads(document):
    assert document["openapi"] == "3.1.0"
    validate(document)
    schema = schemathesis.openapi.from_dict(document)
    assert len(list(schema.get_all_operations())) == len(documented(document))


def test_every_api_route_is_documented_and_nothing_else(api, document):
    routes = set()
    for rule in api.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            routes |= {(method, path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented(document) == routes


def test_fields_come_from_the_catalogue(document, monkeypatch):
    body = document["paths"]["/api/generate/img-to-img"]["post"]["requestBody"]["content"]
    schema = body["application/json"]["schema"]
    assert schema["properties"]["strength"] == {
        "title": "Strength", "type": "number", "minimum": 0, "maximum": 1, "default": 0.5,
        "description": "0 keeps the image, 1 replaces it"}
    assert schema["properties"]["prompt"]["maxLength"] == inputs.PROMPT_MAX_CHARS == 10_000
    assert schema["properties"]["outputFormat"]["enum"][:3] == ["jpg", "png", "webp"]
    assert schema["properties"]["images"]["maxItems"] == 1
    assert schema["required"] == ["prompt"]
    multipart = body["multipart/form-data"]["schema"]["properties"]["images"]
    assert multipart["items"]["format"] == "binary"
    pose = document["paths"]["/api/edit/pose"]["post"]["requestBody"]["content"]
    assert pose["application/json"]["schema"]["required"] == []

    # A change in the catalogue is a change in the document.
    route = operations.ROUTES[1]
    wider = operations.Field("strength", "Strength", "number", 0, 2, 1)
    monkeypatch.setattr(operations, "ROUTES", (operations.Route(
        route.path, route.family, route.endpoint, route.title, route.types, (wider,)),
        *operations.ROUTES[2:]))
    changed = openapi.document()["paths"]["/api/generate/img-to-img"]["post"]
    strength = changed["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert (strength["strength"]["maximum"], strength["strength"]["default"]) == (2, 1)
    assert "/api/generate/text-to-image" not in openapi.document()["paths"]


def test_the_history_queries_come_from_the_filters(document):
    params = {p["name"]: p["schema"] for p in document["paths"]["/api/history"]["get"]["parameters"]}
    assert params["status"]["enum"] == ["queued", "running", "succeeded", "failed", "canceled"]
    assert params["limit"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}
    assert params["q"]["maxLength"] == 500
    assert params["trash"]["enum"] == ["exclude", "only", "include"]
    assert params["ids"]["type"] == "array" and params["ids"]["maxItems"] == 500


# Each route answers as documented ---------------------------------------------------
def valid_body(route) -> dict:
    low, _ = route.images
    return {"prompt": "a red square", "images": [PNG_URL] * low}


def out_of_range(route) -> tuple[dict, str]:
    """A request with one field outside its limit, and that field's name."""
    body = valid_body(route)
    for spec in route.fields:
        if spec.kind == "choice":
            return {**body, spec.name: "no-such-choice"}, spec.name
        if spec.high is not None:
            return {**body, spec.name: spec.high + 1}, spec.name
    return {**body, "prompt": "x" * (inputs.PROMPT_MAX_CHARS + 1)}, "prompt"


def cases(op_id: str) -> dict:
    """(method, path) -> [(request kwargs, expected status, field named)], one
    valid and one invalid request for every documented operation."""
    table = {}
    for route in operations.ROUTES:
        invalid, field = out_of_range(route)
        table[("POST", route.path)] = [({"json": valid_body(route)}, 200, None),
                                       ({"json": invalid}, 400, field)]
    table[("POST", "/api/workflow/execute")] = [
        ({"json": {"prompt": "a calm lake"}}, 200, None),
        ({"json": {"prompt": "a calm lake", "workflow": "teleport"}}, 400, "workflow")]
    one, missing = f"/api/history/{op_id}", "/api/history/20200101_nosuchoperation"
    table.update({
        ("GET", "/api/health"): [({}, 200, None), ({"query_string": {"x": "1"}}, 200, None)],
        ("GET", "/api/history"): [({"query_string": {"limit": 5}}, 200, None),
                                  ({"query_string": {"limit": 0}}, 400, "limit")],
        ("GET", "/api/history/stats"): [({}, 200, None),
                                        ({"query_string": {"days": "many"}}, 400, "days")],
        ("GET", "/api/history/export.csv"): [({}, 200, None),
                                             ({"query_string": {"status": "x"}}, 400, "status")],
        ("GET", "/api/history/{op_id}"): [({"path": one}, 200, None),
                                          ({"path": missing}, 404, None)],
        ("GET", "/api/history/{op_id}/events"): [({"path": one + "/events"}, 200, None),
                                                 ({"path": missing + "/events"}, 404, None)],
        ("GET", "/api/history/{op_id}/files/{name}"): [
            ({"path": f"{one}/files/{op_id}_out.jpg"}, 200, None),
            ({"path": f"{one}/files/nothing.png"}, 404, None)],
        ("POST", "/api/history/{op_id}/star"): [
            ({"path": one + "/star", "json": {"starred": True}}, 200, None),
            ({"path": one + "/star", "json": {"starred": "yes"}}, 400, "starred")],
        ("POST", "/api/history/{op_id}/trash"): [({"path": one + "/trash"}, 200, None),
                                                 ({"path": missing + "/trash"}, 404, None)],
        ("POST", "/api/history/{op_id}/restore"): [({"path": one + "/restore"}, 200, None),
                                                   ({"path": missing + "/restore"}, 404, None)],
        ("POST", "/api/history/{op_id}/rerun"): [
            ({"path": one + "/rerun", "json": {"seed": 5}}, 200, None),
            ({"path": one + "/rerun", "json": {"seed": -1}}, 400, "seed")],
        ("POST", "/api/history/{op_id}/cancel"): [({"path": one + "/cancel"}, 409, None),
                                                  ({"path": missing + "/cancel"}, 404, None)],
        ("DELETE", "/api/history/{op_id}"): [({"path": missing}, 404, None),
                                             ({"path": one}, 200, None)],
        ("POST", "/api/webhooks/{provider}/{op_id}"): [
            ({"path": f"/api/webhooks/replicate/{op_id}", "json": {}}, 404, None),
            ({"path": f"/api/webhooks/fal/{op_id}", "data": b"x"}, 404, None)],
        ("GET", "/api/openapi.json"): [({}, 200, None), ({"query_string": {"x": 1}}, 200, None)],
        ("GET", "/api/docs"): [({}, 200, None), ({"query_string": {"x": 1}}, 200, None)],
    })
    return table


def response_schema(document, method, path, status) -> tuple[dict | None, str]:
    """The documented schema and content type of an answer (404 if undocumented)."""
    responses = document["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, not documented"
    spec = responses[str(status)]
    if "$ref" in spec:
        spec = document["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
    media_type, content = next(iter(spec.get("content", {}).items()), (None, {}))
    return content.get("schema"), media_type


def test_every_route_answers_as_documented(client, document):
    made = client.post("/api/generate/text-to-image", json={"prompt": "a lake", "seed": 3})
    op_id = made.get_json()["operationId"]
    table = cases(op_id)
    assert set(table) == documented(document)  # a new route needs its cases here
    for (method, path), requests in table.items():
        for kwargs, status, field in requests:
            kwargs = dict(kwargs)
            url = kwargs.pop("path", path)
            response = client.open(url, method=method, **kwargs)
            assert response.status_code == status, (method, url, response.get_data()[:300])
            schema, media_type = response_schema(document, method, path, status)
            assert response.mimetype == media_type or media_type == "*/*", (method, url)
            if media_type == "application/json":
                body = response.get_json()
                jsonschema.validate(body, {**schema, "components": document["components"]})
                assert body.get("field") == field


def test_the_docs_page_lists_every_route_with_its_limits(client, document):
    response = client.get("/api/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    for method, path in documented(document):
        assert f"<code>{method} {path}</code>" in html
    assert "<td><code>strength</code></td><td>body</td><td>number from 0 to 1, default 0.5" in html
    assert "up to 10,000 characters" in html
    assert not re.search(r"<script(?![^>]*\bsrc=)|\sstyle=|\son\w+=", html)  # CSP-safe
