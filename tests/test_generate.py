"""/api/generate/text-to-image: inputs in every encoding, and bad input."""

import pytest

from generation_studio.providers.local.render import ASPECT_SIZES

from .conftest import open_image, stored_names

URL = "/api/generate/text-to-image"


@pytest.mark.parametrize("ratio", list(ASPECT_SIZES))
def test_aspect_ratios_give_their_size(client, records, storage_dir, ratio):
    response = client.post(URL, json={"prompt": "hills", "aspectRatio": ratio, "seed": 1})
    assert response.status_code == 200
    image = open_image((storage_dir / records()[0]["resultFile"]).read_bytes())
    assert image.size == ASPECT_SIZES[ratio]


@pytest.mark.parametrize("fmt, pil_format, ext", [("png", "PNG", "png"), ("webp", "WEBP", "webp"),
                                                  ("jpeg", "JPEG", "jpg")])
def test_output_format(client, records, storage_dir, fmt, pil_format, ext):
    client.post(URL, json={"prompt": "a forest", "outputFormat": fmt})
    record = records()[0]
    assert record["resultFile"].endswith(f"_out.{ext}")
    assert open_image((storage_dir / record["resultFile"]).read_bytes()).format == pil_format


def test_same_prompt_and_seed_give_the_same_picture(client, records, storage_dir):
    for seed in (5, 5, 6):
        client.post(URL, json={"prompt": "city at night", "seed": seed, "outputFormat": "png"})
    first, second, third = [(storage_dir / r["resultFile"]).read_bytes() for r in records()]
    assert first == second != third


def test_a_random_seed_is_chosen_and_recorded(client, records):
    client.post(URL, json={"prompt": "stars"})
    assert isinstance(records()[0]["provider"]["seed"], int)


@pytest.mark.parametrize("send", [
    lambda c: c.post(URL, data={"prompt": "moon", "aspectRatio": "4:3"}),
    lambda c: c.post(URL, data={"prompt": "moon", "aspectRatio": "4:3"},
                     content_type="multipart/form-data"),
    lambda c: c.post(URL, json={"prompt": "moon", "aspectRatio": "4:3"}),
], ids=["urlencoded", "multipart", "json"])
def test_form_multipart_and_json_are_the_same(client, records, send):
    assert send(client).status_code == 200
    record = records()[0]
    assert record["prompt"] == "moon" and record["parameters"] == {"aspectRatio": "4:3"}


def _assert_failed(response, records, status, *words):
    assert response.status_code == status
    body = response.get_json()
    assert body["success"] is False
    for word in words:
        assert word in body["error"]
    [record] = records()
    assert record["status"] == "failed" and record["error"] == body["error"]
    assert body["operationId"] == record["operationId"]
    return record


@pytest.mark.parametrize("payload", [{}, {"prompt": ""}, {"prompt": "   "}, {"aspectRatio": "1:1"}])
def test_missing_or_empty_prompt(client, records, payload):
    _assert_failed(client.post(URL, json=payload), records, 400, "prompt is required")


def test_unknown_aspect_ratio_lists_the_allowed_ones(client, records):
    record = _assert_failed(client.post(URL, json={"prompt": "x", "aspectRatio": "5:7"}),
                            records, 400, "aspectRatio", "16:9", "21:9", "'5:7'")
    assert record["parameters"] == {"aspectRatio": "5:7"}


@pytest.mark.parametrize("field, value, words", [
    ("seed", -1, ["seed", "0 to 4294967295"]),
    ("seed", "abc", ["seed", "whole number"]),
    ("guidance", 99, ["guidance", "0 to 30"]),
    ("outputFormat", "tiff", ["outputFormat", "jpg, png, webp"]),
])
def test_out_of_range_parameters(client, records, field, value, words):
    _assert_failed(client.post(URL, json={"prompt": "x", field: value}), records, 400, *words)


def test_malformed_json(client, records):
    record = _assert_failed(client.post(URL, data='{"prompt": "x",', content_type="application/json"),
                            records, 400, "Malformed JSON")
    assert record["prompt"] is None


def test_json_that_is_not_an_object(client, records):
    _assert_failed(client.post(URL, json=["a cat"]), records, 400, "must be an object")


def test_unsupported_content_type(client, records):
    _assert_failed(client.post(URL, data="a cat", content_type="text/plain"), records, 415,
                   "application/json")


def test_a_body_over_the_limit_is_413_and_leaves_nothing_half_written(app, client, storage_dir):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = client.post(URL, json={"prompt": "x" * 2000})
    assert response.status_code == 413
    assert "MAX_CONTENT_LENGTH" in response.get_json()["error"]
    assert not [n for n in stored_names(storage_dir) if n.endswith(".tmp")]
    assert all(n.endswith(".json") for n in stored_names(storage_dir))


def test_wrong_method_is_405(client, storage_dir):
    response = client.get(URL)
    assert response.status_code == 405
    assert "POST" in response.get_json()["error"] and "POST" in response.headers["Allow"]
    assert stored_names(storage_dir) == []


def test_unknown_route_is_json_404(client):
    response = client.post("/api/generate/nothing", json={"prompt": "x"})
    assert response.status_code == 404
    assert response.get_json() == {"success": False, "error": "Not found: /api/generate/nothing"}
