"""Parameters several route families share, checked the same way everywhere,
and ``task``: what a view returns for the decorator to queue."""

import secrets

from .. import inputs
from ..catalog import image_limits
from ..providers import Task
from ..providers.local.render import ASPECT_SIZES
from ..providers.local.video import MOTIONS

OUTPUT_FORMATS = ("jpg", "png", "webp")
FORMAT_ALIASES = {"jpeg": "jpg", "JPEG": "jpg", "JPG": "jpg", "PNG": "png", "WEBP": "webp"}
DURATION_SECONDS = (1, 30)
FPS = (1, 30)


def output_format() -> dict:
    return {"outputFormat": inputs.choice("outputFormat", OUTPUT_FORMATS, "jpg", FORMAT_ALIASES)}


def aspect_ratio(default: str) -> dict:
    return {"aspectRatio": inputs.choice("aspectRatio", tuple(ASPECT_SIZES), default)}


def seed() -> dict:
    """The seed asked for, or one drawn now: the job then runs (and runs again
    after a restart) with the seed its record shows."""
    value = inputs.number("seed", 0, 2**32 - 1, integer=True)
    return {"seed": secrets.randbelow(2**32) if value is None else value}


def strength(default: float) -> dict:
    return {"strength": inputs.number("strength", 0, 1, default)}


def video() -> dict:
    """Duration in seconds and frames per second of a video."""
    return {"duration": inputs.number("duration", *DURATION_SECONDS, default=5),
            "fps": inputs.number("fps", *FPS, default=8, integer=True)}


def motion() -> dict:
    return {"motion": inputs.choice("motion", MOTIONS)}


def task(operation: str, prompt: str, *groups: dict, images=None, plan=None) -> Task:
    """The task ``operation`` with the parameter ``groups`` merged, checked
    and ready to queue. The input images are read within the operation's
    limits unless given."""
    if images is None:
        images = inputs.images(*image_limits(operation))
    params = {k: v for group in groups for k, v in group.items() if v is not None}
    sources = [upload.data for upload in inputs.current().uploads]
    return Task(operation, prompt, params, images, sources, plan=plan)
