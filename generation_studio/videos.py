"""Reading videos: their length, frame count and size, and a poster frame.

MP4, MOV and WebM are read with PyAV, animated WebP and GIF with Pillow; a
still image reads as a one-frame video. Memory stays bounded whatever the
length: the sizes come from the container's headers (packets are counted
without decoding when a header does not say), and a poster decodes from the
key frame before it, one frame at a time.
"""

import io
from pathlib import Path

import av
from PIL import Image

from .media import head, open_checked, sniff

PYAV_KINDS = ("mp4", "mov", "webm")
POSTER_AT = 1 / 3  # of the way in: past a fade-in, and the frame a person expects


def info(data: bytes | Path) -> dict:
    """``{durationSeconds, frames, fps, width, height}`` of a video or animated image;
    ValueError when its bytes cannot be read as one."""
    if sniff(head(data))[0] in PYAV_KINDS:
        with _container(data) as container:
            return _stream_info(container)
    with _picture(data) as image:
        frames = getattr(image, "n_frames", 1)
        seconds = sum(_frame_ms(image, n) for n in range(frames)) / 1000
        return _described(seconds, frames, frames / seconds if seconds else 0, image.size)


def poster(data: bytes | Path) -> Image.Image:
    """The frame about a third of the way in (the first of a short one), as RGB."""
    if sniff(head(data))[0] in PYAV_KINDS:
        with _container(data) as container:
            return _decoded_poster(container)
    with _picture(data) as image:
        image.seek(int(getattr(image, "n_frames", 1) * POSTER_AT))
        return image.convert("RGB")


def _stream_info(container) -> dict:
    stream = _video_stream(container)
    rate = stream.average_rate or stream.guessed_rate or 0
    seconds = _seconds(container, stream)
    frames = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
    return _described(seconds, frames, float(rate), (stream.codec_context.width,
                                                     stream.codec_context.height))


def _decoded_poster(container) -> Image.Image:
    stream = _video_stream(container)
    target = _seconds(container, stream) * POSTER_AT
    if target > 0 and stream.time_base:
        container.seek(int(target / stream.time_base), stream=stream)  # the key frame before
    frame = None
    try:
        for frame in container.decode(stream):
            if frame.time is None or frame.time >= target - 1e-6:
                break
    except av.FFmpegError as e:
        if frame is None:
            raise ValueError(f"the video cannot be decoded ({e})") from None
    if frame is None:
        raise ValueError("the video has no frame")
    return frame.to_image().convert("RGB")


def _container(data: bytes | Path):
    try:
        return av.open(str(data) if isinstance(data, Path) else io.BytesIO(data))
    except av.FFmpegError as e:
        raise ValueError(f"not a video PyAV can read ({e})") from None


def _video_stream(container):
    if not container.streams.video:
        raise ValueError("the file has no video stream")
    return container.streams.video[0]


def _seconds(container, stream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else 0.0


def _picture(data: bytes | Path) -> Image.Image:
    """An animated image, through the studio's gate (ImageRefused is a ValueError)."""
    return open_checked(data)


def _frame_ms(image: Image.Image, index: int) -> int:
    """A frame's duration (WebP tells it once the frame is decoded; one is kept at a time)."""
    image.seek(index)
    image.load()
    return image.info.get("duration", 0) or 0


def _described(seconds: float, frames: int, fps: float, size) -> dict:
    return {"durationSeconds": round(seconds, 3), "frames": frames,
            "fps": round(fps, 3), "width": size[0], "height": size[1]}
