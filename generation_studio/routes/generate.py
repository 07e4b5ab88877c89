"""Image generation routes: ``/api/generate/*``."""

from flask import Blueprint

from .. import inputs
from ..recording import records_operation
from . import params

bp = Blueprint("generate", __name__, url_prefix="/api/generate")


@bp.post("/text-to-image")
@records_operation("text_to_image")
def text_to_image():
    return params.task("text_to_image", inputs.prompt(), params.aspect_ratio("1:1"),
                      params.output_format(), params.seed(),
                      {"guidance": inputs.number("guidance", 0, 30)})


@bp.post("/img-to-img")
@records_operation("img_to_img")
def img_to_img():
    return params.task("img_to_img", inputs.prompt(), params.strength(0.5),
                      params.output_format(), params.seed())
