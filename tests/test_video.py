"""Videos: MP4 (H.264) by default, WebP and GIF on request, the same bytes on
every rerun, a warning when MAX_VIDEO_FRAMES shortens one, and reading them
back (``videos``); a hosted MP4 is kept as it came."""

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import av
import pytest
from PIL import Image

from generation_studio import create_app, videos
from generation_studio.providers.local import video

from .conftest import png_bytes
from .test_routes import images, send

T2V = "/api/video/text-to-video"
WAVES = {"prompt": "waves on the sea", "duration": 2, "fps": 3, "aspectRatio": "1:1", "seed": 7}
RED, BLUE = (255, 0, 0), (0, 0, 255)


def frames_of(data: bytes) -> list[Image.Image]:
    """Every frame of a (short) video, decoded with PyAV."""
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def result(client, records, storage_dir, url=T2V, fields=WAVES, uploads=(), encoding="json"):
    """(answer's body, record, the result's bytes) of one request."""
    response = send(client, url, fields, list(uploads), encoding)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    record = next(r for r in records() if r["operationId"] == body["operationId"])
    return body, record, (storage_dir / record["resultFile"]).read_bytes()


def near(colour, expected, tolerance=24) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected))


def test_text_to_video_is_an_h264_mp4_with_the_asked_frames(client, records, storage_dir):
    body, record, data = result(client, records, storage_dir)
    assert body["contentType"] == "video/mp4" and record["resultFile"].endswith("_out.mp4")
    assert data[4:8] == b"ftyp"
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: playable before the end
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (stream.codec_context.width, stream.codec_context.height) == (96, 96)
        assert stream.average_rate == 3
    assert len(frames_of(data)) == 6
    assert record["provider"]["frames"] == 6 and record["provider"]["durationSeconds"] == 2


@pytest.mark.parametrize("fmt, pil_format", [("webp", "WEBP"), ("gif", "GIF"), ("WEBP", "WEBP")])
def test_webp_and_gif_on_request(client, records, storage_dir, fmt, pil_format):
    body, record, data = result(client, records, storage_dir, fields={**WAVES, "videoFormat": fmt})
    image = Image.open(io.BytesIO(data))
    assert image.format == pil_format and image.n_frames == 6
    assert record["resultFile"].endswith(f"_out.{pil_format.lower()}")
    assert record["task"]["params"]["videoFormat"] == fmt.lower()


def test_an_unknown_video_format_is_refused(client):
    response = client.post(T2V, json={**WAVES, "videoFormat": "avi"})
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == "videoFormat" and "mp4, webp, gif" in body["error"]


def test_without_libx264_mp4_fails_and_says_so(client, records, monkeypatch):
    monkeypatch.setattr(video, "MP4_CODEC", "no-such-encoder")
    response = client.post(T2V, json=WAVES)
    assert response.status_code == 501
    assert response.get_json()["error"] == ("videoFormat mp4 needs PyAV's no-such-encoder "
                                            "encoder, which this server's PyAV lacks; "
                                            "ask for webp or gif")
    assert records()[0]["errorField"] == "videoFormat"


@pytest.mark.parametrize("url, count, fields, frames", [
    ("/api/video/img-to-video", 1, {"prompt": "zoom out slowly", "duration": 1, "fps": 5}, 5),
    ("/api/video-image/animate-image", 1,
     {"prompt": "breeze", "duration": 2, "fps": 2, "motion": "pan-left"}, 4),
    ("/api/video-image/transition", 2, {"duration": 1, "fps": 6}, 6),
])
def test_every_video_route_makes_an_mp4(client, records, storage_dir, url, count, fields, frames):
    _, record, data = result(client, records, storage_dir, url, fields, images(count),
                             "multipart")
    assert record["resultFile"].endswith("_out.mp4") and len(frames_of(data)) == frames


def test_a_transition_goes_from_the_first_image_to_the_second(client, records, storage_dir):
    uploads = [png_bytes((64, 64), RED), png_bytes((64, 64), BLUE)]
    _, _, data = result(client, records, storage_dir, "/api/video-image/transition",
                        {"duration": 1, "fps": 4}, uploads, "multipart")
    frames = frames_of(data)
    assert near(frames[0].getpixel((10, 10)), RED) and near(frames[-1].getpixel((10, 10)), BLUE)


def test_the_same_request_and_seed_give_the_same_bytes(client, records, storage_dir):
    runs = [result(client, records, storage_dir, fields={**WAVES, "seed": seed})[2]
            for seed in (7, 7, 8)]
    assert runs[0] == runs[1] != runs[2]


def _moving(count=24, size=(256, 144)):
    """A gradient sliding under a changing colour: frames a real encoder must work on."""
    ramp = Image.linear_gradient("L").resize((size[0] * 2, size[1]))
    return (Image.composite(Image.new("RGB", size, (10 * n, 250 - 10 * n, 90)),
                            Image.new("RGB", size, (250, 250, 250)),
                            ramp.crop((4 * n, 0, 4 * n + size[0], size[1])))
            for n in range(count))


def _encoded(path: Path) -> str:
    video.encode(_moving(), 6, (256, 144), "mp4", path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mp4_bytes_are_the_same_in_another_run_and_another_process(tmp_path):
    """The other process sees one CPU, as a smaller machine would (x264 picks
    its threads from the CPUs it may use, and its bytes from its threads)."""
    first, second = _encoded(tmp_path / "a.mp4"), _encoded(tmp_path / "b.mp4")
    other = subprocess.run(
        [sys.executable, "-c", "import os, sys; from pathlib import Path; "
         "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
         "from tests.test_video import _encoded; print(_encoded(Path(sys.argv[1])))",
         str(tmp_path / "c.mp4")],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=True)
    assert first == second == other.stdout.strip()


def test_mp4_bytes_do_not_depend_on_what_was_encoded_before(tmp_path):
    """Heights that are not a multiple of 16 (72, 54 rows) once made bytes that
    changed with what the process had encoded before (x264's macroblock tree
    read memory it had not set)."""
    sizes = [(96, 72), (128, 128), (96, 54), (410, 230), (96, 72), (64, 48), (96, 54),
             (96, 72), (410, 230)]
    picture = Image.open(io.BytesIO(png_bytes(pattern=True))).convert("RGB")
    made = {}
    for n, size in enumerate(sizes):
        frames = (picture.resize(size).rotate(3 * i) for i in range(5))
        video.encode(frames, 5, size, "mp4", tmp_path / f"{n}.mp4")
        made.setdefault(size, set()).add(hashlib.sha256((tmp_path / f"{n}.mp4").read_bytes())
                                         .hexdigest())
    assert {size: len(digests) for size, digests in made.items()} == {
        (96, 72): 1, (128, 128): 1, (96, 54): 1, (410, 230): 1, (64, 48): 1}


CUT = ("duration: asked 30 s at 30 fps (900 frames); made 0.8 s (24 frames): "
       "MAX_VIDEO_FRAMES is 24, so the video was shortened and its frame rate kept")


def test_a_video_cut_by_the_frame_limit_says_so(client, records, storage_dir):
    body, record, data = result(client, records, storage_dir,
                                fields={"prompt": "x", "duration": 30, "fps": 30})
    assert body["warnings"] == [CUT] and record["warnings"] == [CUT]
    assert len(frames_of(data)) == 24
    assert videos.info(data)["durationSeconds"] == 0.8
    assert (record["provider"]["frames"], record["provider"]["fps"]) == (24, 30)


def test_a_video_within_the_limit_has_no_warning(client, records, storage_dir):
    body, record, _ = result(client, records, storage_dir)
    assert "warnings" not in body and "warnings" not in record


# Reading videos back --------------------------------------------------------------
def _fade(tmp_path, fmt: str, count=9) -> Path:
    """A red-to-blue fade of ``count`` frames at 3 fps."""
    path = tmp_path / f"fade.{fmt}"
    frames = (Image.blend(Image.new("RGB", (64, 48), RED), Image.new("RGB", (64, 48), BLUE),
                          n / (count - 1)) for n in range(count))
    video.encode(frames, 3, (64, 48), fmt, path)
    return path


@pytest.mark.parametrize("fmt", ["mp4", "webp", "gif"])
def test_info_reads_length_frames_and_size(tmp_path, fmt):
    path = _fade(tmp_path, fmt)
    expected = {"durationSeconds": 3.0, "frames": 9, "fps": 3.0, "width": 64, "height": 48}
    assert videos.info(path) == expected
    assert videos.info(path.read_bytes()) == expected


@pytest.mark.parametrize("fmt", ["mp4", "webp", "gif"])
def test_the_poster_is_the_frame_a_third_of_the_way_in(tmp_path, fmt):
    path = _fade(tmp_path, fmt)
    expected = (255 * 5 // 8, 0, 255 * 3 // 8)  # frame 3 of 0..8
    assert near(videos.poster(path).getpixel((32, 24)), expected)
    assert near(videos.poster(path.read_bytes()).getpixel((32, 24)), expected)


def test_what_is_not_a_video_is_a_value_error():
    with pytest.raises(ValueError):
        videos.info(b"\x00\x00\x00\x20ftypisom" + b"\x00" * 64)
    with pytest.raises(ValueError):
        videos.poster(b"not a video at all")


# A hosted MP4 ---------------------------------------------------------------------
@pytest.fixture
def hosted(replicate, storage_dir, tmp_path):
    from .test_replicate import settings
    made = create_app(settings(replicate, storage_dir))
    yield made
    made.extensions["jobs"].stop_workers()


def test_a_hosted_mp4_is_kept_as_it_came(hosted, replicate, records, storage_dir, tmp_path):
    clip = _fade(tmp_path, "mp4").read_bytes()
    replicate.files["fade.mp4"] = (clip, "video/mp4")
    replicate.outputs_by_model["wan-video/wan-2.2-t2v-fast"] = ["fade.mp4"]
    body, record, data = result(hosted.test_client(), records, storage_dir,
                                fields={**WAVES, "videoFormat": "webp"})
    assert data == clip and record["resultFile"].endswith("_out.mp4")
    assert body["contentType"] == "video/mp4"
