"""Image edit routes: ``/api/edit/*`` (one or several images, pose, style)."""

from flask import Blueprint

from .. import inputs
from ..catalog import image_limits
from ..recording import records_operation
from . import params

bp = Blueprint("edit", __name__, url_prefix="/api/edit")


def edit_type(data: inputs.RequestData) -> str:
    """One image is a single edit; two to five, a multiple edit."""
    return "image_edit_multiple" if len(data.uploads) > 1 else "image_edit_single"


@bp.post("/image")
@records_operation(edit_type, default="image_edit_single")
def image():
    prompt = inputs.prompt()
    images = inputs.images(1, image_limits("image_edit_multiple")[1])
    return params.task(edit_type(inputs.current()), prompt, params.output_format(),
                      images=images)


@bp.post("/pose")
@records_operation("pose_transfer")
def pose():
    """images[0] is the subject, images[1] the pose reference."""
    return params.task("pose_transfer", inputs.prompt(required=False), params.output_format())


@bp.post("/style")
@records_operation("style_transfer")
def style():
    """images[0] is the content, images[1] the style reference."""
    return params.task("style_transfer", inputs.prompt(required=False), params.strength(1.0),
                      params.output_format())
