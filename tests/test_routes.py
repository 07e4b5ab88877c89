"""Every generation route, in JSON, form and multipart: records, files, results."""

import base64
import io

import pytest
from PIL import Image

from generation_studio import videos

from .conftest import open_image, png_bytes

COLOURS = [(220, 40, 40), (40, 60, 220), (40, 180, 60), (240, 200, 40), (120, 40, 160)]

# url, expected type, image count, fields, expected frames (None for an image)
CASES = [
    ("/api/generate/img-to-img", "img_to_img", 1, {"prompt": "a sepia forest", "strength": 0.4}, None),
    ("/api/edit/image", "image_edit_single", 1, {"prompt": "make it grayscale"}, None),
    ("/api/edit/image", "image_edit_multiple", 3, {"prompt": "mirror them"}, None),
    ("/api/edit/pose", "pose_transfer", 2, {}, None),
    ("/api/edit/style", "style_transfer", 2, {"prompt": "in that style", "strength": 0.8}, None),
    ("/api/video/text-to-video", "text_to_video", 0,
     {"prompt": "waves on the sea", "duration": 2, "fps": 3, "aspectRatio": "1:1"}, 6),
    ("/api/video/img-to-video", "image_to_video_single", 1,
     {"prompt": "zoom out slowly", "duration": 1, "fps": 5}, 5),
    ("/api/video-image/animate-image", "image_to_video_single", 1,
     {"prompt": "breeze", "duration": 2, "fps": 2, "motion": "pan-left"}, 4),
    ("/api/video-image/transition", "image_to_video_transition", 2, {"duration": 1, "fps": 6}, 6),
    ("/api/workflow/execute", "edit_then_video", 1,
     {"prompt": "sepia, then animate it", "duration": 1, "fps": 3}, 3),
]
IDS = [f"{c[1]}-{c[2]}img" for c in CASES]


def images(count):
    return [png_bytes((64 + 8 * n, 48), COLOURS[n], pattern=True) for n in range(count)]


def send(client, url, fields, uploads, encoding):
    """POST fields and images the way a web page or an API client would."""
    if encoding == "json":
        data_urls = [f"data:image/png;base64,{base64.b64encode(b).decode()}" for b in uploads]
        return client.post(url, json={**fields, **({"images": data_urls} if uploads else {})})
    if encoding == "form":  # urlencoded: images as data URLs in the same field
        data = {k: str(v) for k, v in fields.items()}
        data["images"] = [f"data:image/png;base64,{base64.b64encode(b).decode()}" for b in uploads]
        return client.post(url, data=data)
    data = {k: str(v) for k, v in fields.items()}
    data["images"] = [(io.BytesIO(b), f"in{n}.png") for n, b in enumerate(uploads)]
    return client.post(url, data=data, content_type="multipart/form-data")


@pytest.mark.parametrize("encoding", ["json", "form", "multipart"])
@pytest.mark.parametrize("url, op_type, count, fields, frames", CASES, ids=IDS)
def test_route_records_inputs_and_output(client, records, storage_dir, url, op_type, count,
                                         fields, frames, encoding):
    uploads = images(count)
    response = send(client, url, fields, uploads, encoding)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    record = next(r for r in records() if r["operationId"] == body["operationId"])
    assert record["operationType"] == op_type == body["operationType"]
    assert record["status"] == "succeeded"
    assert record["prompt"] == fields.get("prompt")
    assert set(record["parameters"]) == set(fields) - {"prompt"}

    assert len(record["inputImages"]) == count
    for n, entry in enumerate(record["inputImages"]):
        assert (storage_dir / entry["file"]).read_bytes() == uploads[n]
        assert entry["file"] == f"{record['operationId']}_in_{n}.png"
        assert (entry["width"], entry["height"], entry["bytes"]) == (64 + 8 * n, 48, len(uploads[n]))
        assert entry["originalName"] == (f"in{n}.png" if encoding == "multipart" else None)

    data = (storage_dir / record["resultFile"]).read_bytes()
    if frames is None:
        result = open_image(data)
        assert result.format in ("JPEG", "PNG", "WEBP") and getattr(result, "n_frames", 1) == 1
    else:  # an MP4 (H.264) by default
        assert data[4:8] == b"ftyp" and record["resultFile"].endswith("_out.mp4")
        assert videos.info(data)["frames"] == frames
        assert record["outputs"][0]["frames"] == frames


def test_video_frames_are_capped_by_the_setting(client, records, app):
    assert app.config["MAX_VIDEO_FRAMES"] == 24
    client.post("/api/video/text-to-video", json={"prompt": "x", "duration": 30, "fps": 30})
    record = records()[0]
    assert record["provider"]["frames"] == 24 and record["outputs"][0]["frames"] == 24


def test_style_transfer_moves_the_colours(client, records, storage_dir):
    red, blue = png_bytes((64, 64), (200, 30, 30)), png_bytes((64, 64), (30, 30, 200))
    send(client, "/api/edit/style", {"outputFormat": "png"}, [red, blue], "multipart")
    pixel = open_image((storage_dir / records()[0]["resultFile"]).read_bytes()).getpixel((32, 32))
    assert pixel[2] > 150 and pixel[0] < 80  # the red content took the blue style


def test_edit_words_are_applied_and_recorded(client, records, storage_dir):
    send(client, "/api/edit/image", {"prompt": "invert it", "outputFormat": "png"},
         [png_bytes((32, 32), (200, 30, 30))], "multipart")
    record = records()[0]
    assert record["provider"]["edits"] == ["invert"]
    assert open_image((storage_dir / record["resultFile"]).read_bytes()).getpixel((5, 5)) == (55, 225, 225)


def test_transition_goes_from_the_first_image_to_the_second(client, records, storage_dir):
    red, blue = png_bytes((64, 64), (255, 0, 0)), png_bytes((64, 64), (0, 0, 255))
    send(client, "/api/video-image/transition", {"duration": 1, "fps": 4, "videoFormat": "webp"},
         [red, blue], "multipart")
    video = Image.open(storage_dir / records()[0]["resultFile"])
    video.seek(0)
    first = video.convert("RGB").getpixel((10, 10))
    video.seek(video.n_frames - 1)
    last = video.convert("RGB").getpixel((10, 10))
    assert first[0] > 200 > first[2] and last[2] > 200 > last[0]


def test_the_readme_route_table_is_the_catalogue():
    from pathlib import Path

    from generation_studio import operations
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert operations.route_table() in readme


def test_every_catalogue_route_is_served_and_has_a_form(app):
    from generation_studio import forms, operations
    rules = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    for route in operations.ROUTES:
        assert rules[route.path] == f"{route.family}.{route.endpoint}"
    assert [f.action for f in forms.FORMS] == [r.path for r in operations.ROUTES] + [
        "/api/workflow/execute"]
