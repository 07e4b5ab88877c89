"""The image gate (``media.open_checked``): pixel, aspect-ratio, frame and
size bombs are refused from their header, before a pixel is decoded, on every
image route; a refused upload is not kept (its record says what was refused);
and a bomb costs the server next to no memory (peak RSS, measured in a
process of its own)."""

import base64
import hashlib
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from generation_studio import media, operations

from .conftest import png_bytes

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def frame_bomb(frames: int = 1001, size=(64, 64)) -> bytes:
    """An animated GIF of ``frames`` frames (alternating, so none is merged)."""
    pictures = [Image.new("L", size, (n % 2) * 255) for n in range(frames)]
    return encoded(pictures[0], "GIF", save_all=True, append_images=pictures[1:])


BOMBS = {
    "pixels": (lambda: encoded(Image.new("1", (10_000, 10_000))),
               "is 10000x10000 = 100,000,000 pixels; the limit is 40,000,000 pixels "
               "(MAX_IMAGE_PIXELS)"),
    "aspect": (lambda: encoded(Image.new("1", (1_000_000, 1))),
               "is 1000000x1, longer than 50 to 1 (MAX_IMAGE_ASPECT)"),
    "frames": (frame_bomb, "has 1,001 frames; the limit is 1,000 (MAX_IMAGE_FRAMES)"),
}
IMAGE_ROUTES = [r for r in operations.ROUTES if r.images[1]]


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if a bomb is decoded (a big picture, or any GIF); the small
    fair images sent along are decoded as usual."""
    load = ImageFile.ImageFile.load

    def checked_load(self):
        if self.size[0] * self.size[1] >= 1_000_000 or self.format == "GIF":
            raise AssertionError(f"{self.format} {self.size} was decoded")
        return load(self)
    monkeypatch.setattr(ImageFile.ImageFile, "load", checked_load)


@pytest.mark.parametrize("kind", BOMBS)
def test_the_gate_refuses_a_bomb_from_its_header(kind, no_decoding):
    make, reason = BOMBS[kind]
    with pytest.raises(media.ImageRefused) as refused:
        media.open_checked(make(), media.limits({}))
    assert refused.value.reason == reason


def test_the_gate_refuses_a_file_over_the_size_limit_before_opening_it(no_decoding):
    data = png_bytes((64, 64))
    within = media.limits({"MAX_IMAGE_BYTES": len(data) - 1})
    with pytest.raises(media.ImageRefused) as refused:
        media.open_checked(data, within)
    assert refused.value.reason == (f"is {len(data):,} bytes; the limit is {len(data) - 1:,} "
                                    "bytes (MAX_IMAGE_BYTES)")


def test_the_gate_opens_a_fair_image_without_decoding_it(no_decoding):
    image = media.open_checked(png_bytes((400, 8)), media.limits({}))
    assert image.size == (400, 8)  # 50:1 is allowed


def test_the_limits_are_settings(app, client, records):
    app.config.update(MAX_IMAGE_ASPECT=4, MAX_IMAGE_FRAMES=3)
    wide = client.post("/api/edit/image", json={"prompt": "x", "images": [
        "data:image/png;base64," + base64.b64encode(png_bytes((50, 10))).decode()]})
    assert wide.status_code == 400
    assert wide.get_json()["error"] == "images[0] is 50x10, longer than 4 to 1 (MAX_IMAGE_ASPECT)"
    animated = client.post("/api/edit/image", data={"prompt": "x", "images": [
        (io.BytesIO(frame_bomb(4, (8, 8))), "anim.gif")]}, content_type="multipart/form-data")
    assert animated.get_json()["error"] == ("images[0] (anim.gif) has 4 frames; the limit is 3 "
                                            "(MAX_IMAGE_FRAMES)")


def request_for(route, bomb: bytes, name: str) -> dict:
    """A multipart request to ``route`` whose first image is ``bomb``."""
    low = max(route.images[0], 1)
    files = [(io.BytesIO(bomb), name)] + [(io.BytesIO(png_bytes(pattern=True)), f"{n}.png")
                                          for n in range(1, low)]
    return {"data": {"prompt": "a test", "images": files}, "content_type": "multipart/form-data"}


@pytest.mark.parametrize("kind", BOMBS)
@pytest.mark.parametrize("route", [*IMAGE_ROUTES, None], ids=lambda r: r and r.endpoint)
def test_every_image_route_refuses_bombs_and_keeps_none(client, records, storage_dir, route,
                                                         kind, no_decoding):
    path = route.path if route else "/api/workflow/execute"
    make, reason = BOMBS[kind]
    bomb = make()
    response = client.post(path, **request_for(route or IMAGE_ROUTES[0], bomb, "bomb.img"))
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == f"images[0] (bomb.img) {reason}" and body["field"] == "images[0]"
    [record] = [r for r in records() if r["operationId"] == body["operationId"]]
    assert record["refusedInputs"] == [{
        "name": "bomb.img", "field": "images[0]", "size": len(bomb),
        "claimedType": "application/octet-stream", "sha256": hashlib.sha256(bomb).hexdigest(),
        "reason": reason}]
    fair = [e["file"] for e in record["inputImages"]]  # the other images, not refused
    assert len(fair) == max((route or IMAGE_ROUTES[0]).images[0], 1) - 1
    kept = sorted(p.name for p in storage_dir.glob(f"{body['operationId']}*"))
    assert kept == sorted([f"{body['operationId']}.json", *fair])


def test_an_upload_that_is_not_an_image_is_not_kept(client, records, storage_dir):
    page = b"<html><script>alert(document.cookie)</script></html>"
    response = client.post("/api/edit/image", data={"prompt": "x", "images": [
        (io.BytesIO(page), "cat.png", "image/png")]}, content_type="multipart/form-data")
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == ("images[0] (cat.png) is not an image that can be read (PNG, JPEG, "
                             "WebP, GIF, BMP or TIFF)")
    [record] = [r for r in records() if r["operationId"] == body["operationId"]]
    assert record["inputImages"] == []
    assert record["refusedInputs"] == [{
        "name": "cat.png", "field": "images[0]", "size": len(page), "claimedType": "image/png",
        "sha256": hashlib.sha256(page).hexdigest(),
        "reason": "is not an image that can be read (PNG, JPEG, WebP, GIF, BMP or TIFF)"}]
    assert sorted(p.name for p in storage_dir.iterdir() if p.is_file()) == [
        f"{body['operationId']}.json"]


def test_fair_images_of_a_refused_request_are_kept(client, records, storage_dir):
    fair = png_bytes(pattern=True)
    response = client.post("/api/edit/pose", data={"prompt": "x", "images": [
        (io.BytesIO(fair), "subject.png"), (io.BytesIO(b"GIF89a broken"), "pose.gif")]},
        content_type="multipart/form-data")
    body = response.get_json()
    assert body["field"] == "images[1]"
    [record] = [r for r in records() if r["operationId"] == body["operationId"]]
    [kept] = record["inputImages"]
    assert (storage_dir / kept["file"]).read_bytes() == fair
    assert [e["name"] for e in record["refusedInputs"]] == ["pose.gif"]


# Memory ---------------------------------------------------------------------------
MEASURE = textwrap.dedent("""
    import io, json, re, sys, tempfile
    sys.path.insert(0, {root!r})
    from generation_studio import create_app, operations
    from tests.test_image_gate import BOMBS, IMAGE_ROUTES, request_for
    from tests.conftest import png_bytes

    def peak_kb():
        return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1])

    def rss_kb():
        return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read())[1])

    app = create_app({{"TESTING": True, "STORAGE_DIR": tempfile.mkdtemp(),
                      "HISTORY_CHECK_WAITS": True, "MAX_VIDEO_FRAMES": 8,
                      "LOCAL_VIDEO_SIZE": 96}})
    client = app.test_client()
    bombs = {{kind: make() for kind, (make, _) in BOMBS.items()}}
    for route in IMAGE_ROUTES:  # warm up: each route once with fair images
        client.post(route.path, **request_for(route, png_bytes(pattern=True), "fair.png"))
    found = {{}}
    for route in IMAGE_ROUTES:
        for kind, bomb in bombs.items():
            open("/proc/self/clear_refs", "w").write("5")
            before = rss_kb()
            status = client.post(route.path, **request_for(route, bomb, "bomb")).status_code
            found[f"{{route.endpoint}} {{kind}}"] = [status, peak_kb() - before]
    app.extensions["jobs"].stop_workers()
    print(json.dumps(found))
""")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's clear_refs")
def test_a_bomb_costs_less_memory_than_ten_times_an_output():
    """Peak RSS of each bomb request, over what the process held before it,
    stays under ten times a one-megapixel RGB output (30 MB)."""
    result = subprocess.run([sys.executable, "-c", MEASURE.format(root=str(ROOT))], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(found) == len(IMAGE_ROUTES) * len(BOMBS)
    bound_kb = 10 * 1024 * 1024 * 3 // 1024
    assert {key: status for key, (status, _) in found.items()} == {key: 400 for key in found}
    assert {key: kb for key, (_, kb) in found.items() if kb > bound_kb} == {}


def test_an_image_the_request_never_opened_is_verified_before_it_is_kept(client, records,
                                                                           storage_dir):
    """A request refused before its images were read (no prompt) keeps a fair image
    and drops a truncated one, found out without decoding it."""
    fair, cut = png_bytes(pattern=True), png_bytes((200, 200), pattern=True)[:300]
    response = client.post("/api/edit/image", data={"images": [
        (io.BytesIO(fair), "fair.png"), (io.BytesIO(cut), "cut.png")]},
        content_type="multipart/form-data")
    body = response.get_json()
    assert body["field"] == "prompt"
    [record] = [r for r in records() if r["operationId"] == body["operationId"]]
    [kept] = record["inputImages"]
    assert (storage_dir / kept["file"]).read_bytes() == fair
    assert [(e["name"], e["reason"]) for e in record["refusedInputs"]] == [
        ("cut.png", "is not an image that can be read (PNG, JPEG, WebP, GIF, BMP or TIFF)")]


FAIR = textwrap.dedent("""
    import io, re, sys, tempfile
    sys.path.insert(0, {root!r})
    from PIL import Image
    from generation_studio import create_app

    def png(side):
        buffer = io.BytesIO()
        Image.linear_gradient("L").resize((side, side)).convert("RGB").save(buffer, "PNG")
        return buffer.getvalue()

    big, small = png(5000), png(64)
    app = create_app({{"TESTING": True, "STORAGE_DIR": tempfile.mkdtemp(),
                      "HISTORY_CHECK_WAITS": True}})
    client = app.test_client()
    send = lambda first: client.post("/api/edit/pose", content_type="multipart/form-data",
        data={{"images": [(io.BytesIO(first), "a.png"), (io.BytesIO(small), "b.png")]}})
    send(small)  # warm up
    open("/proc/self/clear_refs", "w").write("5")
    before = int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read())[1])
    status = send(big).status_code
    peak = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1])
    app.extensions["jobs"].stop_workers()
    print(status, peak - before)
""")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's clear_refs")
def test_a_fair_large_image_is_decoded_once_at_a_time_and_never_copied():
    """A 25-megapixel PNG (75 MB of RGB pixels) sent to pose transfer: the request
    checks it and lets go, the job decodes it once, upright and RGB in place;
    the peak stays under twice its pixels (it was four times before)."""
    result = subprocess.run([sys.executable, "-c", FAIR.format(root=str(ROOT))], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    status, grown_kb = map(int, result.stdout.split()[-2:])
    assert status == 200
    assert grown_kb < 2 * 5000 * 5000 * 3 // 1024, f"{grown_kb / 1024:.0f} MB"
