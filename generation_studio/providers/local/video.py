"""The local engine's videos: animated WebP made frame by frame with Pillow.

- text-to-video: a camera panning across a wide procedural rendering;
- image-to-video: a pan or zoom over the image (the Ken Burns effect);
- transition: a cross-fade from the first image to the second.

The frame count is duration x fps, capped by MAX_VIDEO_FRAMES.
"""

import io
import re

from PIL import Image, ImageOps

from . import render

MOTIONS = ("zoom-in", "zoom-out", "pan-left", "pan-right", "pan-up", "pan-down")
ZOOM = 1.3  # how far a zoom goes, and how much room a pan needs


def frame_count(duration: float, fps: int, cap: int) -> int:
    return max(1, min(round(duration * fps), cap))


def frame_size(aspect: tuple[int, int], long_side: int) -> tuple[int, int]:
    """``aspect`` scaled so its long side is ``long_side`` (even numbers)."""
    w, h = aspect
    scale = long_side / max(w, h)
    return max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)


def encode(frames: list[Image.Image], fps: int) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:],
                   duration=round(1000 / fps), loop=0, quality=80, method=0)
    return buffer.getvalue()


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
