"""The local engine's videos: frames made one at a time with Pillow, encoded
as they come into MP4 (H.264, with PyAV), or an animated WebP or GIF.

- text-to-video: a camera panning across a wide procedural rendering;
- image-to-video: a pan or zoom over the image (the Ken Burns effect);
- transition: a cross-fade from the first image to the second.

The frame count is duration x fps, capped by MAX_VIDEO_FRAMES: past it the
video is shortened (its frame rate kept) and ``cut_warning`` says so.

The MP4 bytes depend only on the frames and the settings below, so a rerun
gives the same file: x264 runs on one thread (its output depends on the thread
count, which is the machine's by default), at a fixed quality (``crf``) and
preset; the muxer writes no creation time nor library version (``bitexact``),
and puts its index first (``faststart``) so that a browser plays the video
before it has all of it.
"""

import re
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image, ImageOps

from . import render

MOTIONS = ("zoom-in", "zoom-out", "pan-left", "pan-right", "pan-up", "pan-down")
ZOOM = 1.3  # how far a zoom goes, and how much room a pan needs
FORMATS = ("mp4", "webp", "gif")
MP4_CODEC = "libx264"
# One thread and no macroblock tree: with it, x264 read memory it had not set for
# some frame heights (72 or 54 rows, not 80 or 90), so the same frames made
# different bytes from one run to the next in a process.
X264_OPTIONS = {"preset": "medium", "crf": "20", "threads": "1", "x264-params": "mbtree=0"}
MP4_OPTIONS = {"movflags": "+faststart", "fflags": "+bitexact"}
ANIMATED = {"webp": ("WEBP", {"quality": 80, "method": 0}), "gif": ("GIF", {})}
TICK_MS = {"webp": 1, "gif": 10}  # GIF counts time in hundredths of a second


def asked_frames(duration: float, fps: int) -> int:
    return max(1, round(duration * fps))


def frame_count(duration: float, fps: int, cap: int) -> int:
    return min(asked_frames(duration, fps), cap)


def cut_warning(duration: float, fps: int, cap: int) -> list[str]:
    """What the request asked and what was made, when MAX_VIDEO_FRAMES cut it."""
    asked = asked_frames(duration, fps)
    if asked <= cap:
        return []
    return [f"duration: asked {duration:g} s at {fps} fps ({asked} frames); made "
            f"{round(cap / fps, 2):g} s ({cap} frames): MAX_VIDEO_FRAMES is {cap}, so the "
            "video was shortened and its frame rate kept"]


def frame_size(aspect: tuple[int, int], long_side: int) -> tuple[int, int]:
    """``aspect`` scaled so its long side is ``long_side`` (even numbers, as
    H.264's 4:2:0 colour needs)."""
    w, h = aspect
    scale = long_side / max(w, h)
    return max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)


def can_encode(fmt: str) -> bool:
    """Whether this machine can write ``fmt`` (MP4 needs a PyAV built with libx264)."""
    return fmt != "mp4" or MP4_CODEC in av.codecs_available


def encode(frames, fps: int, size: tuple[int, int], fmt: str, path: Path) -> None:
    """Write ``frames`` (RGB images of ``size``, any iterable) to ``path`` as ``fmt``."""
    if fmt == "mp4":
        _encode_mp4(frames, fps, size, path)
    else:
        pil_format, options = ANIMATED[fmt]
        frames = list(frames)  # Pillow holds them all to write an animation anyway
        frames[0].save(path, pil_format, save_all=True, append_images=frames[1:],
                       duration=frame_times(len(frames), fps, TICK_MS[fmt]), loop=0, **options)


def frame_times(count: int, fps: int, tick_ms: int) -> list[int]:
    """Each frame's display time in milliseconds, in steps of ``tick_ms``, spread
    so that the whole lasts count / fps (33, 34, 33 ms... rather than 33 each)."""
    ends = [round((n + 1) * 1000 / fps / tick_ms) * tick_ms for n in range(count)]
    return [end - start for start, end in zip([0, *ends], ends)]


def _encode_mp4(frames, fps: int, size: tuple[int, int], path: Path) -> None:
    """H.264 in MP4, each frame encoded as it comes (x264 keeps a few for its lookahead)."""
    with av.open(str(path), "w", format="mp4", options=MP4_OPTIONS) as container:
        stream = container.add_stream(MP4_CODEC, rate=fps, options=X264_OPTIONS)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_image(image)
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())  # what the lookahead still holds


def motion_in(prompt: str, default: str = "zoom-in") -> str:
    """The motion a prompt asks for ("zoom out", "pan left"...), else ``default``."""
    match = re.search(r"\b(zoom|pan)[\s-]*(in|out|left|right|up|down)\b", prompt.lower())
    if match and f"{match[1]}-{match[2]}" in MOTIONS:
        return f"{match[1]}-{match[2]}"
    return default


def _window(size, t: float, motion: str) -> tuple[float, float, float, float]:
    """The crop box at time ``t`` (0..1) for ``motion`` over an image of ``size``."""
    w, h = size
    if motion in ("zoom-in", "zoom-out"):
        zoom = 1 + (ZOOM - 1) * (t if motion == "zoom-in" else 1 - t)
        cw, ch = w / zoom, h / zoom
        return ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    cw, ch = w / ZOOM, h / ZOOM
    travel = {"pan-left": (1 - t, 0.5), "pan-right": (t, 0.5),
              "pan-up": (0.5, 1 - t), "pan-down": (0.5, t)}[motion]
    x, y = travel[0] * (w - cw), travel[1] * (h - ch)
    return (x, y, x + cw, y + ch)


# Frame makers yield one frame at a time, so that the caller can report
# progress and stop between frames.
def ken_burns(image: Image.Image, count: int, size, motion: str):
    source = _cover(image, (round(size[0] * ZOOM), round(size[1] * ZOOM)))
    return (source.resize(size, Image.BILINEAR, box=_window(source.size, _t(i, count), motion))
            for i in range(count))


def pan_rendering(prompt: str, seed: int, count: int, size):
    wide = render.render(prompt, seed, (round(size[0] * 1.6), size[1]))
    return (wide.crop((round(x), 0, round(x) + size[0], size[1]))
            for x in (_t(i, count) * (wide.width - size[0]) for i in range(count)))


def cross_fade(first: Image.Image, second: Image.Image, count: int, size):
    a, b = _cover(first, size), _cover(second, size)
    return (Image.blend(a, b, _t(i, count)) for i in range(count))


def _t(i: int, count: int) -> float:
    return i / (count - 1) if count > 1 else 0.0


def _cover(image: Image.Image, size) -> Image.Image:
    """``image`` scaled and centre-cropped to fill ``size`` exactly."""
    return ImageOps.fit(image, size, Image.BILINEAR)
