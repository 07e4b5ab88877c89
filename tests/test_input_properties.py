"""Bad input is a 4xx, always: hypothesis property tests of the input parsers
(JSON, multipart, data URLs, the history's query strings), and one test for
each kind of input that used to give a 500."""

import base64
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generation_studio import operations
from generation_studio.errors import ApiError

from .conftest import png_bytes

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
ROUTE = operations.ROUTES[1]  # img-to-img: a prompt, an image, numbers and a choice
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
FIELD_NAMES = st.sampled_from(["prompt", "images", "image", "strength", "seed", "outputFormat",
                               "aspectRatio", "duration", "x"])


def parse(app, **request) -> tuple[int, str | None]:
    """Run ``ROUTE``'s parsers on a request: (200, None) when it passes, else the
    status and the field its error names. Anything but ApiError fails the test."""
    with app.test_request_context(ROUTE.path, method="POST", **request):
        try:
            ROUTE.task()
        except ApiError as e:
            return e.status, e.field
    return 200, None


def assert_clear(outcome):
    status, field = outcome
    assert status == 200 or (400 <= status < 500 and field), outcome


@PROPERTY
@given(body=st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=6) | JSON_VALUES)
def test_any_json_body_is_accepted_or_refused_naming_a_field(app, body):
    assert_clear(parse(app, data=json.dumps(body), content_type="application/json"))


@PROPERTY
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_as_json_are_refused_naming_the_body(app, raw):
    assert_clear(parse(app, data=raw, content_type="application/json"))


@PROPERTY
@given(parts=st.lists(st.tuples(st.text(string.printable, max_size=10) | st.none(),
                                st.binary(max_size=50)), max_size=5),
       files=st.lists(st.binary(max_size=200), max_size=3))
def test_any_multipart_body_is_accepted_or_refused_naming_a_field(app, parts, files):
    body = b"".join(b'--XX\r\nContent-Disposition: form-data'
                    + (f'; name="{name}"'.encode() if name is not None else b"")
                    + b"\r\n\r\n" + value + b"\r\n" for name, value in parts)
    body += b"".join(b'--XX\r\nContent-Disposition: form-data; name="images"; filename="f"\r\n'
                     b"Content-Type: image/png\r\n\r\n" + data + b"\r\n" for data in files)
    assert_clear(parse(app, data=body + b"--XX--\r\n",
                       content_type="multipart/form-data; boundary=XX"))


@PROPERTY
@given(mime=st.text(max_size=20), payload=st.binary(max_size=200) | st.just(png_bytes()),
       encode=st.booleans(), garbage=st.text(max_size=10))
def test_any_data_url_is_accepted_or_refused_naming_it(app, mime, payload, encode, garbage):
    text = base64.b64encode(payload).decode() if encode else garbage
    body = {"prompt": "x", "images": [f"data:{mime};base64,{text}"]}
    outcome = parse(app, json=body)
    assert_clear(outcome)
    assert outcome in ((200, None), (400, "images[0]"))


QUERY_NAMES = st.sampled_from(["type", "status", "provider", "q", "since", "until", "parentId",
                               "trash", "starred", "toplevel", "ids", "limit", "offset", "before",
                               "days"])


@PROPERTY
@given(query=st.lists(st.tuples(QUERY_NAMES, st.text(max_size=30)), max_size=6),
       path=st.sampled_from(["/api/history", "/api/history/stats", "/api/history/export.csv"]))
def test_any_history_query_answers_2xx_or_4xx_naming_a_field(client, query, path):
    response = client.get(path, query_string=query)
    assert response.status_code in (200, 400), (query, response.get_data()[:300])
    if response.status_code == 400:
        body = json.loads(response.get_data(), parse_constant=pytest.fail)
        assert body["success"] is False and body["field"] in dict(query)


# One test for each input that used to be a 500 ---------------------------------------
def refused(response, status: int, field: str):
    assert response.status_code == status, response.get_data()[:300]
    body = response.get_json()
    assert body["field"] == field
    return body


def test_a_list_in_a_choice_field(client, records):
    body = refused(client.post("/api/generate/text-to-image",
                               json={"prompt": "x", "outputFormat": ["png"]}), 400, "outputFormat")
    assert body["error"] == "outputFormat must be one of jpg, png, webp, as text (got list)"
    assert [r["operationId"] for r in records()] == [body["operationId"]]


def test_a_nameless_multipart_part(client):
    data = (b'--XX\r\nContent-Disposition: form-data\r\n\r\nhello\r\n'
            b'--XX\r\nContent-Disposition: form-data; name="prompt"\r\n\r\ncat\r\n--XX--\r\n')
    body = refused(client.post("/api/generate/text-to-image", data=data,
                               content_type="multipart/form-data; boundary=XX"), 400, "body")
    assert body["error"].startswith("A part of the multipart body has no name")


@pytest.mark.parametrize("depth", [33, 100_000])
def test_deeply_nested_json(client, depth):
    data = '{"prompt": "x", "a": ' + "[" * depth + "]" * depth + "}"
    field = "a" if depth < 900 else "body"
    body = refused(client.post("/api/generate/text-to-image", data=data,
                               content_type="application/json"), 400, field)
    assert body["error"] == f"{field}: the JSON body is nested deeper than 32 levels"


def test_a_lone_surrogate(client, records):
    body = refused(client.post("/api/generate/text-to-image", data='{"prompt": "a \\ud800 b"}',
                               content_type="application/json"), 400, "prompt")
    assert body["error"] == "prompt holds a lone surrogate ('a \\ud800 b'): send valid Unicode text"
    assert [r["operationId"] for r in records()] == [body["operationId"]]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(client, constant):
    body = refused(client.post("/api/generate/text-to-image",
                               data='{"prompt": "x", "guidance": %s}' % constant,
                               content_type="application/json"), 400, "body")
    assert body["error"] == (f"Malformed JSON body: {constant} is not a JSON number; send a "
                             "finite number or null")


def test_nan_is_never_sent_back(app, client, storage_dir):
    op_id = client.post("/api/generate/text-to-image", json={"prompt": "x"}).get_json()[
        "operationId"]
    path = storage_dir / f"{op_id}.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "durationMs": float("nan")}))  # a hand-edited record
    response = client.get(f"/api/history/{op_id}")
    body = json.loads(response.get_data(), parse_constant=pytest.fail)
    assert body["operation"]["durationMs"] is None
    assert json.loads(app.json.dumps({"a": [float("inf")]})) == {"a": [None]}


@pytest.mark.parametrize("query", [{"q": "\x00"}, {"q": "a\x00b"}])
def test_a_nul_in_the_search_is_refused_and_leaves_the_index_alone(client, query, caplog,
                                                                   storage_dir):
    client.post("/api/generate/text-to-image", json={"prompt": "a lake"})
    refused(client.get("/api/history", query_string=query), 400, "q")
    assert client.get("/api/health").get_json()["history"]["index"] == "ok"  # not taken for broken
    assert not [m for m in caplog.messages if "cannot be used" in m and str(storage_dir) in m]


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00",
                                   "99999-01-01", "2026-02-30", "2026-11-24T25:00:00Z"])
@pytest.mark.parametrize("name", ["since", "until"])
def test_dates_out_of_range_in_history_queries(client, name, value):
    body = refused(client.get("/api/history", query_string={name: value}), 400, name)
    assert body["error"] == (f"{name} must be a date (2026-11-24) or an ISO 8601 time "
                             f"(2026-11-24T08:30:00Z) (got {value!r})")
    assert client.get("/api/history/stats", query_string={name: value}).status_code == 400


def test_a_refused_request_names_a_record_that_exists(client):
    body = refused(client.post("/api/generate/text-to-image", json={"prompt": "x", "seed": -1}),
                   400, "seed")
    assert client.get(f"/api/history/{body['operationId']}").status_code == 200


def test_no_operation_id_is_named_when_the_record_cannot_be_written(app, client, monkeypatch):
    history = app.extensions["history"]
    monkeypatch.setattr(history, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("full")))
    response = client.post("/api/generate/text-to-image", json={"prompt": "x", "seed": -1})
    assert response.status_code == 400
    assert "operationId" not in response.get_json()
