"""Video routes: ``/api/video/*``."""

from flask import Blueprint

from .. import inputs
from ..recording import records_operation
from . import params

bp = Blueprint("video", __name__, url_prefix="/api/video")


@bp.post("/text-to-video")
@records_operation("text_to_video")
def text_to_video():
    return params.task("text_to_video", inputs.prompt(), params.video(),
                      params.aspect_ratio("16:9"), params.seed())


@bp.post("/img-to-video")
@records_operation("image_to_video_single")
def img_to_video():
    """The motion comes from the prompt ("zoom out", "pan left"...)."""
    return params.task("image_to_video_single", inputs.prompt(), params.video())
