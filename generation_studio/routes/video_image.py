"""Routes that turn images into videos: ``/api/video-image/*``."""

from flask import Blueprint

from .. import inputs
from ..recording import records_operation
from . import params

bp = Blueprint("video_image", __name__, url_prefix="/api/video-image")


@bp.post("/animate-image")
@records_operation("image_to_video_single")
def animate_image():
    return params.task("image_to_video_single", inputs.prompt(), params.video(), params.motion())


@bp.post("/transition")
@records_operation("image_to_video_transition")
def transition():
    """A video going from images[0] to images[1]."""
    return params.task("image_to_video_transition", inputs.prompt(required=False), params.video())
