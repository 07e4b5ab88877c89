"""Bad input on the upload routes: a clear 400 or 413, a failed record, nothing lost."""

import hashlib
import io
import json

import pytest
from PIL import Image

from .conftest import png_bytes, stored_names


def multipart(client, url, fields=None, files=()):
    data = {k: str(v) for k, v in (fields or {}).items()}
    data["images"] = [(io.BytesIO(b), name) for b, name in files]
    return client.post(url, data=data, content_type="multipart/form-data")


def assert_refused(response, records, status, *words):
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert body["success"] is False
    for word in words:
        assert word in body["error"], body["error"]
    [record] = [r for r in records() if r["operationId"] == body["operationId"]]
    assert record["status"] == "failed" and record["error"] == body["error"]
    assert record["httpStatus"] == status
    return body, record


def test_a_file_that_is_not_an_image(client, records, storage_dir):
    body, record = assert_refused(
        multipart(client, "/api/generate/img-to-img", {"prompt": "x"}, [(b"%PDF-1.4 hello", "doc.pdf")]),
        records, 400, "images[0] (doc.pdf) is not an image")
    assert body["field"] == "images[0]"
    # What was refused is described, never kept (it could be active content).
    assert record["inputImages"] == []
    [refused] = record["refusedInputs"]
    assert (refused["name"], refused["size"]) == ("doc.pdf", 14)
    assert refused["sha256"] == hashlib.sha256(b"%PDF-1.4 hello").hexdigest()
    assert not list(storage_dir.glob(f"{body['operationId']}_in_*"))


def test_a_truncated_image(client, records):
    assert_refused(multipart(client, "/api/edit/image", {"prompt": "blur"},
                             [(png_bytes((200, 200), pattern=True)[:300], "cut.png")]),
                   records, 400, "images[0] (cut.png) is not an image")


@pytest.mark.parametrize("url, fields, count, words", [
    ("/api/generate/img-to-img", {"prompt": "x"}, 0, "exactly 1 image(s); got 0"),
    ("/api/generate/img-to-img", {"prompt": "x"}, 2, "exactly 1 image(s); got 2"),
    ("/api/edit/image", {"prompt": "x"}, 0, "1 to 5 image(s); got 0"),
    ("/api/edit/image", {"prompt": "x"}, 6, "1 to 5 image(s); got 6"),
    ("/api/edit/pose", {}, 1, "exactly 2 image(s); got 1"),
    ("/api/edit/style", {}, 3, "exactly 2 image(s); got 3"),
    ("/api/video-image/transition", {}, 1, "exactly 2 image(s); got 1"),
    ("/api/video/img-to-video", {"prompt": "x"}, 0, "exactly 1 image(s); got 0"),
])
def test_image_count_outside_the_route_range(client, records, url, fields, count, words):
    files = [(png_bytes(), f"{n}.png") for n in range(count)]
    body, record = assert_refused(multipart(client, url, fields, files), records, 400, words)
    assert body["field"] == "images" and len(record["inputImages"]) == count


def test_an_image_over_the_pixel_limit(client, records, app):
    app.config["MAX_IMAGE_PIXELS"] = 1000
    assert_refused(multipart(client, "/api/edit/image", {"prompt": "x"}, [(png_bytes((64, 48)), "a.png")]),
                   records, 400, "images[0] (a.png) is 64x48 = 3,072 pixels", "limit is 1,000 pixels",
                   "MAX_IMAGE_PIXELS")


def test_a_decompression_bomb(client, records):
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, "PNG")  # 100 Mpx in a few kB
    assert len(buffer.getvalue()) < 100_000
    assert_refused(multipart(client, "/api/edit/image", {"prompt": "x"}, [(buffer.getvalue(), "bomb.png")]),
                   records, 400, "100,000,000 pixels", "40,000,000")


@pytest.mark.parametrize("url, fields, words", [
    ("/api/generate/img-to-img", {"prompt": "x", "strength": 2}, "strength must be a number from 0 to 1"),
    ("/api/generate/img-to-img", {"prompt": "x", "strength": "lots"}, "strength must be a number"),
    ("/api/video/img-to-video", {"prompt": "x", "duration": 0}, "duration must be a number from 1 to 30"),
    ("/api/video/img-to-video", {"prompt": "x", "duration": 600}, "duration must be a number from 1 to 30"),
    ("/api/video-image/animate-image", {"prompt": "x", "fps": 0}, "fps must be a whole number from 1 to 30"),
    ("/api/video-image/animate-image", {"prompt": "x", "motion": "spin"}, "motion must be one of zoom-in"),
    ("/api/edit/style", {"strength": -0.5}, "strength must be a number from 0 to 1"),
])
def test_numbers_and_choices_out_of_range(client, records, url, fields, words):
    count = 2 if "style" in url else 1
    files = [(png_bytes(pattern=True), f"{n}.png") for n in range(count)]
    body, _ = assert_refused(multipart(client, url, fields, files), records, 400, words)
    assert body["field"] == words.split()[0]


def test_text_to_video_numbers(client, records):
    assert_refused(client.post("/api/video/text-to-video", json={"prompt": "x", "fps": 31}),
                   records, 400, "fps must be a whole number from 1 to 30 (got 31)")


@pytest.mark.parametrize("images, words", [
    (["not a data url"], "images[0] must be a data URL"),
    (["data:image/png;base64,@@@"], "images[0] is not valid base64"),
    ([42], "images[0] must be a data URL"),
])
def test_bad_data_urls_in_json(client, records, images, words):
    assert_refused(client.post("/api/edit/image", json={"prompt": "x", "images": images}),
                   records, 400, words)


def test_an_upload_over_the_body_limit_is_413_and_leaves_nothing_half_written(app, client, storage_dir):
    client.post("/api/generate/text-to-image", json={"prompt": "kept"})
    before = stored_names(storage_dir)
    app.config["MAX_CONTENT_LENGTH"] = 10_000
    big = png_bytes((400, 400), pattern=True) + b"\0" * 20_000
    response = multipart(client, "/api/edit/image", {"prompt": "x"}, [(big, "big.png")])
    assert response.status_code == 413
    assert "the limit is 10,000 bytes (MAX_CONTENT_LENGTH)" in response.get_json()["error"]
    after = stored_names(storage_dir)
    assert set(before) <= set(after)  # nothing already stored was lost
    assert not [n for n in after if n.endswith(".tmp")]
    assert all(n.endswith(".json") for n in set(after) - set(before))  # only whole records
    [refused] = [json.loads((storage_dir / n).read_text()) for n in set(after) - set(before)]
    assert (refused["status"], refused["httpStatus"], refused["error"]) == \
        ("failed", 413, response.get_json()["error"])  # what the client was told, as told
