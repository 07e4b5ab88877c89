"""Gallery thumbnails and page previews: a video's is a frame of it, images
are shrunk (never enlarged) to fixed widths, each made once."""

import io

import pytest
from PIL import Image

from generation_studio import thumbnails

from .conftest import png_bytes
from .test_routes import send
from .test_video import BLUE, RED, frames_of

TRANSITION = "/api/video-image/transition"


@pytest.fixture
def history(app):
    return app.extensions["history"]


def transition(client, records, fields=None, uploads=None):
    """A red-to-blue fade of 6 frames: its record."""
    uploads = uploads or [png_bytes((64, 64), RED), png_bytes((64, 64), BLUE)]
    response = send(client, TRANSITION, {"duration": 1, "fps": 6, **(fields or {})}, uploads,
                    "multipart")
    assert response.status_code == 200, response.get_json()
    return next(r for r in records() if r["operationId"] == response.get_json()["operationId"])


def picture(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "WEBP"
    return image.convert("RGB")


def same_picture(a: Image.Image, b: Image.Image, tolerance=20) -> bool:
    """Whether two pictures show the same thing: alike pixel by pixel, at a small size."""
    a, b = a.resize((8, 8)), b.resize((8, 8))
    return all(abs(x - y) <= tolerance for x, y in zip(a.tobytes(), b.tobytes()))


@pytest.mark.parametrize("fmt", ["mp4", "webp"])
def test_a_videos_thumbnail_is_its_frame_a_third_of_the_way_in(client, records, storage_dir,
                                                               fmt):
    record = transition(client, records, {"videoFormat": fmt})
    response = client.get(f"/history/{record['operationId']}/thumb")
    assert response.status_code == 200 and response.mimetype == "image/webp"
    thumb = picture(response.data)
    assert thumb.size == (96, 96)
    # frame 2 of 0..5 is 40% of the way from red to blue; the first input is all red
    expected = Image.new("RGB", (96, 96), (153, 0, 102))
    assert same_picture(thumb, expected) and not same_picture(thumb, Image.new("RGB", (8, 8), RED))


def test_a_text_to_video_thumbnail_is_a_frame_of_it(client, records, storage_dir):
    response = client.post("/api/video/text-to-video", json={
        "prompt": "city at night", "duration": 2, "fps": 3, "seed": 4})
    record = records()[0]
    thumb = client.get(f"/history/{response.get_json()['operationId']}/thumb")
    assert thumb.status_code == 200
    frames = frames_of((storage_dir / record["resultFile"]).read_bytes())
    assert same_picture(picture(thumb.data), frames[len(frames) // 3])
    assert '/thumb"' in client.get("/history").get_data(as_text=True)


def test_an_unreadable_video_falls_back_to_its_input(client, records, storage_dir):
    record = transition(client, records)
    (storage_dir / record["resultFile"]).write_bytes(b"\x00\x00\x00\x20ftypisom" + b"\x00" * 99)
    thumb = client.get(f"/history/{record['operationId']}/thumb")
    assert same_picture(picture(thumb.data), Image.new("RGB", (8, 8), RED))


def test_an_image_preview_is_shrunk_to_its_width_and_made_once(client, records, history):
    client.post("/api/generate/text-to-image", json={"prompt": "hills", "seed": 2})
    record = records()[0]
    op_id, name = record["operationId"], record["resultFile"]
    path = thumbnails.preview(history, op_id, name, 480)
    assert path == history.root / ".thumbs" / f"{name}.480.webp"
    assert picture(path.read_bytes()).size == (480, 480)
    made = path.stat().st_mtime_ns
    assert thumbnails.preview(history, op_id, name, 300) == path  # the next width up
    assert path.stat().st_mtime_ns == made
    with Image.open(history.root / name) as original:
        assert same_picture(picture(path.read_bytes()), original.convert("RGB"))


@pytest.mark.parametrize("asked", [1280, 5000, None])
def test_a_preview_is_never_enlarged(client, records, history, asked):
    client.post("/api/generate/text-to-image", json={"prompt": "hills", "seed": 2})
    record = records()[0]
    path = thumbnails.preview(history, record["operationId"], record["resultFile"], asked)
    assert path.name == f"{record['resultFile']}.1280.webp"
    assert picture(path.read_bytes()).size == (1024, 1024)


def test_a_video_files_preview_is_its_poster(client, records, history):
    record = transition(client, records)
    path = thumbnails.preview(history, record["operationId"], record["resultFile"], 480)
    preview = picture(path.read_bytes())
    assert preview.size == (96, 96)
    assert same_picture(preview, Image.new("RGB", (8, 8), (153, 0, 102)))
    first_input = thumbnails.preview(history, record["operationId"],
                                     record["inputImages"][0]["file"], 480)
    assert same_picture(picture(first_input.read_bytes()), Image.new("RGB", (8, 8), RED))


def test_no_preview_for_a_file_not_in_the_record(client, records, history):
    first, second = transition(client, records), transition(client, records)
    assert thumbnails.preview(history, first["operationId"], second["resultFile"], 480) is None
    assert thumbnails.preview(history, first["operationId"], "nothing.png", 480) is None
    assert thumbnails.preview(history, "20990101_missing", "20990101_missing_out.png", 480) is None


def test_remove_deletes_an_operations_thumbnail_and_previews_only(client, records, history):
    kept, gone = transition(client, records), transition(client, records)
    made = []
    for record in (kept, gone):
        client.get(f"/history/{record['operationId']}/thumb")
        made += [thumbnails.preview(history, record["operationId"], record["resultFile"], w)
                 for w in thumbnails.PREVIEW_WIDTHS]
    thumbnails.remove(history.root, gone["operationId"],
                      [e["file"] for e in gone["inputImages"] + gone["outputs"]])
    assert sorted(p.name for p in (history.root / ".thumbs").iterdir()) == sorted(
        [f"{kept['operationId']}.webp"] + [p.name for p in made[:2]])
