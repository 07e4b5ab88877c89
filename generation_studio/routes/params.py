"""Parameters several route families share, checked the same way everywhere,
and ``run``: a task handed to the app's provider."""

from .. import inputs
from ..catalog import image_limits
from ..providers import Task, current_provider
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
    return {"seed": inputs.number("seed", 0, 2**32 - 1, integer=True)}


def strength(default: float) -> dict:
    return {"strength": inputs.number("strength", 0, 1, default)}


def video() -> dict:
    """Duration in seconds and frames per second of a video."""
    return {"duration": inputs.number("duration", *DURATION_SECONDS, default=5),
            "fps": inputs.number("fps", *FPS, default=8, integer=True)}


def motion() -> dict:
    return {"motion": inputs.choice("motion", MOTIONS)}


def run(operation: str, prompt: str, *groups: dict, images=None):
    """Run ``operation`` on the provider with the parameter ``groups`` merged.

    The input images are read within the operation's limits unless given.
    """
    if images is None:
        images = inputs.images(*image_limits(operation))
    params = {k: v for group in groups for k, v in group.items() if v is not None}
    sources = [upload.data for upload in inputs.current().uploads]
    return current_provider().run(Task(operation, prompt, params, images, sources))
