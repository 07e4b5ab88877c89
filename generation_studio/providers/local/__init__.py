"""The ``local`` provider: an offline engine built on Pillow. Not AI.

It renders pictures procedurally from the prompt (``render``) and transforms
uploaded images with classic image processing, so every route gives a real,
viewable result on a machine with no account and no network.
"""

import io
import secrets

from PIL import Image

from .. import Provider, Result, Task
from . import render

MODEL = "local-procedural-1"
SAVE_OPTIONS = {
    "jpg": ("JPEG", {"quality": 90}),
    "png": ("PNG", {"compress_level": 1}),
    "webp": ("WEBP", {"quality": 90}),
}


def encode(image: Image.Image, fmt: str = "jpg") -> bytes:
    """The bytes of ``image`` in ``fmt`` (jpg, png or webp)."""
    pil_format, options = SAVE_OPTIONS[fmt]
    buffer = io.BytesIO()
    image.save(buffer, pil_format, **options)
    return buffer.getvalue()


class LocalProvider(Provider):
    name = "local"

    def run(self, task: Task) -> Result:
        handler = getattr(self, task.operation, None)
        if handler is None:
            raise NotImplementedError(f"the local provider cannot run {task.operation}")
        return handler(task)

    def _image_result(self, image: Image.Image, task: Task, **details) -> Result:
        fmt = task.params.get("outputFormat", "jpg")
        width, height = image.size
        return Result(files=[encode(image, fmt)], model=MODEL,
                      details={"width": width, "height": height, **details})

    def text_to_image(self, task: Task) -> Result:
        seed = task.params.get("seed")
        if seed is None:
            seed = secrets.randbelow(2**32)
        size = render.ASPECT_SIZES[task.params.get("aspectRatio", "1:1")]
        return self._image_result(render.render(task.prompt, seed, size), task, seed=seed)
