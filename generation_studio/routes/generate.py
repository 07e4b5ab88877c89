"""Image generation routes: ``/api/generate/*``."""

from flask import Blueprint

from .. import inputs
from ..providers import Task, current_provider
from ..providers.local.render import ASPECT_SIZES
from ..recording import records_operation

bp = Blueprint("generate", __name__, url_prefix="/api/generate")

OUTPUT_FORMATS = ("jpg", "png", "webp")
FORMAT_ALIASES = {"jpeg": "jpg", "JPEG": "jpg", "JPG": "jpg", "PNG": "png", "WEBP": "webp"}


def image_params() -> dict:
    """The parameters every image route shares, checked."""
    params = {
        "aspectRatio": inputs.choice("aspectRatio", tuple(ASPECT_SIZES), "1:1"),
        "outputFormat": inputs.choice("outputFormat", OUTPUT_FORMATS, "jpg", FORMAT_ALIASES),
        "seed": inputs.number("seed", 0, 2**32 - 1, integer=True),
        "guidance": inputs.number("guidance", 0, 30),
    }
    return {k: v for k, v in params.items() if v is not None}


@bp.post("/text-to-image")
@records_operation("text_to_image")
def text_to_image():
    task = Task("text_to_image", inputs.prompt(), image_params())
    return current_provider().run(task)
